"""First-probe retries and re-registrations in cluster mode (tests/core/test_core_first_probes.py).

The probe schedule, retries included, lives in the registry core every node runs;
the owning node counts the streak and writes the status to the store. These
check that the same rules reach every node: a replica listening 1.5 s after it
registered is healthy everywhere within about 3 s, failed retries do not count
toward the failure threshold, and a re-registration of an unhealthy instance
starts `unknown` everywhere.
"""

from __future__ import annotations

from sd_core import RegistryConfig, RunProbe
from sd_core.cluster.testing import SimulatedCluster
from sd_core.testing import FakeClock
from sd_etcd.requests import RangeOp

INTERVAL = 30.0
CONFIG = RegistryConfig(
    health_check_interval=INTERVAL, health_check_timeout=1.0, registration_ttl=1e6
)


def _statuses(cluster: SimulatedCluster) -> set[str | None]:
    return {cluster.status_of(n, "orders", "orders-1") for n in cluster.live()}


def _healthy_everywhere_at(cluster: SimulatedCluster, until: float) -> float | None:
    while cluster.clock.now < until:
        cluster.advance(0.25)
        if _statuses(cluster) == {"healthy"}:
            return cluster.clock.now
    return None


def _listening_later(clock: FakeClock) -> tuple[SimulatedCluster, dict[str, float]]:
    """Three nodes whose instances' health endpoints answer from `listens["at"]` on
    (never, until the test sets it)."""
    listens = {"at": float("inf")}

    def answer(probe: RunProbe) -> bool:
        return clock.now >= listens["at"]

    return SimulatedCluster(nodes=3, config=CONFIG, clock=clock, probe=answer), listens


def test_a_replica_listening_after_it_registered_is_healthy_on_every_node_within_seconds() -> None:
    clock = FakeClock(0.0)
    cluster, listens = _listening_later(clock)
    registered = clock.now
    listens["at"] = registered + 1.5
    assert cluster.register(1, "orders", "orders-1").status == 200
    cluster.advance(0.0)  # the first probe, at once, fails
    assert _statuses(cluster) == {"unknown"}
    healthy = _healthy_everywhere_at(cluster, registered + INTERVAL)
    assert healthy is not None and healthy - registered <= 3.0, healthy


def test_failed_retries_do_not_turn_a_new_instance_unhealthy_sooner() -> None:
    clock = FakeClock(0.0)
    cluster = SimulatedCluster(nodes=2, config=CONFIG, clock=clock, probe=lambda probe: False)
    cluster.register(0, "game-service", "game-1")  # its scheduled probes fall at 9.4 s
    cluster.advance(0.0)

    def statuses() -> set[str | None]:
        return {cluster.status_of(n, "game-service", "game-1") for n in cluster.live()}

    # The first probe and the retries 1, 3 and 7 s in fail; with a threshold of 2 the
    # instance turns unhealthy only at its second scheduled probe (its phase), not at 1 s.
    while statuses() == {"unknown"}:
        cluster.advance(0.25)
    assert statuses() == {"unhealthy"}
    assert sum(len(run) for run in cluster.probes_run) == 5
    assert 9.0 < clock.now < 10.0


def test_an_unhealthy_instance_registering_again_starts_unknown_on_every_node() -> None:
    clock = FakeClock(0.0)
    cluster, listens = _listening_later(clock)
    cluster.register(0, "orders", "orders-1")
    cluster.advance(2 * INTERVAL)
    assert _statuses(cluster) == {"unhealthy"}
    restart = clock.now
    listens["at"] = restart + 1.5
    assert cluster.register(2, "orders", "orders-1").status == 200
    assert _statuses(cluster) == {"unknown"}
    # In the store too, so a node that lists the prefix later shows the same.
    health = cluster.nodes[0].layout.health("orders", "orders-1")
    assert cluster.etcd.range(RangeOp(health), clock.now).kvs == ()
    healthy = _healthy_everywhere_at(cluster, restart + INTERVAL)
    assert healthy is not None and healthy - restart <= 3.0, healthy - restart
