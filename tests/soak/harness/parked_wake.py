"""Waking thousands of parked watchers: how long it takes, and what other clients see meanwhile.

    python -m tests.soak.harness.parked_wake [--frontend quart|trio|both] [--watchers 19900]

For each frontend, two registries run one after the other in the same
command: the baseline with Python's own garbage-collector settings
(`SERVICE_DISCOVERY_GC_YOUNG_THRESHOLD=0`) and one with the registry's
defaults (`frontends/runtime/collector.py`). Each parks `--watchers`
blocking queries on one service, then two clients, each on its own
kept-alive connection, ask every 20 ms: one `GET /health` (a load
balancer's check), the other the authenticated `GET /v1/discovery/services`
(an API read). They ask for 3 s with everyone parked (idle), then while one
registration wakes every watcher, until all have their answer.

Printed per run and client: the wake's duration, the checks during it
(count, failures, p50, p99, worst) and the idle p99; then the ratio of the
p99 and of the worst check during the wake, registry defaults over baseline.

The watcher count is capped by the open-file limit: the registry needs one
descriptor per watcher, and so does this process, plus a few dozen of their
own. 19,900 fits a hard limit of 20,000 (this machine's, which an unprivileged
process cannot raise); the registry's default cap of 20,000 needs a higher one.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import socket
import statistics
import time
from dataclasses import dataclass

import httpx

from bench.watch_fanout import blocking_queries
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


#: What the concurrent clients check, each on its own kept-alive connection:
#: a load balancer's health check and a discovery read (cached, authenticated).
PROBES: tuple[tuple[str, dict[str, str]], ...] = (
    ("/health", {}),
    ("/v1/discovery/services", AUTH),
)


@dataclass
class Seen:
    """What one checking client saw: every check's time, and where the wake began."""

    checks: ProbeTally
    first_during: int  # index of the first check made during the wake
    failed_before: int

    @property
    def during(self) -> list[float]:
        return self.checks.times[self.first_during :]

    @property
    def failed(self) -> int:
        return self.checks.failed - self.failed_before

    @property
    def p99(self) -> float:
        return self.checks.p99(since=self.first_during)

    @property
    def idle_p99(self) -> float:
        return self.checks.p99(until=self.first_during)


@dataclass
class Wake:
    """One wake: its duration, and what each checking client saw."""

    seconds: float
    seen: dict[str, Seen]

    def rows(self, frontend: str, label: str) -> list[str]:
        return [
            f"| {frontend} | {label} | {path} | {self.seconds:.2f} | {len(one.during)} "
            f"| {one.failed} | {statistics.median(one.during) * 1000:.1f} "
            f"| {one.p99 * 1000:.1f} | {max(one.during) * 1000:.1f} | {one.idle_p99 * 1000:.1f} |"
            for path, one in self.seen.items()
        ]


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
                return _measure(url, server.port, conns)
            finally:
                for conn in conns:
                    conn.close()
        finally:
            server.shutdown(timeout=30)
            server.cleanup()


def _measure(url: str, port: int, conns: list[socket.socket]) -> Wake:
    while blocking_queries(port) < len(conns):
        time.sleep(0.2)
    with contextlib.ExitStack() as stack:
        tallies = {
            path: stack.enter_context(
                probing(url, CHECK_INTERVAL, path, timeout=CHECK_TIMEOUT, headers=headers)
            )
            for path, headers in PROBES
        }
        time.sleep(IDLE_SECONDS)
        seen = {path: Seen(t, len(t.times), t.failed) for path, t in tallies.items()}
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
    return Wake(seconds, seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frontend", choices=("quart", "trio", "both"), default="both")
    parser.add_argument("--watchers", type=int, default=19_900)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.watchers + 60 > hard:
        parser.error(f"{args.watchers} watchers need an open-file limit above {hard}")
    frontends = ("quart", "trio") if args.frontend == "both" else (args.frontend,)
    print(f"{args.watchers} parked watchers, /health every {CHECK_INTERVAL * 1000:.0f} ms")
    print(
        "| frontend | collector | checked | wake s | checks | failed | p50 ms | p99 ms "
        "| worst ms | idle p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for frontend in frontends:
        wakes = []
        for label, threshold in COLLECTORS:
            wakes.append(wake_once(frontend, args.watchers, threshold))
            print("\n".join(wakes[-1].rows(frontend, label)), flush=True)
        base, ours = wakes
        for path in ours.seen:
            new, old = ours.seen[path], base.seen[path]
            print(
                f"{frontend} {path}: registry gc / python gc during the wake: p99 "
                f"{new.p99 / old.p99:.2f}x, worst {max(new.during) / max(old.during):.2f}x"
            )
        print(f"{frontend}: wake time {ours.seconds / base.seconds:.2f}x")


if __name__ == "__main__":
    main()
