"""Health probes: the pass/fail rules, the status table, hysteresis and the probe schedule."""

from __future__ import annotations

import collections

import pytest
from core_support import START, Core, with_config

from sd_core import (
    DriverError,
    ProbeFailed,
    ProbePassed,
    RegisterRequest,
    Registry,
    RegistryConfig,
    RunProbe,
    Signal,
    Status,
    StatusChanged,
    judge_probe,
)
from sd_core.status import TRANSITIONS, next_status

PROBE = RunProbe("game-service", "game-1", "http://10.0.0.1:8080/health", 7)

# ------------------------------------------------------------- judge_probe

# (id, status code, body, truncated, passes, load)
JUDGED: list[tuple[str, int, bytes, bool, bool, float | None]] = [
    ("200 plain text", 200, b"OK", False, True, None),
    ("200 empty", 200, b"", False, True, None),
    ("204 empty", 204, b"", False, True, None),
    ("299 html", 299, b"<html>fine</html>", False, True, None),
    ("json object without status", 200, b'{"uptime": 5}', False, True, None),
    ("json empty object", 200, b"{}", False, True, None),
    ("json array", 200, b'[{"status": "down"}]', False, True, None),
    ("json string", 200, b'"down"', False, True, None),
    ("json null", 200, b"null", False, True, None),
    ("json number", 200, b"3", False, True, None),
    ("not json at all", 200, b'{"status": "down"', False, True, None),
    ("invalid utf-8", 200, b"\xff\xfe\xfd\x00", False, True, None),
    ("status healthy", 200, b'{"status": "healthy"}', False, True, None),
    ("status OK", 200, b'{"status": "OK"}', False, True, None),
    ("status ok", 200, b'{"status": "ok"}', False, True, None),
    ("status Up", 200, b'{"status": "Up"}', False, True, None),
    ("status PASS", 200, b'{"status": "PASS"}', False, True, None),
    ("status HeAlThY", 200, b'{"status": "HeAlThY"}', False, True, None),
    ("status unhealthy", 200, b'{"status": "unhealthy"}', False, False, None),
    ("status down", 200, b'{"status": "down"}', False, False, None),
    ("status fail", 200, b'{"status": "fail"}', False, False, None),
    ("status DOWN", 200, b'{"status": "DOWN"}', False, False, None),
    ("status degraded", 200, b'{"status": "degraded"}', False, False, None),
    ("status empty", 200, b'{"status": ""}', False, False, None),
    ("status padded", 200, b'{"status": " ok "}', False, False, None),
    ("status true", 200, b'{"status": true}', False, False, None),
    ("status 1", 200, b'{"status": 1}', False, False, None),
    ("status null", 200, b'{"status": null}', False, False, None),
    ("status list", 200, b'{"status": ["ok"]}', False, False, None),
    ("status object", 200, b'{"status": {"ok": true}}', False, False, None),
    ("100", 100, b"", False, False, None),
    ("199", 199, b"", False, False, None),
    ("300", 300, b'{"status": "ok"}', False, False, None),
    ("301 redirect", 301, b"", False, False, None),
    ("302 redirect", 302, b"", False, False, None),
    ("304", 304, b"", False, False, None),
    ("400", 400, b"", False, False, None),
    ("404", 404, b"not found", False, False, None),
    ("429", 429, b'{"status": "ok"}', False, False, None),
    ("500", 500, b'{"status": "healthy"}', False, False, None),
    ("503", 503, b"", False, False, None),
    ("truncated", 200, b'{"status": "ok"}', True, False, None),
    ("truncated plain", 200, b"x" * 100, True, False, None),
    ("load no status", 200, b'{"load_percentage": 0.3}', False, True, 0.3),
    ("load with status", 200, b'{"status": "ok", "load_percentage": 0.5}', False, True, 0.5),
    ("load int", 200, b'{"load_percentage": 1}', False, True, 1.0),
    ("load zero", 200, b'{"load_percentage": 0}', False, True, 0.0),
    ("load clamped high", 200, b'{"load_percentage": 1.5}', False, True, 1.0),
    ("load clamped low", 200, b'{"load_percentage": -0.2}', False, True, 0.0),
    ("load Infinity", 200, b'{"load_percentage": Infinity}', False, True, 1.0),
    ("load -Infinity", 200, b'{"load_percentage": -Infinity}', False, True, 0.0),
    ("load NaN ignored", 200, b'{"load_percentage": NaN}', False, True, None),
    ("load string ignored", 200, b'{"load_percentage": "0.5"}', False, True, None),
    ("load bool ignored", 200, b'{"load_percentage": true}', False, True, None),
    ("load null ignored", 200, b'{"load_percentage": null}', False, True, None),
    ("load list ignored", 200, b'{"load_percentage": [0.5]}', False, True, None),
    ("load on failure", 200, b'{"status": "down", "load_percentage": 0.5}', False, False, None),
    ("load on 500", 500, b'{"load_percentage": 0.5}', False, False, None),
]


@pytest.mark.parametrize(
    ("status_code", "body", "truncated", "passes", "load"),
    [c[1:] for c in JUDGED],
    ids=[c[0] for c in JUDGED],
)
def test_judge_probe(
    status_code: int, body: bytes, truncated: bool, passes: bool, load: float | None
) -> None:
    result = judge_probe(PROBE, status_code, body, truncated=truncated)
    assert (result.service_name, result.instance_id, result.generation) == (
        "game-service",
        "game-1",
        7,
    )
    if passes:
        assert result == ProbePassed("game-service", "game-1", 7, load)
        if load is not None:
            assert type(result.load) is float
    else:
        assert isinstance(result, ProbeFailed)
        assert result.reason


def test_judge_probe_failure_reasons() -> None:
    failed = judge_probe(PROBE, 503, b"")
    assert isinstance(failed, ProbeFailed) and "503" in failed.reason
    failed = judge_probe(PROBE, 200, b'{"status": "down"}')
    assert isinstance(failed, ProbeFailed) and "down" in failed.reason
    failed = judge_probe(PROBE, 200, b'{"status": "' + b"x" * 10_000 + b'"}')
    assert isinstance(failed, ProbeFailed) and len(failed.reason) < 200


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[" * 50_000 + b"]" * 50_000, None),
        (b"[" * 60_000, None),
        (b'{"a":' * 20_000 + b"1" + b"}" * 20_000, None),
        (
            b'{"status": "ok", "load_percentage": 1' + b"0" * 400 + b"}",
            ProbePassed("game-service", "game-1", 7, 1.0),
        ),
        (
            b'{"load_percentage": -1' + b"0" * 400 + b"}",
            ProbePassed("game-service", "game-1", 7, 0.0),
        ),
    ],
    ids=["deep array", "deep unclosed", "deep object", "huge integer load", "huge negative load"],
)
def test_judge_probe_never_raises(body: bytes, expected: ProbePassed | None) -> None:
    """Regression: RecursionError and OverflowError once escaped. Nesting deeper than
    Python parses fails the probe (an implementation decision, see the report)."""
    assert len(body) <= 131_072
    result = judge_probe(PROBE, 200, body)
    if expected is None:
        assert isinstance(result, ProbeFailed) and "nested" in result.reason
    else:
        assert result == expected


# -------------------------------------------------------- transition table

S, F = 2, 3  # success and failure thresholds of the table test

# (status, signal, successes, failures, expected)
TABLE: list[tuple[Status, Signal, int, int, Status]] = [
    (Status.UNKNOWN, Signal.PROBE_PASSED, 1, 0, Status.UNKNOWN),
    (Status.UNKNOWN, Signal.PROBE_PASSED, 2, 0, Status.HEALTHY),
    (Status.UNKNOWN, Signal.PROBE_PASSED, 5, 0, Status.HEALTHY),
    (Status.UNKNOWN, Signal.PROBE_FAILED, 0, 2, Status.UNKNOWN),
    (Status.UNKNOWN, Signal.PROBE_FAILED, 0, 3, Status.UNHEALTHY),
    (Status.UNKNOWN, Signal.ADDRESS_CHANGED, 0, 0, Status.UNKNOWN),
    (Status.HEALTHY, Signal.PROBE_PASSED, 1, 0, Status.HEALTHY),
    (Status.HEALTHY, Signal.PROBE_PASSED, 9, 0, Status.HEALTHY),
    (Status.HEALTHY, Signal.PROBE_FAILED, 0, 1, Status.HEALTHY),
    (Status.HEALTHY, Signal.PROBE_FAILED, 0, 2, Status.HEALTHY),
    (Status.HEALTHY, Signal.PROBE_FAILED, 0, 3, Status.UNHEALTHY),
    (Status.HEALTHY, Signal.ADDRESS_CHANGED, 4, 0, Status.UNKNOWN),
    (Status.UNHEALTHY, Signal.PROBE_PASSED, 1, 0, Status.UNHEALTHY),
    (Status.UNHEALTHY, Signal.PROBE_PASSED, 2, 0, Status.HEALTHY),
    (Status.UNHEALTHY, Signal.PROBE_FAILED, 0, 1, Status.UNHEALTHY),
    (Status.UNHEALTHY, Signal.PROBE_FAILED, 0, 7, Status.UNHEALTHY),
    (Status.UNHEALTHY, Signal.ADDRESS_CHANGED, 0, 4, Status.UNKNOWN),
    # Registered again (a restart): an old verdict of unhealthy goes, healthy stands.
    (Status.UNKNOWN, Signal.REREGISTERED, 0, 3, Status.UNKNOWN),
    (Status.HEALTHY, Signal.REREGISTERED, 4, 0, Status.HEALTHY),
    (Status.UNHEALTHY, Signal.REREGISTERED, 0, 4, Status.UNKNOWN),
    # A ttl check's heartbeat: the instance's own word, at once, whatever the streaks.
    (Status.UNKNOWN, Signal.REPORTED_HEALTHY, 0, 0, Status.HEALTHY),
    (Status.HEALTHY, Signal.REPORTED_HEALTHY, 0, 5, Status.HEALTHY),
    (Status.UNHEALTHY, Signal.REPORTED_HEALTHY, 0, 0, Status.HEALTHY),
    (Status.UNKNOWN, Signal.REPORTED_UNHEALTHY, 0, 0, Status.UNHEALTHY),
    (Status.HEALTHY, Signal.REPORTED_UNHEALTHY, 5, 0, Status.UNHEALTHY),
    (Status.UNHEALTHY, Signal.REPORTED_UNHEALTHY, 0, 0, Status.UNHEALTHY),
]


@pytest.mark.parametrize(("status", "signal", "successes", "failures", "expected"), TABLE)
def test_status_table(
    status: Status, signal: Signal, successes: int, failures: int, expected: Status
) -> None:
    result = next_status(
        status,
        signal,
        successes=successes,
        failures=failures,
        success_threshold=S,
        failure_threshold=F,
    )
    assert result is expected


def test_status_table_covers_every_pair() -> None:
    pairs = {(status, signal) for status in Status for signal in Signal}
    assert set(TRANSITIONS) == pairs
    assert {(row[0], row[1]) for row in TABLE} == pairs


def test_impossible_move_names_the_state_and_the_event() -> None:
    with pytest.raises(DriverError) as raised:
        next_status(
            "retired",  # type: ignore[arg-type]
            Signal.PROBE_PASSED,
            successes=1,
            failures=0,
            success_threshold=1,
            failure_threshold=1,
        )
    assert "retired" in str(raised.value) and "probe_passed" in str(raised.value)


# --------------------------------------------------------- through the core


def test_default_thresholds() -> None:
    core = Core()
    core.register()
    assert core.status() == "unknown"
    assert core.probe(passed=True)
    assert core.status() == "healthy"  # one pass
    assert core.probe(passed=False)
    assert core.status() == "healthy"
    assert core.probe(passed=False)
    assert core.status() == "unhealthy"  # two failures
    assert core.probe(passed=True)
    assert core.status() == "healthy"


def test_unknown_stays_unknown_until_a_threshold_is_reached() -> None:
    core = Core(with_config(failure_threshold=3, success_threshold=2))
    core.register()
    assert core.probe(passed=False)
    assert core.probe(passed=False)
    assert core.status() == "unknown"
    assert core.instance()["last_health_check"] is not None
    assert core.probe(passed=False)
    assert core.status() == "unhealthy"


# (thresholds, probe outcomes, statuses after each probe)
HYSTERESIS = [
    (
        (2, 3),
        "PPFFFPP",
        ["unknown", "healthy", "healthy", "healthy", "unhealthy", "unhealthy", "healthy"],
    ),
    (
        (3, 2),
        "PPPFPFF",
        ["unknown", "unknown", "healthy", "healthy", "healthy", "healthy", "unhealthy"],
    ),
    (
        (2, 2),
        "FFPFPPF",
        ["unknown", "unhealthy", "unhealthy", "unhealthy", "unhealthy", "healthy", "healthy"],
    ),
    ((1, 1), "PFPF", ["healthy", "unhealthy", "healthy", "unhealthy"]),
]


@pytest.mark.parametrize(("thresholds", "outcomes", "statuses"), HYSTERESIS)
def test_hysteresis(thresholds: tuple[int, int], outcomes: str, statuses: list[str]) -> None:
    success, failure = thresholds
    core = Core(
        with_config(success_threshold=success, failure_threshold=failure, registration_ttl=1e6)
    )
    core.register()
    seen = []
    for outcome in outcomes:
        assert core.probe(passed=outcome == "P")
        seen.append(core.status())
    assert seen == statuses
    changes = [e for e in core.effects if isinstance(e, StatusChanged)]
    expected_moves = [
        (a, b) for a, b in zip(["unknown", *statuses], statuses, strict=False) if a != b
    ]
    assert [(e.old, e.new) for e in changes] == expected_moves
    counts = core.registry.status_counts()
    assert counts[statuses[-1]] == 1 and sum(counts.values()) == 1


@pytest.mark.parametrize("start_healthy", [True, False])
def test_flapping_instance_is_held_by_thresholds(start_healthy: bool) -> None:
    core = Core(with_config(success_threshold=2, failure_threshold=2, registration_ttl=1e6))
    core.register()
    if start_healthy:
        core.probe(passed=True)
        core.probe(passed=True)
    held = core.status()
    assert held == ("healthy" if start_healthy else "unknown")
    index = core.registry.service_index("game-service")
    for n in range(40):
        core.probe(passed=n % 2 == 0)
        assert core.status() == held
    assert core.registry.service_index("game-service") == index  # watchers never woken


def test_status_change_reason_is_the_probe_reason() -> None:
    core = Core(with_config(failure_threshold=1))
    core.register()
    probe = core.take_probe()
    core.registry.record_probe(
        ProbeFailed(probe.service_name, probe.instance_id, probe.generation, "timeout"), core.now
    )
    core.drain()
    assert StatusChanged("game-service", "game-1", Status.UNKNOWN, Status.UNHEALTHY, "timeout") in (
        core.effects
    )


def test_probe_load_updates_the_instance() -> None:
    core = Core()
    core.register()
    core.probe(passed=True, load=0.7)
    assert core.instance()["load_percentage"] == 0.7
    core.probe(passed=True)  # no load reported: kept
    assert core.instance()["load_percentage"] == 0.7


# ------------------------------------------------------------- probe storm


def test_probe_storm_is_spread_over_the_interval() -> None:
    """10,000 registrations within one second: first probes spread over the interval."""
    interval = 30.0
    n = 10_000
    config = RegistryConfig(health_check_interval=interval, health_check_timeout=5)
    registry = Registry(config, now=0.0, wall_offset=0.0)
    handed: list[tuple[float, RunProbe]] = []
    now = 0.0

    def wake_until(target: float) -> None:
        nonlocal now
        while (deadline := registry.next_deadline()) is not None and deadline <= target:
            now = max(now, deadline)
            registry.on_timer(now)
            handed.extend((now, e) for e in registry.drain_effects() if isinstance(e, RunProbe))

    for i in range(n):
        at = i / n
        wake_until(at)
        now = at
        request = RegisterRequest(
            service_name=f"svc-{i % 25}", instance_id=f"inst-{i:05d}", host="10.1.2.3", port=80
        )
        registry.register(request, now)
        registry.drain_effects()
    wake_until(interval + 1.0)

    # every instance probed exactly once (second rounds find the first still in flight)
    assert len(handed) == n
    assert len({(p.service_name, p.instance_id) for _, p in handed}) == n
    for t, probe in handed:
        registered = int(probe.instance_id.removeprefix("inst-")) / n
        assert registered <= t < registered + interval
    bucket_width = interval / 10
    buckets = collections.Counter(min(int(t // bucket_width), 9) for t, _ in handed)
    share = n / 10
    assert len(buckets) == 10
    assert max(buckets.values()) <= 2 * share, buckets
    # The first-probe fast lane (100 a second) pulls some probes forward, so
    # the later buckets hold fewer; none is starved.
    assert min(buckets.values()) >= share / 4, buckets
    # never a burst: no single wake-up hands out more than 1% of the fleet
    per_wake = collections.Counter(t for t, _ in handed)
    assert max(per_wake.values()) <= n // 100
    assert max(t for t, _ in handed) < interval + 1.0


def test_first_probe_offset_is_inside_the_first_interval() -> None:
    core = Core(with_config(health_check_interval=10, health_check_timeout=1))
    for n in range(50):
        core.register("svc", f"i-{n}")
    core.advance(10)
    issued = {p.instance_id: t for t, p in core.probes_issued}
    assert len(issued) == 50
    assert all(START <= t < START + 10 for t in issued.values())
    assert len(set(issued.values())) > 40  # offsets differ by key


@pytest.mark.parametrize("entry", ["probe int", "probe above 1", "heartbeat above 1"])
def test_core_entry_points_keep_load_a_float_in_range(entry: str) -> None:
    """ProbePassed is public (SimulatedRegistry probe functions may return one), and so is
    Registry.heartbeat: a load outside 0..1, or an int, must not reach the bodies as is."""
    core = Core()
    core.register()
    probe = core.take_probe()
    try:
        if entry == "probe int":
            core.registry.record_probe(
                ProbePassed(probe.service_name, probe.instance_id, probe.generation, 1),
                core.now,
            )
        elif entry == "probe above 1":
            core.registry.record_probe(
                ProbePassed(probe.service_name, probe.instance_id, probe.generation, 5.0),
                core.now,
            )
        else:
            core.registry.heartbeat("game-service", "game-1", 5.0, core.now)
    except DriverError:
        return  # refusing the value is as good as repairing it
    load = core.instance()["load_percentage"]
    assert isinstance(load, float) and 0.0 <= load <= 1.0
    assert core.targets()[0]["labels"]["load_percentage"] in {"0.0", "1.0"}


def test_a_probe_is_current_until_its_instance_leaves_or_moves() -> None:
    core = Core()
    core.register()
    probe = core.take_probe()
    assert core.registry.probe_is_current(probe)
    core.register(port=9999)  # the address changed: a new generation
    assert not core.registry.probe_is_current(probe)
    moved = core.take_probe()
    assert core.registry.probe_is_current(moved)
    core.unregister()
    assert not core.registry.probe_is_current(moved)
    assert core.registry.stats.probes_stale == 2
