"""Expiry in cluster mode is the registry's, not etcd's: a store outage expires nothing,
every instance gets a full TTL from the moment the store is usable again, a quiet
instance expires a TTL after its last sign of life, and a heartbeat that reaches the
store before the expiry's txn wins (a probe's soft put does not)."""

from __future__ import annotations

import base64
import json

from sd_core import RegistryConfig
from sd_core.cluster import KeyLayout, StoreCall, WriteDone
from sd_core.cluster.layout import SoftRecord
from sd_core.cluster.testing import SimulatedCluster, http_request
from sd_core.events import InstanceRemoved
from sd_core.http_api import HttpRequest, PendingWrite
from sd_etcd import GatewayRequest, RangeOp, put_request

QUIET = RegistryConfig(health_check_interval=86400.0, registration_ttl=30.0)
LAYOUT = KeyLayout()


def _ids(cluster: SimulatedCluster, node: int) -> list[str]:
    reply = cluster.read(node, "api")
    return [] if reply.status == 404 else [i["instance_id"] for i in reply.body["instances"]]


def _removed(cluster: SimulatedCluster) -> list[InstanceRemoved]:
    return [e for n in cluster.live() for e in cluster.effects[n] if isinstance(e, InstanceRemoved)]


def _created(cluster: SimulatedCluster, instance_id: str) -> int:
    """The instance key's create revision (0: not in the store)."""
    found = cluster.etcd.range(RangeOp(LAYOUT.instance("api", instance_id)), cluster.clock.now)
    return found.kvs[0].create_revision if found.kvs else 0


def test_a_stall_longer_than_the_ttl_expires_nothing_and_then_gives_a_full_ttl() -> None:
    cluster = SimulatedCluster(nodes=3, config=QUIET)
    for number in range(3):
        cluster.register(number, "api", f"a{number}")
    created = [_created(cluster, f"a{n}") for n in range(3)]
    cluster.advance(10)
    cluster.store_down()  # etcd stalls: a member that will resume as the leader
    for _ in range(6):  # a minute, twice the TTL: the clients heartbeat on, answered 503
        cluster.advance(10)
        for number in range(3):
            reply = cluster.heartbeat(number, "api", f"a{number}")
            assert (reply.status, reply.body["error"]) == (503, "store_unavailable")
    cluster.store_up(same_leader=True)  # it revokes at once whatever lease ran out
    back = cluster.clock.now
    cluster.advance(1)
    assert [_ids(cluster, n) for n in range(3)] == [["a0", "a1", "a2"]] * 3
    assert [_created(cluster, f"a{n}") for n in range(3)] == created  # never deleted
    assert _removed(cluster) == []
    # a0 and a1 heartbeat on; a2 stays quiet: a full TTL from the store's return.
    for _ in range(3):
        cluster.advance(back + 29.5 - cluster.clock.now if _ == 2 else 9.5)
        for number in range(2):
            assert cluster.heartbeat(number, "api", f"a{number}").status == 200
    assert cluster.clock.now - back >= 29.5
    assert [_ids(cluster, n) for n in range(3)] == [["a0", "a1", "a2"]] * 3
    cluster.advance(back + 32 - cluster.clock.now)
    assert [_ids(cluster, n) for n in range(3)] == [["a0", "a1"]] * 3
    assert {(e.instance_id, e.reason.value) for e in _removed(cluster)} == {("a2", "ttl_expired")}
    reply = cluster.heartbeat(1, "api", "a2")
    assert (reply.status, reply.body["error"]) == (404, "instance_not_found")


def test_a_quiet_instance_expires_a_ttl_after_its_last_heartbeat() -> None:
    cluster = SimulatedCluster(nodes=3, config=QUIET)
    cluster.register(0, "api", "a1")
    cluster.register(1, "api", "a2")
    cluster.advance(20)
    assert cluster.heartbeat(2, "api", "a1").status == 200
    cluster.advance(9.9)
    assert [_ids(cluster, n) for n in range(3)] == [["a1", "a2"]] * 3
    cluster.advance(0.2)  # a2: a TTL since its registration
    assert [_ids(cluster, n) for n in range(3)] == [["a1"]] * 3
    assert _created(cluster, "a2") == 0
    assert all(cluster.etcd.range(RangeOp(k), cluster.clock.now).kvs == ()
               for k in LAYOUT.instance_keys("api", "a2"))  # fmt: skip
    cluster.advance(19.7)
    assert _ids(cluster, 0) == ["a1"]
    cluster.advance(0.2)  # a1: a TTL since its heartbeat
    assert [_ids(cluster, n) for n in range(3)] == [[]] * 3
    assert {e.reason.value for e in _removed(cluster)} == {"ttl_expired"}


def _heartbeat_request(instance_id: str) -> HttpRequest:
    body = {"service_name": "api", "instance_id": instance_id}
    return http_request("POST", "/v1/discovery/heartbeat", json_body=body)


def _removes(request: GatewayRequest, instance_id: str) -> bool:
    """Whether `request` is a txn deleting the instance `api/<instance_id>`."""
    if request.path != "/v3/kv/txn":
        return False
    txn = json.loads(request.body)
    key = LAYOUT.instance("api", instance_id)
    deleted = [op["request_delete_range"]["key"] for op in txn.get("success", [])
               if "request_delete_range" in op]  # fmt: skip
    return base64.b64encode(key).decode() in deleted


def test_a_heartbeat_that_reaches_the_store_before_the_expiry_wins() -> None:
    cluster = SimulatedCluster(nodes=3, config=QUIET)
    cluster.register(1, "api", "a1")
    real = cluster.etcd.handle
    raced: list[PendingWrite] = []

    def handle(request: GatewayRequest, now: float) -> tuple[int, bytes]:
        if not raced and _removes(request, "a1"):
            # The guardian decided; a heartbeat on node 2 reaches etcd before its txn.
            racer = cluster.nodes[2]
            parked = racer.handle(_heartbeat_request("a1"), now)
            assert isinstance(parked, PendingWrite)
            raced.append(parked)
            [put] = racer.drain_effects()
            assert isinstance(put, StoreCall)
            racer.store_answered(put.token, *real(put.request, now), now)
        return real(request, now)

    cluster.etcd.handle = handle  # type: ignore[method-assign]
    cluster.advance(30.5)  # a1 is due on the guardian (node 0)
    assert raced, "the guardian never tried to expire a1"
    assert [_ids(cluster, n) for n in range(3)] == [["a1"]] * 3
    assert _removed(cluster) == []
    [answer] = [e for e in cluster.effects[2] if isinstance(e, WriteDone)
                and e.token == raced[0].token]  # fmt: skip
    assert answer.response.status == 200
    cluster.advance(29)  # a full TTL from the heartbeat that won
    assert _ids(cluster, 0) == ["a1"]
    cluster.advance(1.5)
    assert [_ids(cluster, n) for n in range(3)] == [[]] * 3


def test_a_probe_put_that_reaches_the_store_before_the_expiry_does_not_keep_it() -> None:
    """A probe rewrites the soft key (its own time, the heartbeat time unchanged) every
    interval; when one lands between the guardian's look and its txn, the expiry is
    sent again at once with the new revision, not a look (a second) later."""
    cluster = SimulatedCluster(nodes=3, config=QUIET)
    cluster.register(1, "api", "a1")
    real = cluster.etcd.handle
    raced: list[float] = []

    def handle(request: GatewayRequest, now: float) -> tuple[int, bytes]:
        if len(raced) < 2 and _removes(request, "a1"):
            key = LAYOUT.soft("api", "a1")
            [kv] = cluster.etcd.range(RangeOp(key), now).kvs
            shown = SoftRecord.decode(kv.value)
            assert shown is not None
            probed = SoftRecord(shown.heartbeat_at, shown.load, now + 1000.0)
            assert real(put_request(key, probed.encode()), now)[0] == 200
            raced.append(now)
        return real(request, now)

    cluster.etcd.handle = handle  # type: ignore[method-assign]
    cluster.advance(30.5)  # due at 30 on the guardian (node 0), which looks again at 31
    assert len(raced) == 2, "the guardian did not try (and retry) the expiry of a1"
    assert [_ids(cluster, n) for n in range(3)] == [[]] * 3
    assert {(e.instance_id, e.reason.value) for e in _removed(cluster)} == {("a1", "ttl_expired")}
