"""The soak's CI version: 60 s of load per frontend (`python -m tests.soak.harness.soak`
runs 10 minutes).

200 instances in 10 services heartbeating every 5 s (TTL 15 s), 10% of them
hostile, probed every 2 s with a 1 s timeout; 50 reads/s, 20 blocking-query
watchers, one random restart a second. Asserted: no request failed (a 5xx,
a connection error, a live instance's heartbeat answered 404, a watcher's
index going backwards), every instance ends with its kind's status,
watchers were woken, the registry's fds (API and kept-alive probe
connections aside) are back where they were once quiet, and no connection
to a hung, trickling, huge or resetting peer is left open. RSS growth, CPU
shares and API p99 are printed, not asserted: on a shared 2-core machine
they measure the neighbours as much as the registry.
"""

from __future__ import annotations

from soak_support import scenario_result

from tests.soak.harness.soak import SoakConfig, SoakResult, run_soak

FD_SLACK = 8

CONFIG = SoakConfig(
    seconds=60.0,
    instances=200,
    services=10,
    heartbeat=5.0,
    ttl=15.0,
    interval=2.0,
    timeout=1.0,
    hostile_share=0.1,
    read_rate=50.0,
    watchers=20,
    wait=5.0,
    restarts=1.0,
    sample=10.0,
    ports=4,
)


result = scenario_result(run_soak, CONFIG)


def test_no_request_fails(result: SoakResult) -> None:
    assert result.errors == 0, result.error_log[:10]
    assert result.requests > 1000
    assert result.exit_ok, result.error_log[-1:]


def test_every_instance_ends_with_its_kinds_status(result: SoakResult) -> None:
    assert result.final_wrong == {}


def test_watchers_are_woken(result: SoakResult) -> None:
    assert result.wakes > 0


def test_no_connection_to_a_closing_peer_is_left_open(result: SoakResult) -> None:
    assert result.closing_connections == 0, result.fds_after


def test_fds_come_back_when_quiet(result: SoakResult) -> None:
    assert result.fd_growth <= FD_SLACK, (result.fds_quiet_before, result.fds_quiet_after)
    windows = result.windows
    print(
        f"\n{result.frontend}: API reads p99 {result.read_p99_ms:.1f} ms "
        f"(worst window {result.worst_window_p99_ms():.1f} ms), RSS {windows[0].rss:.1f} -> "
        f"{windows[-1].rss:.1f} MiB, {result.requests} requests"
    )
