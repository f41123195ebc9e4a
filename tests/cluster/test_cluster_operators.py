"""Operator features in cluster mode: maintenance, check types and ttl health are
cluster-wide (written through the store, seen by every node through the watch)."""

from __future__ import annotations

from typing import Any

from sd_core import RegistryConfig
from sd_core.cluster import KeyLayout
from sd_core.cluster.testing import SimulatedCluster

FAST = RegistryConfig(health_check_interval=5.0, health_check_timeout=1.0, registration_ttl=30.0)
LAYOUT = KeyLayout()


def _maintenance(cluster: SimulatedCluster, node: int, start: bool, **body: Any) -> int:
    reply = cluster.request(
        node,
        "PUT" if start else "DELETE",
        "/v1/discovery/maintenance/api/a1",
        json_body=body if body else None,
    )
    return reply.status


def _shown(cluster: SimulatedCluster, node: int) -> dict[str, Any]:
    reply = cluster.read(node, "api")
    assert reply.status == 200
    [instance] = reply.body["instances"]
    assert isinstance(instance, dict)
    return instance


def _writes(cluster: SimulatedCluster, key: bytes) -> int:
    return sum(1 for e in cluster.etcd._events if e.kv.key == key)


def test_maintenance_started_on_one_node_shows_on_every_node() -> None:
    cluster = SimulatedCluster(nodes=3, config=FAST)
    cluster.register(0, "api", "a1")
    assert _maintenance(cluster, 1, True, reason="deploy") == 200
    shown = [_shown(cluster, n)["maintenance"] for n in range(3)]
    assert shown[0] is not None and shown[0]["reason"] == "deploy"
    assert shown[0] == shown[1] == shown[2]
    assert {cluster.read(n, "api").index for n in range(3)} == {cluster.etcd.revision}
    healthy = cluster.request(2, "GET", "/v1/discovery/services/api/healthy")
    assert healthy.body["healthy_instances"] == []
    # A re-registration (to another node) does not end the drain.
    cluster.register(2, "api", "a1", metadata={"v": "2"})
    assert _shown(cluster, 0)["maintenance"] == shown[0]
    assert _maintenance(cluster, 2, False) == 200
    assert {str(_shown(cluster, n)["maintenance"]) for n in range(3)} == {"None"}


def test_repeated_maintenance_calls_write_nothing() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    cluster.register(0, "api", "a1")
    key = LAYOUT.maintenance("api", "a1")
    assert _maintenance(cluster, 0, True, reason="deploy") == 200
    revision = cluster.etcd.revision
    assert _maintenance(cluster, 1, True, reason="deploy") == 200
    assert cluster.etcd.revision == revision
    since = _shown(cluster, 1)["maintenance"]["since"]
    assert _maintenance(cluster, 1, True, reason="still deploying") == 200
    assert _shown(cluster, 0)["maintenance"] == {"reason": "still deploying", "since": since}
    assert _maintenance(cluster, 0, False) == 200
    revision = cluster.etcd.revision
    assert _maintenance(cluster, 1, False) == 200
    assert cluster.etcd.revision == revision
    assert _writes(cluster, key) == 3  # start, new reason, end


def test_maintenance_of_an_unknown_instance_is_404_and_writes_nothing() -> None:
    cluster = SimulatedCluster(nodes=1, config=FAST)
    revision = cluster.etcd.revision
    assert _maintenance(cluster, 0, True) == 404
    assert _maintenance(cluster, 0, False) == 404
    assert cluster.etcd.revision == revision


def test_maintenance_goes_with_the_instance_lease() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    cluster.register(0, "api", "a1")
    assert _maintenance(cluster, 0, True, reason="deploy") == 200
    cluster.advance(32)  # no heartbeat: the lease expires, the drain with it
    assert cluster.read(1, "api").status == 404
    cluster.register(1, "api", "a1")
    assert _shown(cluster, 0)["maintenance"] is None


def test_maintenance_survives_a_relist() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    cluster.register(0, "api", "a1")
    cluster.partition(1)
    assert _maintenance(cluster, 0, True, reason="deploy") == 200
    cluster.compact()
    cluster.heal(1)
    cluster.advance(2)
    assert _shown(cluster, 1)["maintenance"] == _shown(cluster, 0)["maintenance"]
    cluster.partition(1)
    assert _maintenance(cluster, 0, False) == 200
    cluster.compact()
    cluster.heal(1)
    cluster.advance(2)
    assert _shown(cluster, 1)["maintenance"] is None


def test_check_type_is_in_the_record_and_ttl_instances_are_not_probed() -> None:
    cluster = SimulatedCluster(nodes=3, config=FAST)
    for kind in ("http", "tcp", "ttl"):
        cluster.register(0, "api", kind, check={"type": kind})
    cluster.advance(12)
    reply = cluster.read(2, "api")
    shown = {i["instance_id"]: (i["check"]["type"], i["status"]) for i in reply.body["instances"]}
    assert shown == {
        "http": ("http", "healthy"),
        "tcp": ("tcp", "healthy"),
        "ttl": ("ttl", "healthy"),
    }
    probed = {p.instance_id: p.kind.value for run in cluster.probes_run for p in run}
    assert probed == {"http": "http", "tcp": "tcp"}


def test_ttl_status_is_written_once_per_change_and_shown_everywhere() -> None:
    cluster = SimulatedCluster(nodes=3, config=FAST)
    cluster.register(0, "api", "a1", check={"type": "ttl"})
    health = LAYOUT.health("api", "a1")
    assert {cluster.status_of(n, "api", "a1") for n in range(3)} == {"healthy"}
    assert _writes(cluster, health) == 1  # the registration reported it
    bodies = {str(_shown(cluster, n)) for n in range(3)}
    assert len(bodies) == 1  # same last_health_check on every node

    assert cluster.heartbeat(1, "api", "a1", status="unhealthy").status == 200
    assert cluster.status_of(1, "api", "a1") == "unhealthy"  # read-your-writes
    assert {cluster.status_of(n, "api", "a1") for n in range(3)} == {"unhealthy"}
    assert cluster.heartbeat(2, "api", "a1", status="unhealthy").status == 200
    index = cluster.index(0, "api")
    assert cluster.heartbeat(0, "api", "a1", status="unhealthy").status == 200
    # No change: no status write (only its soft state), and no index rise anywhere.
    assert _writes(cluster, health) == 2
    assert {cluster.index(n, "api") for n in range(3)} == {index}
    assert cluster.heartbeat(2, "api", "a1").status == 200  # no status: healthy
    assert {cluster.status_of(n, "api", "a1") for n in range(3)} == {"healthy"}
    assert _writes(cluster, health) == 3
    # A re-registration of a healthy ttl instance writes no status either.
    cluster.register(1, "api", "a1", check={"type": "ttl"})
    assert _writes(cluster, health) == 3


def test_status_from_a_probed_instance_is_refused_without_the_store() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    cluster.register(0, "api", "a1")
    revision = cluster.etcd.revision
    reply = cluster.heartbeat(1, "api", "a1", status="healthy")
    assert (reply.status, reply.body["error"]) == (422, "validation_error")
    assert cluster.etcd.revision == revision


def test_switching_a_ttl_instance_to_http_starts_unknown() -> None:
    cluster = SimulatedCluster(nodes=2, config=RegistryConfig(health_check_interval=86400.0))
    cluster.register(0, "api", "a1", check={"type": "ttl"})
    assert cluster.status_of(1, "api", "a1") == "healthy"
    cluster.register(1, "api", "a1")
    assert {cluster.status_of(n, "api", "a1") for n in range(2)} == {"unknown"}
    assert _shown(cluster, 0)["check"] == {"type": "http"}
