"""A node that lists the prefix (at start, rejoining after a kill -9, after a compaction)
gives every service exactly the index, and the bytes, that the nodes which watched it
live show: after a restart, after a load move that later heartbeats rewrite ("higher"),
and after a removal ("lower"); and a blocking query with the live index waits there."""

from __future__ import annotations

from sd_core import RegistryConfig
from sd_core.cluster.testing import SimulatedCluster, http_request
from sd_core.http_api import BlockingWait

FAST = RegistryConfig(health_check_interval=5.0, health_check_timeout=1.0, registration_ttl=60.0)
#: Probes that pass or fail by instance, so statuses move as well.
FLAKY = {"b2", "c1"}


def _probe(probe: object) -> bool:
    return getattr(probe, "instance_id", "") not in FLAKY


def _cluster(nodes: int = 3) -> SimulatedCluster:
    return SimulatedCluster(nodes=nodes, config=FAST, probe=_probe)  # type: ignore[arg-type]


def _same_everywhere(cluster: SimulatedCluster, services: list[str]) -> None:
    """Every live node: the same status, bytes and index for every service."""
    for service in services:
        replies = [cluster.read(n, service) for n in cluster.live()]
        assert len({(r.status, r.index) for r in replies}) == 1, (service, replies)
        assert all(r.body == replies[0].body for r in replies), service


def _traffic(cluster: SimulatedCluster) -> None:
    """Registrations, heartbeats with visible and invisible load moves, probes that
    change statuses and probes that change nothing, a drain, unregistrations."""
    cluster.register(0, "api", "a1", load_percentage=0.1)
    cluster.register(1, "api", "a2")
    cluster.register(2, "billing", "b1")
    cluster.register(0, "billing", "b2")
    cluster.register(1, "cart", "c1")
    cluster.advance(6)
    cluster.heartbeat(1, "api", "a1", load_percentage=0.6)  # visible
    cluster.advance(3)
    for _ in range(3):
        cluster.heartbeat(2, "api", "a1", load_percentage=0.61)  # not visible
        cluster.heartbeat(0, "billing", "b1")
        cluster.advance(4)
    cluster.request(
        2,
        "PUT",
        "/v1/discovery/maintenance/billing/b1",
        json_body={"reason": "deploy"},
    )
    cluster.unregister(1, "billing", "b2")  # billing's last change: a removal
    cluster.unregister(0, "cart", "c1")  # cart: no instance left
    cluster.advance(2)


def test_a_node_restarted_after_a_kill_shows_the_live_index_of_every_service() -> None:
    cluster = _cluster()
    _traffic(cluster)
    cluster.crash(2)  # kill -9: it hears nothing more
    cluster.heartbeat(0, "api", "a2", load_percentage=0.9)
    cluster.unregister(1, "api", "a1")
    cluster.advance(6)
    cluster.restart(2)
    cluster.advance(1)
    _same_everywhere(cluster, ["api", "billing", "cart"])
    assert cluster.read(2, "cart").status == 404


def test_a_listing_after_a_visible_load_move_is_not_higher() -> None:
    """Later heartbeats and probes rewrite the soft record: a listing must not take
    their revision (the load moved visibly at an earlier one)."""
    cluster = _cluster(nodes=2)
    cluster.register(0, "api", "a1", load_percentage=0.1)
    cluster.advance(6)
    cluster.heartbeat(1, "api", "a1", load_percentage=0.7)
    live = cluster.index(0, "api")
    for _ in range(3):
        cluster.heartbeat(0, "api", "a1", load_percentage=0.72)
        cluster.advance(5)  # probes pass and change nothing
    assert cluster.index(0, "api") == live
    cluster.restart(1)
    cluster.advance(1)
    _same_everywhere(cluster, ["api"])
    assert cluster.index(1, "api") == live


def test_a_listing_after_a_removal_is_not_lower_and_a_blocking_query_waits() -> None:
    cluster = _cluster(nodes=2)
    cluster.register(0, "api", "a1")
    cluster.register(0, "api", "a2")
    cluster.register(0, "gone", "g1")
    cluster.advance(6)
    cluster.unregister(0, "api", "a2")
    cluster.unregister(0, "gone", "g1")
    live = {service: cluster.index(0, service) for service in ("api", "gone")}
    cluster.restart(1)
    cluster.advance(1)
    _same_everywhere(cluster, ["api", "gone"])
    assert {service: cluster.index(1, service) for service in live} == live
    # A client that read node 0 blocks on node 1 with that index.
    for service, index in live.items():
        path = f"/v1/discovery/services/{service}"
        request = http_request("GET", path, query=f"index={index}&wait=30s")
        assert isinstance(cluster.nodes[1].handle(request, cluster.clock.now), BlockingWait)


def test_a_relist_after_a_compaction_shows_the_live_index() -> None:
    cluster = _cluster()
    cluster.register(2, "billing", "b2")
    cluster.register(2, "cart", "c1")
    cluster.partition(2)
    _traffic(cluster)
    cluster.compact()
    cluster.heal(2)
    cluster.advance(2)
    assert cluster.nodes[2].link.listings == 2
    _same_everywhere(cluster, ["api", "billing", "cart"])
