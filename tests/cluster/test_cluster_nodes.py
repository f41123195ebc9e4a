"""Cluster mode on a simulated cluster: N real ClusterNodes over one MemoryEtcd."""

from __future__ import annotations

import base64

from sd_core import RegistryConfig
from sd_core.cluster import InstanceRecord, KeyLayout, StoreCall, owner
from sd_core.cluster.testing import SimulatedCluster

FAST = RegistryConfig(health_check_interval=5.0, health_check_timeout=1.0, registration_ttl=30.0)


def _owner_node(cluster: SimulatedCluster, service: str, instance: str) -> int:
    nodes = {f"node-{n + 1}" for n in cluster.live()}
    chosen = owner(nodes, service, instance)
    assert chosen is not None
    return int(chosen.split("-")[1]) - 1


def test_register_on_one_node_reads_the_same_on_another() -> None:
    cluster = SimulatedCluster(nodes=3, config=FAST)
    assert cluster.register(0, "api", "a1", metadata={"v": "1"}).status == 200
    replies = [cluster.read(n, "api") for n in range(3)]
    assert {r.status for r in replies} == {200}
    assert replies[0].body == replies[1].body == replies[2].body
    assert {r.index for r in replies} == {cluster.etcd.revision}
    assert {r.headers["x-discovery-cluster"] for r in replies} == {"1d5cc0de00000001"}
    assert all("x-discovery-stale" not in r.headers for r in replies)


def test_read_your_writes_on_the_writing_node() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    before = cluster.etcd.revision
    cluster.register(1, "api", "a1")
    # Answered only once the node's own view shows the write: no time passed.
    assert cluster.nodes[1].mirror.synced_revision > before
    reply = cluster.read(1, "api")
    assert [i["instance_id"] for i in reply.body["instances"]] == ["a1"]


def test_heartbeat_to_any_node_keeps_alive_and_expiry_follows_the_last_one() -> None:
    cluster = SimulatedCluster(nodes=3, config=FAST)
    cluster.register(0, "api", "a1")
    cluster.crash(0)  # the registering node goes away: the lease is cluster-wide
    for _ in range(4):
        cluster.advance(20)
        assert cluster.heartbeat(1 + _ % 2, "api", "a1").status == 200
    last = cluster.clock.now
    cluster.advance(29.9)
    assert cluster.read(1, "api").status == 200
    cluster.advance(0.1 + 1.0)  # TTL plus etcd's lease granularity (exact in memory)
    for n in (1, 2):
        assert cluster.read(n, "api").status == 404
    assert cluster.clock.now - last <= 30 + 1.0
    reply = cluster.heartbeat(2, "api", "a1")
    assert (reply.status, reply.body["error"]) == (404, "instance_not_found")


def test_unknown_instance_and_bad_requests_are_answered_without_the_store() -> None:
    cluster = SimulatedCluster(nodes=1, config=FAST)
    revision = cluster.etcd.revision
    assert cluster.heartbeat(0, "api", "nope").status == 404
    assert cluster.unregister(0, "api", "nope").status == 404
    assert cluster.register(0, "api", "a1", port="80").status == 422
    assert cluster.request(0, "POST", "/v1/discovery/heartbeat", token="bad").status == 401
    assert cluster.etcd.revision == revision


def test_unregister_removes_everywhere() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    cluster.register(0, "api", "a1")
    assert cluster.unregister(1, "api", "a1").status == 200
    assert cluster.read(1, "api").status == 404  # read-your-writes
    assert cluster.read(0, "api").status == 404


def test_probes_are_split_and_a_crashed_nodes_share_is_taken_over() -> None:
    cluster = SimulatedCluster(nodes=3, config=FAST)
    for n in range(12):
        cluster.register(0, "api", f"i{n}")
    cluster.advance(10)
    probed = {(p.instance_id, n) for n in range(3) for p in cluster.probes_run[n]}
    by_instance: dict[str, set[int]] = {}
    for instance_id, n in probed:
        by_instance.setdefault(instance_id, set()).add(n)
    assert all(len(nodes) == 1 for nodes in by_instance.values())  # exactly one prober
    victim = _owner_node(cluster, "api", "i0")
    mine = [i for i, nodes in by_instance.items() if nodes == {victim}]
    cluster.crash(victim)
    crashed_at = cluster.clock.now
    for run in cluster.probes_run:
        run.clear()
    cluster.advance(10 + 1 + FAST.health_check_interval)  # node TTL + one interval
    taken = {p.instance_id for n in cluster.live() for p in cluster.probes_run[n]}
    assert set(mine) <= taken
    assert cluster.clock.now - crashed_at <= 10 + 1 + FAST.health_check_interval


def test_status_change_is_written_once_and_shown_everywhere() -> None:
    cluster = SimulatedCluster(nodes=3, config=FAST)
    cluster.register(0, "api", "a1")
    cluster.advance(6)
    assert {cluster.status_of(n, "api", "a1") for n in range(3)} == {"healthy"}
    cluster.set_probe("api", "a1", healthy=False)
    cluster.advance(6)  # one failure: below the threshold of 2
    assert {cluster.status_of(n, "api", "a1") for n in range(3)} == {"healthy"}
    cluster.advance(5)
    assert {cluster.status_of(n, "api", "a1") for n in range(3)} == {"unhealthy"}
    health_key = KeyLayout().health("api", "a1")
    writes = [e for e in cluster.etcd._events if e.kv.key == health_key and e.kv.create_revision]
    assert len(writes) == 2  # healthy once, unhealthy once
    indexes = {cluster.read(n, "api").index for n in range(3)}
    assert indexes == {writes[-1].kv.mod_revision}
    bodies = {cluster.read(n, "api").headers["x-discovery-index"] for n in range(3)}
    assert len(bodies) == 1


def test_thresholds_hold_across_a_takeover() -> None:
    config = RegistryConfig(
        health_check_interval=5.0, health_check_timeout=1.0, registration_ttl=300.0,
        failure_threshold=3,
    )  # fmt: skip
    cluster = SimulatedCluster(nodes=2, config=config)
    cluster.register(0, "api", "a1")
    cluster.advance(6)
    victim = _owner_node(cluster, "api", "a1")
    cluster.set_probe("api", "a1", healthy=False)
    cluster.advance(10)  # two failures on the old owner
    assert cluster.status_of(1 - victim, "api", "a1") == "healthy"
    cluster.crash(victim)
    cluster.advance(14)  # lease gone by +10, then a probe within one interval: not 3 yet
    survivor = 1 - victim
    failures = [p for p in cluster.probes_run[survivor] if p.instance_id == "a1"]
    assert 0 < len(failures) < 3 and cluster.status_of(survivor, "api", "a1") == "healthy"
    cluster.advance(15)
    assert cluster.status_of(survivor, "api", "a1") == "unhealthy"


def test_deregister_after_unhealthy_happens_once() -> None:
    config = RegistryConfig(
        health_check_interval=5.0, health_check_timeout=1.0, registration_ttl=300.0,
        deregister_unhealthy_after=20.0,
    )  # fmt: skip
    cluster = SimulatedCluster(nodes=3, config=config, probe=lambda probe: False)
    cluster.register(0, "api", "a1")
    cluster.advance(60)
    assert {cluster.read(n, "api").status for n in range(3)} == {404}
    instance_key = base64.b64encode(KeyLayout().instance("api", "a1")).decode()
    deletions = [
        e for n in range(3) for e in cluster.effects[n]
        if isinstance(e, StoreCall) and e.request.path == "/v3/kv/txn"
        and instance_key in e.request.body.decode() and b"request_delete_range" in e.request.body
        and b'"compare"' in e.request.body
    ]  # fmt: skip
    assert len(deletions) == 1
    removed = [
        e for n in range(3) for e in cluster.effects[n] if type(e).__name__ == "InstanceRemoved"
    ]
    assert len(removed) == 3  # one deletion, seen by every node
    reasons = {e.reason.value for e in removed}  # type: ignore[attr-defined]
    assert "unhealthy_too_long" in reasons  # on the node that deleted; others cannot tell


def test_store_outage_refuses_writes_serves_stale_reads_and_converges() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    cluster.register(0, "api", "a1")
    cluster.register(0, "api", "a2")
    body = cluster.read(1, "api").body
    cluster.store_down()
    revision = cluster.etcd.revision
    reply = cluster.register(0, "api", "a3")
    assert (reply.status, reply.body["error"]) == (503, "store_unavailable")
    assert reply.headers["retry-after"] == "1"
    assert cluster.heartbeat(1, "api", "a1").status == 503
    cluster.advance(120)  # four TTLs: nothing expires locally
    for n in range(2):
        stale = cluster.read(n, "api")
        assert stale.headers["x-discovery-stale"] == "true"
        assert stale.body == body
        health = cluster.request(n, "GET", "/health")
        assert health.status == 200 and health.body["store"]["state"] == "unavailable"
    assert cluster.etcd.revision == revision
    cluster.store_up()
    cluster.advance(2)
    assert all(not n.stale for n in cluster.nodes)
    assert cluster.heartbeat(1, "api", "a1").status == 200
    cluster.advance(20)
    assert cluster.heartbeat(0, "api", "a1").status == 200
    cluster.advance(11)  # a2 sent nothing: it expires one TTL after recovery
    replies = [cluster.read(n, "api") for n in range(2)]
    assert [i["instance_id"] for i in replies[0].body["instances"]] == ["a1"]
    assert replies[0].body == replies[1].body and replies[0].index == replies[1].index
    assert "x-discovery-stale" not in replies[0].headers


def test_partitioned_node_goes_stale_and_catches_up() -> None:
    cluster = SimulatedCluster(nodes=3, config=FAST)
    cluster.register(0, "api", "a1")
    cluster.partition(2)
    assert cluster.register(2, "api", "a9").status == 503
    cluster.register(0, "api", "a2")
    stale = cluster.read(2, "api")
    assert stale.headers["x-discovery-stale"] == "true" and len(stale.body["instances"]) == 1
    cluster.heal(2)
    cluster.advance(2)
    assert cluster.read(2, "api").body == cluster.read(0, "api").body
    assert cluster.read(2, "api").index == cluster.read(0, "api").index


def test_compaction_while_disconnected_leads_to_a_relist() -> None:
    cluster = SimulatedCluster(nodes=3, config=FAST)
    cluster.register(0, "api", "a1")
    cluster.register(0, "api", "a2")
    cluster.partition(2)
    cluster.unregister(0, "api", "a1")
    cluster.register(0, "api", "a3", metadata={"k": "v"})
    cluster.register(0, "web", "w1")
    assert cluster.nodes[2].link.listings == 1
    cluster.compact()
    cluster.heal(2)
    cluster.advance(2)
    assert cluster.nodes[2].link.listings == 2  # counted: /health shows it
    for service in ("api", "web"):
        assert cluster.read(2, service).body == cluster.read(0, service).body
    assert cluster.read(2, "web").index == cluster.read(0, "web").index
    assert cluster.read(2, "api").index >= cluster.read(0, "api").index  # deletion: list rev
    assert not cluster.nodes[2].stale


def test_a_listing_gives_each_service_the_index_of_its_own_last_change() -> None:
    """A listing applies keys in key order, not revision order: a service listed after
    a newer one keeps its own revision, the index nodes that watched it live show
    (found by bench.cluster's re-list at scale: same bytes, another index)."""
    unprobed = RegistryConfig(  # a probe result would raise both indexes alike
        health_check_interval=3600.0, registration_ttl=7200.0, first_probes_per_second=0
    )
    cluster = SimulatedCluster(nodes=2, config=unprobed)
    cluster.partition(1)
    cluster.register(0, "web", "w1")  # the older change, listed last
    cluster.register(0, "api", "a1")
    cluster.compact()
    cluster.heal(1)
    cluster.advance(2)
    assert cluster.nodes[1].link.listings == 2
    for service in ("api", "web"):
        assert cluster.read(1, service).body == cluster.read(0, service).body
        assert cluster.index(1, service) == cluster.index(0, service), service


def test_index_never_goes_backwards_and_agrees_across_nodes() -> None:
    cluster = SimulatedCluster(nodes=3, config=FAST)
    seen: list[list[int]] = [[], [], []]
    for step in range(6):
        cluster.register(step % 3, "api", f"a{step}")
        cluster.heartbeat((step + 1) % 3, "api", "a0")
        cluster.advance(3)
        for n in range(3):
            seen[n].append(cluster.index(n, "api"))
    for series in seen:
        assert series == sorted(series)
    assert seen[0] == seen[1] == seen[2]


def test_heartbeats_do_not_raise_the_index_but_a_load_move_does() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    cluster.register(0, "api", "a1", load_percentage=0.1)
    cluster.advance(6)
    index = cluster.index(1, "api")
    cluster.heartbeat(0, "api", "a1")
    cluster.heartbeat(1, "api", "a1", load_percentage=0.15)
    assert cluster.index(0, "api") == cluster.index(1, "api") == index
    cluster.heartbeat(1, "api", "a1", load_percentage=0.5)
    assert cluster.index(0, "api") == cluster.index(1, "api") > index
    shown = cluster.read(0, "api").body["instances"][0]["load_percentage"]
    assert shown == 0.5


def test_records_tolerate_unknown_fields() -> None:
    record = InstanceRecord.decode(
        b'{"service_name":"api","instance_id":"a","host":"h","port":1,"metadata":{},'
        b'"registered_at":1.5,"load_percentage":0.2,"future":true}'
    )
    assert record is not None and record.updated_at == 1.5 and record.load == 0.2
    assert InstanceRecord.decode(record.encode()) == record
    assert InstanceRecord.decode(b"[]") is None
