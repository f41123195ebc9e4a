"""Soft state on a simulated cluster: heartbeats and probes that change nothing are
shown by every node (last_heartbeat, load, last_health_check) and never raise the index;
their puts go to etcd in group commits, on the instance's own lease."""

from __future__ import annotations

import base64
import json
from typing import Any

from sd_core import RegistryConfig
from sd_core.cluster import KeyLayout, SoftRecord, StoreCall, WriteDone
from sd_core.cluster.testing import SimulatedCluster, http_request
from sd_core.http_api import HttpRequest, HttpResponse, PendingWrite
from sd_etcd import DeleteRangeOp, RangeOp

FAST = RegistryConfig(health_check_interval=5.0, health_check_timeout=1.0, registration_ttl=30.0)
QUIET = RegistryConfig(health_check_interval=86400.0, registration_ttl=30.0)
LAYOUT = KeyLayout()
TXN = "/v3/kv/txn"


def _shown(cluster: SimulatedCluster, node: int, service: str = "api") -> dict[str, Any]:
    [instance] = cluster.read(node, service).body["instances"]
    assert isinstance(instance, dict)
    return instance


def _soft(cluster: SimulatedCluster, instance_id: str = "a1") -> SoftRecord | None:
    found = cluster.etcd.range(RangeOp(LAYOUT.soft("api", instance_id)), cluster.clock.now)
    return SoftRecord.decode(found.kvs[0].value) if found.kvs else None


def _keys_of(cluster: SimulatedCluster, instance_id: str) -> list[bytes]:
    """The keys the store holds for one instance of `api` (none once it is gone)."""
    now = cluster.clock.now
    found = (
        cluster.etcd.range(RangeOp(k), now).kvs for k in LAYOUT.instance_keys("api", instance_id)
    )
    return [kv.key for kvs in found for kv in kvs]


def _heartbeat_request(instance_id: str, **fields: Any) -> HttpRequest:
    body = {"service_name": "api", "instance_id": instance_id, **fields}
    return http_request("POST", "/v1/discovery/heartbeat", json_body=body)


def _txns(cluster: SimulatedCluster, node: int) -> list[list[bytes]]:
    """The soft keys of each group commit a node sent (txns of soft puts and marks
    only), in order."""
    found = []
    soft, marks = LAYOUT.prefix + b"soft/", LAYOUT.service("")
    for effect in cluster.effects[node]:
        if isinstance(effect, StoreCall) and effect.request.path == TXN:
            txn = json.loads(effect.request.body)
            ops = txn.get("success", [])
            keys = [base64.b64decode(op.get("request_put", {}).get("key", "")) for op in ops]
            if keys and all(key.startswith((soft, marks)) for key in keys):
                found.append([key for key in keys if key.startswith(soft)])
    return found


def test_heartbeats_and_small_load_moves_show_everywhere_without_raising_the_index() -> None:
    cluster = SimulatedCluster(nodes=3, config=QUIET)
    cluster.register(0, "api", "a1", load_percentage=0.1)
    cluster.advance(2)  # its first probe: healthy
    index = cluster.index(0, "api")
    before = _shown(cluster, 2)  # node 2's render is cached now
    cluster.advance(2)
    revision = cluster.etcd.revision
    assert cluster.heartbeat(1, "api", "a1", load_percentage=0.15).status == 200
    assert cluster.etcd.revision == revision + 1  # the soft put
    shown = [_shown(cluster, n) for n in range(3)]
    assert shown[0] == shown[1] == shown[2]
    assert shown[2]["last_heartbeat"] > before["last_heartbeat"]
    assert shown[2]["load_percentage"] == 0.15
    assert shown[2]["registered_at"] == before["registered_at"]
    assert {cluster.index(n, "api") for n in range(3)} == {index}
    assert {cluster.read(n, "api").index for n in range(3)} == {index}
    # A load move of WATCH_LOAD_DELTA from the last rise raises it, on every node alike.
    assert cluster.heartbeat(2, "api", "a1", load_percentage=0.2).status == 200
    assert {cluster.index(n, "api") for n in range(3)} == {cluster.etcd.revision}


def test_probes_that_change_nothing_show_their_time_everywhere() -> None:
    cluster = SimulatedCluster(nodes=3, config=FAST)
    cluster.register(0, "api", "a1")
    cluster.advance(12)  # probed healthy (two passes), then more passes
    assert {cluster.status_of(n, "api", "a1") for n in range(3)} == {"healthy"}
    index = cluster.index(0, "api")
    first = _shown(cluster, 1)["last_health_check"]
    cluster.advance(10)  # two more passing probes: nothing but the time moves
    shown = [_shown(cluster, n) for n in range(3)]
    assert shown[0] == shown[1] == shown[2]
    assert shown[0]["last_health_check"] > first
    assert {cluster.index(n, "api") for n in range(3)} == {index}


def test_a_lagging_node_shows_the_soft_values_once_its_watch_delivers_them() -> None:
    cluster = SimulatedCluster(nodes=3, config=QUIET)
    cluster.register(0, "api", "a1")
    old = _shown(cluster, 2)
    cluster.partition(2)
    cluster.advance(1)
    assert cluster.heartbeat(0, "api", "a1", load_percentage=0.05).status == 200
    assert _shown(cluster, 2) == old  # not delivered yet: the old values, still cached
    fresh = _shown(cluster, 0)
    assert fresh["last_heartbeat"] > old["last_heartbeat"]
    cluster.heal(2)
    cluster.advance(1)  # the watch resumes after the last revision it saw
    assert _shown(cluster, 2) == fresh
    assert cluster.read(2, "api").index == cluster.read(0, "api").index


def test_a_fresh_listing_shows_the_same_soft_values() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    cluster.register(0, "api", "a1", load_percentage=0.3)
    cluster.advance(12)
    cluster.heartbeat(1, "api", "a1", load_percentage=0.31)
    cluster.partition(1)
    cluster.compact()  # node 1 must list again when it comes back
    cluster.advance(6)
    cluster.heal(1)
    cluster.advance(1)
    assert _shown(cluster, 1) == _shown(cluster, 0)
    assert cluster.read(1, "api").index == cluster.read(0, "api").index


def test_the_soft_key_goes_with_its_instance() -> None:
    cluster = SimulatedCluster(nodes=2, config=QUIET)
    cluster.register(0, "api", "a1")
    cluster.register(0, "api", "a2")
    cluster.heartbeat(1, "api", "a1")
    assert _soft(cluster, "a1") is not None
    assert all(kv.lease == 0 for kv in cluster.etcd.range(RangeOp(b"/", b"\0"), 0).kvs
               if not kv.key.startswith(LAYOUT.node("")))  # fmt: skip
    cluster.advance(31)  # no heartbeat for a TTL: both expire, every key with them
    assert _keys_of(cluster, "a1") == [] and _keys_of(cluster, "a2") == []
    cluster.register(0, "api", "a3")
    assert _soft(cluster, "a3") is not None
    assert cluster.unregister(1, "api", "a3").status == 200
    assert _keys_of(cluster, "a3") == []


def test_pending_heartbeats_share_one_txn() -> None:
    cluster = SimulatedCluster(nodes=2, config=QUIET)
    for number in range(20):
        cluster.register(0, "api", f"a{number}")
    node = cluster.nodes[1]
    sent = len(_txns(cluster, 1))
    parked = [node.handle(_heartbeat_request(f"a{n}"), cluster.clock.now) for n in range(20)]
    assert all(isinstance(p, PendingWrite) for p in parked)
    cluster.settle()
    batches = _txns(cluster, 1)[sent:]
    # The first put goes alone (nothing in flight); the other 19 ride the next txn.
    assert [len(keys) for keys in batches] == [1, 19]
    assert sorted(key for keys in batches for key in keys) == sorted(
        LAYOUT.soft("api", f"a{n}") for n in range(20)
    )
    answers = [e for e in cluster.effects[1] if isinstance(e, WriteDone)]
    assert sorted(a.token for a in answers[-20:]) == sorted(
        p.token for p in parked if isinstance(p, PendingWrite)
    )
    assert {a.response.status for a in answers[-20:]} == {200}
    # Answered once this node's view holds the last batch's revision.
    assert node.mirror.synced_revision == cluster.etcd.revision


def test_a_batch_is_split_at_the_txn_limit_and_one_key_is_written_once() -> None:
    cluster = SimulatedCluster(nodes=1, config=QUIET)
    for number in range(9):
        cluster.register(0, "api", f"a{number}")
    node = cluster.nodes[0]
    node.soft.max_ops = 4
    sent = len(_txns(cluster, 0))
    now = cluster.clock.now
    parked = [node.handle(_heartbeat_request(f"a{n}"), now) for n in range(9)]
    parked.append(node.handle(_heartbeat_request("a8", load_percentage=0.02), now))
    cluster.settle()
    batches = _txns(cluster, 0)[sent:]
    assert [len(keys) for keys in batches] == [1, 4, 4]  # a8 twice: one put, the later
    written = _soft(cluster, "a8")
    assert written is not None and written.load == 0.02
    answers = {e.token: e.response.status for e in cluster.effects[0] if isinstance(e, WriteDone)}
    assert all(answers[p.token] == 200 for p in parked if isinstance(p, PendingWrite))


def test_a_gone_instance_in_a_batch_fails_only_its_own_heartbeat() -> None:
    cluster = SimulatedCluster(nodes=1, config=QUIET)
    for number in range(3):
        cluster.register(0, "api", f"a{number}")
    node, now = cluster.nodes[0], cluster.clock.now
    first = node.handle(_heartbeat_request("a0"), now)
    [call] = [e for e in node.drain_effects() if isinstance(e, StoreCall)]
    rest = [node.handle(_heartbeat_request(f"a{n}"), now) for n in (1, 2)]
    assert node.soft.pending == 2  # a0's soft put is on its way, the others wait
    # a2 goes from the store (another node's unregistration) before the batch is sent.
    cluster.etcd.delete_range(DeleteRangeOp(LAYOUT.instance("api", "a2")), now)
    node.store_answered(call.token, *cluster.etcd.handle(call.request, now), now)
    cluster.settle()
    answers = {e.token: e.response for e in cluster.effects[0] if isinstance(e, WriteDone)}
    assert isinstance(first, PendingWrite) and answers[first.token].status == 200
    ok, gone = rest
    assert isinstance(ok, PendingWrite) and isinstance(gone, PendingWrite)
    assert answers[ok.token].status == 200
    assert answers[gone.token].status == 404
    assert json.loads(answers[gone.token].body)["error"] == "instance_not_found"
    before = _soft(cluster, "a1")
    assert before is not None and before.heartbeat_at == _soft(cluster, "a0").heartbeat_at  # type: ignore[union-attr]


def _unanswered_heartbeat(cluster: SimulatedCluster) -> tuple[PendingWrite, StoreCall]:
    """A heartbeat on node 0: its soft put, not sent yet."""
    node, now = cluster.nodes[0], cluster.clock.now
    parked = node.handle(_heartbeat_request("a1", load_percentage=0.5), now)
    assert isinstance(parked, PendingWrite)
    [put] = [e for e in node.drain_effects() if isinstance(e, StoreCall)]
    assert put.request.path == TXN
    return parked, put


def _answer(cluster: SimulatedCluster, parked: PendingWrite) -> HttpResponse:
    cluster.settle()
    [answer] = [
        e for e in cluster.effects[0] if isinstance(e, WriteDone) and e.token == parked.token
    ]
    return answer.response


def test_a_store_outage_answers_503_and_changes_nothing() -> None:
    cluster = SimulatedCluster(nodes=2, config=QUIET)
    cluster.register(0, "api", "a1")
    shown, revision, soft = _shown(cluster, 1), cluster.etcd.revision, _soft(cluster)
    # The store goes while the soft put is on its way: no answer from it.
    parked, put = _unanswered_heartbeat(cluster)
    cluster.nodes[0].store_failed(put.token, cluster.clock.now)
    response = _answer(cluster, parked)
    assert response.status == 503
    assert json.loads(response.body)["error"] == "store_unavailable"
    assert ("retry-after", "1") in response.headers
    assert cluster.etcd.revision == revision and _soft(cluster) == soft
    # Down for good: refused before any call, still nothing changed.
    cluster.store_down()
    reply = cluster.heartbeat(0, "api", "a1", load_percentage=0.5)
    assert (reply.status, reply.body["error"]) == (503, "store_unavailable")
    cluster.store_up()
    cluster.advance(2)
    assert cluster.etcd.revision == revision and _soft(cluster) == soft
    assert _shown(cluster, 1) == shown


def test_a_refused_soft_put_answers_503() -> None:
    cluster = SimulatedCluster(nodes=1, config=QUIET)
    cluster.register(0, "api", "a1")
    parked, put = _unanswered_heartbeat(cluster)
    timed_out = "etcdserver: request timed out"
    body = json.dumps({"error": timed_out, "message": timed_out, "code": 14}).encode()
    cluster.nodes[0].store_answered(put.token, 503, body, cluster.clock.now)
    response = _answer(cluster, parked)
    assert response.status == 503
    soft = _soft(cluster)
    assert soft is not None and soft.load == 0.0  # the registration's, nothing newer


def test_soft_records_read_back_and_refuse_garbage() -> None:
    record = SoftRecord(1.5, 0.25, None)
    assert SoftRecord.decode(record.encode()) == record
    assert SoftRecord.decode(SoftRecord(1.5, 0.25, 2.0).encode()) == SoftRecord(1.5, 0.25, 2.0)
    assert SoftRecord.decode(b'{"heartbeat_at":1,"load":0,"checked_at":null,"new":1}')
    assert SoftRecord.decode(b'{"heartbeat_at":1,"load":0,"checked_at":"x"}') is None
    assert SoftRecord.decode(b'{"load":0}') is None
    assert LAYOUT.parse(LAYOUT.soft("api", "a1")) is not None
