"""The hostile-instance matrix, small enough for CI (the full one: `python -m
tests.soak.harness.hostile_matrix`).

Per frontend: 10 instances of each kind (healthy, hang, trickle, trickle_body,
huge, redirect, reset, invalid_json, slow), probed every second with a 0.5 s
timeout, in two rounds of register / settle / observe / unregister. Asserted:
every instance ends up with its kind's status and keeps it, the healthy
kinds are probed on schedule, fresh instances are still probed after the
hostile rounds, nothing is probed after it left, the registry's fds (API
connections aside) do not grow from round to round, and no connection to a
hung, trickling, huge or resetting peer is left open. Latency is printed,
never asserted (the machine may be shared).
"""

from __future__ import annotations

from soak_support import scenario_result

from tests.soak.harness.hostile_matrix import (
    FRESH_INSTANCES,
    MatrixConfig,
    MatrixResult,
    run_matrix,
)

#: A probe may be this much later than one interval after the previous one.
LATENESS_SLACK = 1.0
#: fds (API connections aside) may differ by this much between round 1 and 2.
FD_SLACK = 4

CONFIG = MatrixConfig(
    per_kind=10,
    rounds=2,
    interval=1.0,
    timeout=0.5,
    concurrency=100,
    observe_intervals=1,
    read_rate=20.0,
    ports=4,
)


result = scenario_result(run_matrix, CONFIG)


def test_every_round_completes_without_api_errors(result: MatrixResult) -> None:
    assert result.completed, result.errors[:5]
    assert result.errors == []
    assert result.exit_ok


def test_every_instance_ends_with_its_kinds_status(result: MatrixResult) -> None:
    wrong = {
        kind: dict(figures.actual)
        for kind, figures in result.kinds.items()
        if figures.actual.get(figures.expected, 0) != CONFIG.per_kind * CONFIG.rounds
    }
    assert wrong == {}


def test_statuses_do_not_flap_once_settled(result: MatrixResult) -> None:
    flaps = {kind: f.mismatches for kind, f in result.kinds.items() if f.mismatches}
    assert flaps == {}


def test_healthy_instances_are_probed_on_schedule(result: MatrixResult) -> None:
    gaps = {kind: round(result.kinds[kind].max_gap, 3) for kind in result.healthy_kinds}
    assert max(gaps.values()) <= CONFIG.interval + LATENESS_SLACK, gaps


def test_probing_still_works_after_the_hostile_rounds(result: MatrixResult) -> None:
    assert result.fresh == (FRESH_INSTANCES, FRESH_INSTANCES)


def test_unregistered_instances_are_not_probed(result: MatrixResult) -> None:
    assert result.stray_probes == 0


def test_no_fd_or_probe_connection_growth(result: MatrixResult) -> None:
    first, last = result.rounds[0], result.rounds[-1]
    assert last.fds - first.fds <= FD_SLACK, (first, last)
    # The kinds whose connection can never be reused have peer ports of their
    # own: a connection still open to one of them once quiet was leaked.
    assert [r.closing_connections for r in result.rounds] == [0] * CONFIG.rounds
    print(
        f"\n{result.frontend}: API reads p99 {result.read_p99_ms:.1f} ms, "
        f"RSS {first.rss:.1f} -> {last.rss:.1f} MiB"
    )
