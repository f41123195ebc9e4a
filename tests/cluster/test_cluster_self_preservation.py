"""Self-preservation on a simulated cluster: the guardian node (the lowest node id)
decides with the single-process rules, expires nothing while the mode holds, and every
node shows the mode through the `self-preservation` key."""

from __future__ import annotations

from sd_core import RegistryConfig
from sd_core.cluster import KeyLayout
from sd_core.cluster.testing import SimulatedCluster
from sd_etcd import RangeOp

LAYOUT = KeyLayout()


def _config(max_seconds: float = 900.0) -> RegistryConfig:
    return RegistryConfig(
        health_check_interval=86400.0,
        registration_ttl=30.0,
        self_preservation_threshold=0.5,
        self_preservation_min_instances=3,
        self_preservation_max_seconds=max_seconds,
    )


def _modes(cluster: SimulatedCluster) -> list[bool]:
    return [cluster.request(n, "GET", "/health").body["self_preservation"] for n in cluster.live()]


def _ids(cluster: SimulatedCluster, node: int) -> list[str]:
    reply = cluster.read(node, "api")
    return [] if reply.status == 404 else [i["instance_id"] for i in reply.body["instances"]]


def _fleet(cluster: SimulatedCluster, count: int = 4) -> None:
    for number in range(count):
        cluster.register(number % len(cluster.nodes), "api", f"a{number}")


def test_a_quiet_fleet_is_kept_until_heartbeats_come_back() -> None:
    cluster = SimulatedCluster(nodes=3, config=_config())
    _fleet(cluster)
    cluster.advance(29.9)
    assert _modes(cluster) == [False] * 3  # no expiry due yet
    cluster.advance(0.1)  # due: the guardian pauses expiry instead
    assert _modes(cluster) == [True] * 3
    reasons = {
        cluster.request(n, "GET", "/health").body["self_preservation_reason"] for n in range(3)
    }
    assert len(reasons) == 1 and "expiry paused" in str(reasons.pop())
    cluster.advance(120)  # four TTLs: the guardian expired nothing
    assert [_ids(cluster, n) for n in range(3)] == [["a0", "a1", "a2", "a3"]] * 3
    for number in range(3):
        cluster.heartbeat(number, "api", f"a{number}")
    cluster.advance(1.1)  # the guardian looks once a second
    assert _modes(cluster) == [False] * 3
    assert cluster.etcd.range(RangeOp(LAYOUT.preservation()), cluster.clock.now).kvs == ()
    for _ in range(3):  # a0-a2 heartbeat on; a3 stays quiet and expires within a TTL
        cluster.advance(12)
        for number in range(3):
            cluster.heartbeat(number, "api", f"a{number}")
    assert [_ids(cluster, n) for n in range(3)] == [["a0", "a1", "a2"]] * 3
    assert _modes(cluster) == [False] * 3


def test_the_mode_ends_at_its_maximum_and_the_quiet_fleet_expires() -> None:
    cluster = SimulatedCluster(nodes=3, config=_config(max_seconds=60.0))
    _fleet(cluster)
    cluster.advance(30)
    assert _modes(cluster) == [True] * 3
    cluster.advance(59)
    assert _modes(cluster) == [True] * 3
    assert _ids(cluster, 2) == ["a0", "a1", "a2", "a3"]
    cluster.advance(2)
    assert _modes(cluster) == [False] * 3  # the maximum: no new pause for a TTL
    assert [_ids(cluster, n) for n in range(3)] == [[]] * 3  # the quiet fleet expired
    assert _modes(cluster) == [False] * 3


def test_a_small_quiet_share_expires_as_usual() -> None:
    cluster = SimulatedCluster(nodes=2, config=_config())
    _fleet(cluster)
    for _ in range(3):
        cluster.advance(12)
        for number in range(3):
            cluster.heartbeat(number % 2, "api", f"a{number}")
    assert _modes(cluster) == [False] * 2
    assert _ids(cluster, 1) == ["a0", "a1", "a2"]


def test_when_the_guardian_dies_the_next_node_takes_over() -> None:
    cluster = SimulatedCluster(nodes=3, config=_config())
    _fleet(cluster)
    cluster.advance(30)
    assert _modes(cluster) == [True] * 3
    cluster.crash(0)  # node-1, the guardian: its key goes with its node lease
    cluster.advance(60)
    assert _modes(cluster) == [True, True]  # node-2 decided afresh and expires nothing
    assert [_ids(cluster, n) for n in (1, 2)] == [["a0", "a1", "a2", "a3"]] * 2
    [kv] = cluster.etcd.range(RangeOp(LAYOUT.preservation()), cluster.clock.now).kvs
    assert b'"by_node":"node-2"' in kv.value


def test_off_when_the_threshold_is_zero() -> None:
    config = RegistryConfig(health_check_interval=86400.0, registration_ttl=30.0)
    cluster = SimulatedCluster(nodes=2, config=config)
    _fleet(cluster)
    cluster.advance(31)
    assert _modes(cluster) == [False] * 2
    assert _ids(cluster, 0) == []
