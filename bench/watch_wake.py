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
import contextlib
import resource
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

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
class Checks:
    """Health checks as a load balancer would make them: (seconds, answered 200)."""

    times: list[tuple[float, bool]] = field(default_factory=list)

    def since(self, start: int) -> list[float]:
        return [seconds for seconds, _ in self.times[start:]]

    def failures(self, start: int) -> int:
        return sum(not good for _, good in self.times[start:])


@contextlib.contextmanager
def checking(url: str) -> Iterator[Checks]:
    checks = Checks()
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(base_url=url, timeout=CHECK_TIMEOUT) as client:
            while not stop.is_set():
                start = time.monotonic()
                try:
                    good = client.get("/health").status_code == 200
                except httpx.HTTPError:
                    good = False
                checks.times.append((time.monotonic() - start, good))
                stop.wait(CHECK_INTERVAL)

    thread = threading.Thread(target=run, name="health-checks", daemon=True)
    thread.start()
    try:
        yield checks
    finally:
        stop.set()
        thread.join(timeout=CHECK_TIMEOUT + 5)


def p99(values: list[float]) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[98]
        if len(values) >= 2
        else max(values, default=0)
    )


@dataclass
class Wake:
    seconds: float
    during: list[float]
    failed: int
    idle_p99: float

    def row(self, frontend: str, label: str) -> str:
        ms = [value * 1000 for value in (self.idle_p99, p99(self.during), max(self.during))]
        return (
            f"| {frontend} | {label} | {self.seconds:.2f} | {len(self.during)} | {self.failed} "
            f"| {statistics.median(self.during) * 1000:.1f} | {ms[1]:.1f} | {ms[2]:.1f} "
            f"| {ms[0]:.1f} |"
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
    with checking(url) as checks:
        time.sleep(IDLE_SECONDS)
        idle = checks.since(0)
        start = len(checks.times)
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
        during, failed = checks.since(start), checks.failures(start)
    return Wake(seconds, during, failed, p99(idle))


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
            f"{p99(ours.during) / p99(base.during):.2f}x, worst "
            f"{max(ours.during) / max(base.during):.2f}x, "
            f"wake time {ours.seconds / base.seconds:.2f}x"
        )


if __name__ == "__main__":
    main()
