"""Waking thousands of parked watchers: how long it takes, and what a health check sees meanwhile.

    python -m bench.watch_wake [--frontend quart|trio|both] [--watchers 19000]

For each frontend, two registries run one after the other in the same
command: the baseline with Python's own garbage-collector settings
(`SERVICE_DISCOVERY_GC_YOUNG_THRESHOLD=0`) and one with the registry's
defaults (`frontends/shared/collector.py`). Each parks `--watchers`
blocking queries on one service, then a client checks `/health` every
20 ms on a kept-alive connection: for 3 s with everyone parked (idle), then
while one registration wakes every watcher, until all have their answer.

Printed per run: the wake's duration, the health checks during it (count,
failures, p50, p99, worst) and the idle p99, then the ratio of the p99 and
the worst check during the wake, registry defaults over baseline.

The watcher count is capped by the open-file limit: the registry needs one
descriptor per watcher, and so does this process. 19,000 fits a hard limit
of 20,000 (this machine's); 20,000 watchers need a higher one.
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import time
from dataclasses import dataclass

import httpx

from conformance.health_checker import ProbeTally, probing
from conformance.parked_connections import read_responses, send_on_each
from conformance.server_process import kept_socket, start_server

SECRET = "bench-wake-" + "0123456789abcdef" * 2
AUTH = {"Authorization": f"Bearer {SECRET}"}
CHECK_INTERVAL = 0.02
CHECK_TIMEOUT = 5.0
IDLE_SECONDS = 3.0
#: (label, SERVICE_DISCOVERY_GC_YOUNG_THRESHOLD): the baseline first.
COLLECTORS = (("python gc", "0"), ("registry gc", ""))


@dataclass
class Wake:
    """One wake: its duration, and the health checks before it (idle) and during it."""

    seconds: float
    checks: ProbeTally
    first_during: int  # index of the first check made during the wake
    failed: int  # checks that failed during the wake

    @property
    def during(self) -> list[float]:
        return self.checks.times[self.first_during :]

    @property
    def p99(self) -> float:
        return self.checks.p99(since=self.first_during)

    def row(self, frontend: str, label: str) -> str:
        idle = ProbeTally()
        idle.times = self.checks.times[: self.first_during]
        median, worst = statistics.median(self.during), max(self.during)
        return (
            f"| {frontend} | {label} | {self.seconds:.2f} | {len(self.during)} | {self.failed} "
            f"| {median * 1000:.1f} | {self.p99 * 1000:.1f} | {worst * 1000:.1f} "
            f"| {idle.p99() * 1000:.1f} |"
        )


def wake_once(frontend: str, watchers: int, gc_young_threshold: str) -> Wake:
    env = {
        "SERVICE_DISCOVERY_SECRET": SECRET,
        "HEALTH_CHECK_INTERVAL_SECONDS": "86400",
        "HEALTH_CHECK_FIRST_PROBES_PER_SECOND": "0",
        "LOG_LEVEL": "WARNING",
        "SERVICE_DISCOVERY_MAX_BLOCKING_QUERIES": str(watchers + 100),
        "SERVICE_DISCOVERY_GC_YOUNG_THRESHOLD": gc_young_threshold,
    }
    with kept_socket(backlog=4096) as sock:
        server = start_server(frontend, env, sock=sock)
        try:
            url = server.url
            index = httpx.get(f"{url}/v1/discovery/services/wake", headers=AUTH).headers[
                "x-discovery-index"
            ]
            query = (
                f"GET /v1/discovery/services/wake?index={index}&wait=300s HTTP/1.1\r\n"
                f"Host: x\r\nAuthorization: Bearer {SECRET}\r\n\r\n"
            ).encode()
            conns = send_on_each(sock, server.port, watchers, query)
            try:
                return _measure(url, conns)
            finally:
                for conn in conns:
                    conn.close()
        finally:
            server.shutdown(timeout=30)
            server.cleanup()


def _measure(url: str, conns: list[socket.socket]) -> Wake:
    while _parked(url) < len(conns):
        time.sleep(0.2)
    with probing(url, CHECK_INTERVAL, timeout=CHECK_TIMEOUT) as checks:
        time.sleep(IDLE_SECONDS)
        start, failed_before = len(checks.times), checks.failed
        began = time.monotonic()
        registered = httpx.post(
            f"{url}/v1/discovery/register",
            json={"service_name": "wake", "instance_id": "w-1", "host": "127.0.0.1", "port": 9},
            headers=AUTH,
            timeout=60,
        )
        registered.raise_for_status()
        answers = read_responses(conns, timeout=300)
        seconds = time.monotonic() - began
        assert all(b'"w-1"' in answer for answer in answers), "a watcher missed the change"
        failed = checks.failed - failed_before
    return Wake(seconds, checks, start, failed)


def _parked(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("sd_blocking_queries "):
            return float(line.split()[1])
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frontend", choices=("quart", "trio", "both"), default="both")
    parser.add_argument("--watchers", type=int, default=19_000)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.watchers + 200 > hard:
        parser.error(f"{args.watchers} watchers need an open-file limit above {hard}")
    frontends = ("quart", "trio") if args.frontend == "both" else (args.frontend,)
    print(f"{args.watchers} parked watchers, /health every {CHECK_INTERVAL * 1000:.0f} ms")
    print(
        "| frontend | collector | wake s | checks | failed | p50 ms | p99 ms | worst ms "
        "| idle p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for frontend in frontends:
        wakes = []
        for label, threshold in COLLECTORS:
            wakes.append(wake_once(frontend, args.watchers, threshold))
            print(wakes[-1].row(frontend, label), flush=True)
        base, ours = wakes
        print(
            f"{frontend}: registry gc / python gc during the wake: p99 "
            f"{ours.p99 / base.p99:.2f}x, worst "
            f"{max(ours.during) / max(base.during):.2f}x, "
            f"wake time {ours.seconds / base.seconds:.2f}x"
        )


if __name__ == "__main__":
    main()
