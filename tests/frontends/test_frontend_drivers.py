"""The probe drivers and watchers of both frontends, one scenario each, on fake clocks.

Every test is parametrized over the kits of `frontend_kit` (trio under
`MockClock`; asyncio on its own timers under a virtual-time loop), so both
drivers are tested the same way, each as its server builds it.
Times are recorded inside the fakes with the kit's clock and compared exactly
(to float rounding): nothing here waits for real.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Callable

import pytest
from frontend_kit import (
    SECRET,
    Group,
    Kit,
    make_runtime,
    register,
    status_of,
    unregister,
)

from frontends.runtime.logs import log as registry_log
from frontends.runtime.runtime import Runtime
from sd_core import HttpRequest, ProbeFailed, ProbePassed, ProbeResult, RunProbe

INTERVAL = 10.0
LOGGER = registry_log.name
TIMEOUT = 2.0
EXACT = 1e-9


def passed(probe: RunProbe) -> ProbePassed:
    return ProbePassed(probe.service_name, probe.instance_id, probe.generation)


#: When each instance was probed, by instance id.
Probed = dict[str, list[float]]


def start_passing_driver(kit: Kit, group: Group, probed: Probed) -> Runtime:
    """A runtime whose driver runs in `group`, passing every probe and noting its time."""

    async def fetch(probe: RunProbe) -> ProbeResult:
        probed[probe.instance_id].append(kit.clock())
        return passed(probe)

    runtime = make_runtime(kit, fetch)
    group.start_soon(runtime.driver.run)
    return runtime


Recorded = list[tuple[float, ProbeResult, str]]


def record_results(kit: Kit, runtime: Runtime) -> Recorded:
    """Spy on what the driver reports: (time, result, status right after)."""
    recorded: Recorded = []
    original = runtime.record_probe_result

    def spy(result: ProbeResult) -> None:
        original(result)
        record = runtime.registry.instance_snapshot(result.service_name, result.instance_id)
        recorded.append((kit.clock(), result, str(record.status) if record else "gone"))

    runtime.record_probe_result = spy  # type: ignore[method-assign]
    return recorded


def assert_once_per_interval(times: list[float], start: float, rounds: int) -> None:
    """Probed at once on registration, then on its phase: one every interval exactly.

    "At once" is within a second: a burst of registrations gets its first
    probes a few milliseconds apart (`RegistryConfig.first_probes_per_second`).
    """
    assert len(times) >= rounds + 1, times
    assert start <= times[0] < start + 1, (start, times)
    phased = times[1:]
    assert times[0] < phased[0] <= times[0] + INTERVAL, (start, times)
    for earlier, later in itertools.pairwise(phased):
        assert later - earlier == pytest.approx(INTERVAL, abs=EXACT), times
    for k in range(rounds):
        window = [t for t in phased if start + k * INTERVAL < t <= start + (k + 1) * INTERVAL]
        assert len(window) == 1, (k, times)


# ------------------------------------------------------------- (a) schedule


def test_each_instance_is_probed_once_per_interval_and_turns_healthy(
    make_kit: Callable[[], Kit],
) -> None:
    probed: Probed = defaultdict(list)

    async def scenario(kit: Kit, group: Group) -> None:
        runtime = start_passing_driver(kit, group, probed)
        start = kit.clock()
        names = [f"game-{n}" for n in range(6)]
        first_due: dict[str, float] = {}
        for name in names:
            register(runtime, "game", name)
            assert status_of(runtime, "game", name) == "unknown"
            record = runtime.registry.instance_snapshot("game", name)
            assert record is not None
            first_due[name] = record.probe_due
        await kit.sleep(4 * INTERVAL)
        assert sorted(probed) == names
        for name in names:
            assert_once_per_interval(probed[name], start, rounds=4)
            # The driver wakes exactly when the core asked, not a moment later.
            assert probed[name][0] == pytest.approx(first_due[name], abs=EXACT)
            assert status_of(runtime, "game", name) == "healthy"

    make_kit().run(scenario)


def test_a_registration_wakes_the_sleeping_driver(make_kit: Callable[[], Kit]) -> None:
    """A new instance whose first probe falls before the driver's alarm is probed on time."""
    probed: Probed = defaultdict(list)

    async def scenario(kit: Kit, group: Group) -> None:
        runtime = start_passing_driver(kit, group, probed)
        await kit.sleep(3)  # the driver idles on an empty registry
        register(runtime, "svc", "first")
        first = runtime.registry.instance_snapshot("svc", "first")
        assert first is not None
        first_due = first.probe_due
        await kit.sleep(first_due - kit.clock() + 0.5)
        assert probed["first"] == [pytest.approx(first_due, abs=EXACT)]

        # The driver now sleeps until first's next probe, on its phase: add an
        # instance due before that (a new one is due at once).
        alarm = runtime.driver_sleeps_until
        assert alarm is not None
        first = runtime.registry.instance_snapshot("svc", "first")
        assert first is not None
        assert alarm == pytest.approx(first.probe_due, abs=EXACT)
        for n in range(200):
            name = f"late-{n}"
            register(runtime, "svc", name)
            record = runtime.registry.instance_snapshot("svc", name)
            assert record is not None
            if record.probe_due < alarm - 1:
                break
            unregister(runtime, "svc", name)
        else:
            pytest.fail("no instance id hashes to a probe before the driver's alarm")
        due = record.probe_due
        await kit.sleep(alarm - kit.clock() - 0.5)
        assert probed[name] == [pytest.approx(due, abs=EXACT)]

    make_kit().run(scenario)


# ------------------------------------------------------- (b) hanging probe


@pytest.mark.parametrize("threshold", [1, 2, 3])
def test_a_hanging_probe_times_out_and_its_neighbour_stays_on_schedule(
    make_kit: Callable[[], Kit], threshold: int
) -> None:
    hung: list[tuple[float, float]] = []  # (fetch started, fetch cancelled)
    steady: list[float] = []

    async def scenario(kit: Kit, group: Group) -> None:
        async def fetch(probe: RunProbe) -> ProbeResult:
            if probe.instance_id == "stuck":
                started = kit.clock()
                try:
                    await kit.hang()
                finally:
                    hung.append((started, kit.clock()))
            steady.append(kit.clock())
            return passed(probe)

        runtime = make_runtime(kit, fetch, HEALTH_CHECK_FAILURE_THRESHOLD=str(threshold))
        results = record_results(kit, runtime)
        group.start_soon(runtime.driver.run)
        start = kit.clock()
        register(runtime, "svc", "stuck")
        register(runtime, "svc", "steady")
        await kit.sleep(4 * INTERVAL)

        assert len(hung) >= 3
        for started, cancelled in hung:
            assert cancelled - started == pytest.approx(TIMEOUT, abs=EXACT)
        assert_once_per_interval([started for started, _ in hung], start, rounds=3)

        stuck = [(t, r, s) for t, r, s in results if r.instance_id == "stuck"]
        assert [t for t, _, _ in stuck] == [pytest.approx(c, abs=EXACT) for _, c in hung]
        for _, result, _ in stuck:
            assert isinstance(result, ProbeFailed)
            assert result.reason == "timeout after 2s"
        # Unknown until FAILURE_THRESHOLD timeouts in a row, unhealthy from then on.
        assert [s for _, _, s in stuck] == ["unknown"] * (threshold - 1) + ["unhealthy"] * (
            len(stuck) - threshold + 1
        )
        assert status_of(runtime, "svc", "stuck") == "unhealthy"

        assert_once_per_interval(steady, start, rounds=4)
        assert status_of(runtime, "svc", "steady") == "healthy"

        # The latency histogram is fed by the driver from the injected clock.
        samples = runtime.metrics.registry
        count = samples.get_sample_value("sd_probe_duration_seconds_count")
        total = samples.get_sample_value("sd_probe_duration_seconds_sum")
        assert count == len(results)
        assert total == pytest.approx(TIMEOUT * len(stuck), abs=1e-6)

    make_kit().run(scenario)


# ----------------------------------------------------------- (c) concurrency


@pytest.mark.parametrize("limit", [1, 3])
def test_no_more_probes_in_flight_than_the_limit(make_kit: Callable[[], Kit], limit: int) -> None:
    spans: list[tuple[float, float]] = []
    peak = 0

    async def scenario(kit: Kit, group: Group) -> None:
        nonlocal peak
        # The timeout equals the interval, so unbounded, all ten would hang at once.
        in_flight = 0

        async def fetch(probe: RunProbe) -> ProbeResult:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            started = kit.clock()
            try:
                await kit.hang()
            finally:
                in_flight -= 1
                spans.append((started, kit.clock()))

        runtime = make_runtime(
            kit,
            fetch,
            MAX_CONCURRENT_HEALTH_CHECKS=str(limit),
            HEALTH_CHECK_TIMEOUT_SECONDS=str(INTERVAL),
        )
        results = record_results(kit, runtime)
        group.start_soon(runtime.driver.run)
        for n in range(10):
            register(runtime, "svc", f"i-{n}")
        await kit.sleep(6 * INTERVAL)

        assert peak == limit
        # Each fetch gets the whole timeout from when it starts, not from when it was queued,
        # and the workers keep taking queued probes back to back.
        for started, ended in spans:
            assert ended - started == pytest.approx(INTERVAL, abs=EXACT)
        assert len(spans) >= 5 * limit
        assert len(results) == len(spans)
        assert all(isinstance(r, ProbeFailed) for _, r, _ in results)

    make_kit().run(scenario)


def test_a_queued_probe_of_an_instance_that_left_is_never_sent(
    make_kit: Callable[[], Kit],
) -> None:
    fetched: list[tuple[float, str]] = []

    async def scenario(kit: Kit, group: Group) -> None:
        # One worker, and each fetch hangs for the whole timeout: while the first
        # instance's probe runs, the second one's waits in the queue.

        async def fetch(probe: RunProbe) -> ProbeResult:
            fetched.append((kit.clock(), probe.instance_id))
            await kit.hang()
            raise AssertionError("unreachable")

        runtime = make_runtime(
            kit, fetch, MAX_CONCURRENT_HEALTH_CHECKS="1", HEALTH_CHECK_TIMEOUT_SECONDS=str(INTERVAL)
        )
        group.start_soon(runtime.driver.run)
        register(runtime, "svc", "i-0")
        register(runtime, "svc", "i-1")
        await kit.sleep(INTERVAL - 0.01)  # both first probes are due by now
        [(_, running)] = fetched
        queued = "i-1" if running == "i-0" else "i-0"
        stale_before = runtime.registry.stats.probes_stale
        unregister(runtime, "svc", queued)
        await kit.sleep(3 * INTERVAL)
        assert [iid for _, iid in fetched if iid == queued] == []
        assert len(fetched) >= 2  # the worker went on with the other instance
        assert runtime.registry.stats.probes_stale == stale_before + 1

    make_kit().run(scenario)


# --------------------------------------------------------- (d-f) watchers


@pytest.mark.parametrize("seconds", [0.25, 30.0, 300.0])
def test_a_blocking_wait_with_no_change_returns_after_exactly_its_wait(
    make_kit: Callable[[], Kit], seconds: float
) -> None:
    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit)
        watchers = runtime.parked
        register(runtime, "svc", "a")
        parked: list[int] = []

        async def look_halfway() -> None:
            await kit.sleep(seconds / 2)
            parked.append(runtime.counters.parked_queries)

        group.start_soon(look_halfway)
        before = kit.clock()
        await watchers.wait("svc", seconds)
        assert kit.clock() - before == pytest.approx(seconds, abs=EXACT)
        assert parked == [1]
        assert runtime.counters.parked_queries == 0

    make_kit().run(scenario)


def test_a_change_wakes_its_service_and_global_watchers_only(
    make_kit: Callable[[], Kit],
) -> None:
    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit)
        watchers = runtime.parked
        register(runtime, "svc-a", "a-0")
        start = kit.clock()
        returned: dict[str, float] = {}

        async def watch(label: str, scope: str | None, seconds: float = 30.0) -> None:
            await watchers.wait(scope, seconds)
            returned[label] = kit.clock() - start

        group.start_soon(watch, "a", "svc-a")
        group.start_soon(watch, "global", None)
        group.start_soon(watch, "c", "svc-c")
        await kit.sleep(1)
        assert runtime.counters.parked_queries == 3

        heartbeat = runtime.handle(
            HttpRequest(
                "POST",
                "/v1/discovery/heartbeat",
                b"",
                f"Bearer {SECRET}",
                "application/json",
                b'{"service_name": "svc-a", "instance_id": "a-0"}',
            ),
        )
        assert getattr(heartbeat, "status", None) == 200
        await kit.sleep(1)  # t=2: a heartbeat raises no index and wakes nobody
        assert returned == {}

        register(runtime, "svc-b", "b-1")  # t=2: another service changes
        await kit.sleep(1)
        assert returned == {"global": pytest.approx(2, abs=EXACT)}
        group.start_soon(watch, "global-2", None)  # a new global waiter, parked at t=3

        await kit.sleep(2)  # t=5: a registration to the watched service
        register(runtime, "svc-a", "a-1")
        await kit.sleep(1)
        assert returned == {
            "global": pytest.approx(2, abs=EXACT),
            "a": pytest.approx(5, abs=EXACT),
            "global-2": pytest.approx(5, abs=EXACT),
        }
        # A fired event is not reused: the next waiter on svc-a parks until its own timeout.
        group.start_soon(watch, "a-2", "svc-a", 10.0)
        await kit.sleep(30)
        assert returned["a-2"] == pytest.approx(6 + 10, abs=EXACT)
        assert returned["c"] == pytest.approx(30, abs=EXACT)  # nothing woke it: timed out
        assert runtime.counters.parked_queries == 0

    make_kit().run(scenario)


def test_release_all_and_draining_release_waiters_at_once(make_kit: Callable[[], Kit]) -> None:
    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit)
        watchers = runtime.parked
        returned: dict[str, float] = {}

        async def watch(label: str, scope: str | None, seconds: float) -> None:
            before = kit.clock()
            await watchers.wait(scope, seconds)
            returned[label] = kit.clock() - before

        for scope in ("a", "b", None):
            group.start_soon(watch, str(scope), scope, 300.0)
        await kit.sleep(4)
        assert runtime.counters.parked_queries == 3
        watchers.release_all()
        await kit.sleep(0)
        await kit.sleep(1)
        assert returned == {label: pytest.approx(4, abs=EXACT) for label in ("a", "b", "None")}
        assert runtime.counters.parked_queries == 0

        # Released, not draining: the next wait parks again and times out as usual.
        returned.clear()
        await watch("again", "a", 10.0)
        assert returned == {"again": pytest.approx(10, abs=EXACT)}

        # Shutdown as both servers do it: drain, then release what is parked.
        group.start_soon(watch, "parked", "a", 300.0)
        await kit.sleep(2)
        runtime.begin_drain()
        watchers.release_all()
        await kit.sleep(1)
        assert returned["parked"] == pytest.approx(2, abs=EXACT)
        # Once draining, a new blocking wait does not park at all.
        parked: list[int] = []

        async def look() -> None:
            parked.append(runtime.counters.parked_queries)

        group.start_soon(look)
        await watch("after-drain", "a", 300.0)
        assert returned["after-drain"] == 0
        await kit.sleep(1)
        assert parked == [0]

    make_kit().run(scenario)


# ------------------------------------------------------- (g) crashing fetch


def test_a_crashing_fetch_is_a_failed_probe_and_the_worker_goes_on(
    make_kit: Callable[[], Kit], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    steady: list[float] = []

    async def scenario(kit: Kit, group: Group) -> None:
        # One worker: if a crash killed it, nothing after the crash would be probed.
        calls: dict[str, int] = defaultdict(int)

        async def fetch(probe: RunProbe) -> ProbeResult:
            name = probe.instance_id
            calls[name] += 1
            if name == "broken" or (name == "flaky" and calls[name] == 1):
                raise RuntimeError("boom")
            if name == "refused":
                return ProbeFailed(
                    probe.service_name, name, probe.generation, "ConnectError: refused"
                )
            if name == "steady":
                steady.append(kit.clock())
            return passed(probe)

        runtime = make_runtime(kit, fetch, MAX_CONCURRENT_HEALTH_CHECKS="1")
        results = record_results(kit, runtime)
        group.start_soon(runtime.driver.run)
        start = kit.clock()
        for name in ("flaky", "broken", "refused", "steady"):
            register(runtime, "svc", name)
        await kit.sleep(3 * INTERVAL)

        by_name: dict[str, Recorded] = defaultdict(list)
        for entry in results:
            by_name[entry[1].instance_id].append(entry)

        flaky = by_name["flaky"]
        assert isinstance(flaky[0][1], ProbeFailed)
        assert flaky[0][1].reason == "probe error: RuntimeError"
        assert flaky[0][2] == "unknown"
        assert all(isinstance(r, ProbePassed) for _, r, _ in flaky[1:])
        assert len(flaky) == 4  # at once, then three intervals on its phase
        assert status_of(runtime, "svc", "flaky") == "healthy"

        broken = by_name["broken"]
        assert len(broken) == 4
        assert {r.reason for _, r, _ in broken if isinstance(r, ProbeFailed)} == {
            "probe error: RuntimeError"
        }
        assert status_of(runtime, "svc", "broken") == "unhealthy"

        refused = by_name["refused"]
        assert {r.reason for _, r, _ in refused if isinstance(r, ProbeFailed)} == {
            "ConnectError: refused"
        }
        assert status_of(runtime, "svc", "refused") == "unhealthy"

        assert_once_per_interval(steady, start, rounds=3)
        assert status_of(runtime, "svc", "steady") == "healthy"

    make_kit().run(scenario)
    crashes = [r for r in caplog.records if "event=probe_crashed" in r.getMessage()]
    assert len(crashes) == 4 + 1  # broken four times, flaky once
    assert all(r.levelno == logging.ERROR and r.exc_info for r in crashes)
    assert "url=http://127.0.0.1:8080/health" in crashes[0].getMessage()


def test_a_fetch_raising_timeout_error_itself_is_a_crash_not_a_timeout(
    make_kit: Callable[[], Kit],
) -> None:
    async def scenario(kit: Kit, group: Group) -> None:
        started: list[float] = []

        async def fetch(probe: RunProbe) -> ProbeResult:
            started.append(kit.clock())
            raise TimeoutError("the socket said so")

        runtime = make_runtime(kit, fetch)
        results = record_results(kit, runtime)
        group.start_soon(runtime.driver.run)
        register(runtime, "svc", "i-1")
        await kit.sleep(INTERVAL + 1)
        when, result, _ = results[0]
        assert isinstance(result, ProbeFailed)
        assert (when, result.reason) == (started[0], "probe error: TimeoutError")

    make_kit().run(scenario)


def test_a_failed_first_probe_is_retried_within_seconds_on_a_long_interval(
    make_kit: Callable[[], Kit],
) -> None:
    """The retry a failed probe brings forward wakes the driver (no other event does)."""
    probed: list[float] = []

    async def scenario(kit: Kit, group: Group) -> None:
        listening_from = kit.clock() + 1.5

        async def fetch(probe: RunProbe) -> ProbeResult:
            probed.append(kit.clock())
            if kit.clock() >= listening_from:
                return passed(probe)
            return ProbeFailed(probe.service_name, probe.instance_id, probe.generation, "refused")

        runtime = make_runtime(
            kit, fetch, HEALTH_CHECK_INTERVAL_SECONDS="3600", HEALTH_CHECK_FIRST_RETRY_SECONDS="1"
        )
        group.start_soon(runtime.driver.run)
        start = kit.clock()
        register(runtime, "svc", "late")  # its scheduled probes fall 18 minutes in
        await kit.sleep(10)
        assert status_of(runtime, "svc", "late") == "healthy"
        # At once (refused), a second later (refused), two more (listening: passed).
        assert [t - start for t in probed] == [pytest.approx(t, abs=EXACT) for t in (0, 1, 3)]

    make_kit().run(scenario)
