"""First-probe retries: a replica that registers a moment before it listens.

A FastAPI lifespan or Flask's `with client.registered(): app.run()` registers
before the port listens, so the first probe fails. Until an instance passes a
probe, a failed one is retried after 1, 2, 4 ... s (capped at the interval),
so it is healthy within about 3 s of listening instead of an interval later.
Retries are extra probes: their failures do not count toward the failure
threshold, and the scheduled probes keep their phase. A re-registration is a
new run and starts the same way (docs/api.md, "Active health checks").
"""

from __future__ import annotations

from core_support import Core, with_config

from sd_core import RegistryConfig, RunProbe, Status, StatusChanged
from sd_core.testing import FakeClock, SimulatedRegistry

INTERVAL = 30.0


def _listening_from(clock: FakeClock, at: float, **config: float) -> SimulatedRegistry:
    """A registry whose instances' health endpoints answer from `at` on (nothing before),
    one orders-1 registered at the clock's time; `config` overrides the 30 s interval and
    the failure threshold of 2."""

    def answer(probe: RunProbe) -> bool:
        return clock.now >= at

    settings: dict[str, float] = {"health_check_interval": INTERVAL, "failure_threshold": 2}
    sim = SimulatedRegistry(RegistryConfig(**{**settings, **config}), clock=clock, probe=answer)
    sim.register("orders", "orders-1")
    return sim


def _healthy_at(sim: SimulatedRegistry, until: float, step: float = 0.25) -> float | None:
    """The first moment (in steps of `step`) the instance reads healthy, up to `until`."""
    while sim.clock.now < until:
        sim.advance(step)
        if sim.status_of("orders", "orders-1") == "healthy":
            return sim.clock.now
    return None


def test_a_replica_listening_after_it_registered_is_healthy_within_seconds() -> None:
    clock = FakeClock(0.0)
    sim = _listening_from(clock, 1.5)
    sim.advance(0.0)  # the first probe, at once, fails
    assert sim.status_of("orders", "orders-1") == "unknown"
    healthy = _healthy_at(sim, INTERVAL)
    # A retry soon after the port listens passes (not the next slot of the interval).
    assert healthy is not None and 1.5 <= healthy <= 3.0, healthy


def _probe_times(config: RegistryConfig, until: float) -> tuple[list[float], float | None]:
    """Probe times of an instance that never answers, and when it turned unhealthy."""
    core = Core(config)
    core.register()  # its scheduled probes fall 9.4 s into each interval
    times: list[float] = []
    unhealthy: float | None = None
    end = core.now + until
    while core.now <= end:
        probe = core.take_probe()
        times.append(core.now)
        core.answer(probe, passed=False)
        if unhealthy is None and core.status() == "unhealthy":
            unhealthy = core.now
    return times, unhealthy


def test_retries_back_off_fill_the_gap_and_never_speed_up_unhealthy() -> None:
    settings = {"health_check_interval": INTERVAL, "failure_threshold": 2, "registration_ttl": 1e6}
    scheduled, unhealthy_without = _probe_times(with_config(**settings), 200)
    times, unhealthy_with = _probe_times(with_config(first_probe_retry=1.0, **settings), 200)
    start = times[0]
    # The scheduled probes keep their phase; the retries come in between.
    assert set(scheduled) <= set(times)
    retries = [t - start for t in times if t not in scheduled]
    # Each retry waits twice as long as the one before, only while the scheduled probe
    # is further away, and they end once the wait would reach the interval.
    phase = scheduled[1] - start
    assert retries == [1.0, 3.0, 7.0, phase + 8.0, phase + 8.0 + 16.0]
    # Failed retries do not count: unhealthy exactly when the scheduled probes say so.
    assert unhealthy_with == unhealthy_without is not None


def test_retries_stop_once_a_probe_passed() -> None:
    core = Core(with_config(health_check_interval=INTERVAL, first_probe_retry=1.0))
    core.register()
    core.answer(core.take_probe(), passed=False)
    retry = core.take_probe()
    assert core.now == core.probes_issued[0][0] + 1.0  # a retry, a second later
    core.answer(retry, passed=True)
    assert core.status() == "healthy"
    passed_at = core.now
    core.answer(core.take_probe(), passed=False)  # the next scheduled probe fails
    assert core.now > passed_at + 1.0
    following = core.take_probe()  # no retry now: the next one is a scheduled one
    assert following is not None
    assert core.now - core.probes_issued[-2][0] == INTERVAL


def test_an_instance_that_never_passed_is_retried_even_when_unhealthy() -> None:
    clock = FakeClock(0.0)
    sim = _listening_from(clock, 1.5, failure_threshold=1)
    sim.advance(0.0)
    assert sim.status_of("orders", "orders-1") == "unhealthy"  # threshold 1: at once
    healthy = _healthy_at(sim, INTERVAL)
    assert healthy is not None and healthy <= 3.0, healthy


def test_a_restarted_instance_registering_again_is_a_new_run() -> None:
    clock = FakeClock(0.0)
    up = {"from": 0.0, "until": 5.0}

    def answer(probe: RunProbe) -> bool:
        return up["from"] <= clock.now < up["until"]

    config = RegistryConfig(health_check_interval=INTERVAL, failure_threshold=2)
    sim = SimulatedRegistry(config, clock=clock, probe=answer)
    sim.register("orders", "orders-1")
    sim.advance(0.0)
    assert sim.status_of("orders", "orders-1") == "healthy"
    sim.advance(3 * INTERVAL)  # it went down at 5: unhealthy by its scheduled probes
    assert sim.status_of("orders", "orders-1") == "unhealthy"
    # It restarts: registers again at once, listens 1.5 s later.
    restart = clock.now
    up["from"], up["until"] = restart + 1.5, float("inf")
    sim.effects.clear()
    sim.register("orders", "orders-1")
    # The old verdict goes with the old run: unknown, not 9 s of a stale unhealthy.
    assert sim.status_of("orders", "orders-1") == "unknown"
    assert (
        StatusChanged("orders", "orders-1", Status.UNHEALTHY, Status.UNKNOWN, "registered again")
        in sim.effects
    )
    healthy = _healthy_at(sim, restart + INTERVAL)
    assert healthy is not None and healthy - restart <= 3.0, healthy - restart


def test_retries_can_be_turned_off() -> None:
    clock = FakeClock(0.0)
    sim = _listening_from(clock, 1.5, first_probe_retry=0.0)
    sim.advance(5.0)
    # Only the scheduled probes: at once, then at its phase (0.5 s), next 30 s later.
    assert len(sim.probes_run) == 2
    assert sim.status_of("orders", "orders-1") == "unhealthy"  # listening, but not probed
