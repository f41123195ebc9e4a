"""A client that checks `/health` on a kept-alive connection while something else happens.

Shared by the reliability tests (a denial of service is measured by what it
does to such a client) and the soak harness (`tests.soak.harness`). One connection, as a load
balancer's health check uses; a failure (timeout, error, non-200) is counted
and the next check reconnects.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx

from .client import tls_context


class ProbeTally:
    """What a concurrent probe client saw: answers, failures and their times."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.times: list[float] = []

    @property
    def ratio(self) -> float:
        total = self.ok + self.failed
        return self.ok / total if total else 0.0

    def p99(self, since: int = 0, until: int | None = None) -> float:
        """The 99th percentile of the check times from the `since`-th check to `until`."""
        times = self.times[since:until]
        if len(times) < 2:
            return max(times, default=0.0)
        return statistics.quantiles(times, n=100, method="inclusive")[98]

    def assert_served(self, least: float = 0.99, what: str = "health checks") -> None:
        """At least `least` of the probes were answered 200 (and enough of them ran)."""
        total = self.ok + self.failed
        assert total >= 10, f"the probe client barely ran ({total} {what})"
        assert self.ratio >= least, f"{self.ok} of {total} {what} answered"


@contextmanager
def probing(
    url: str,
    interval: float = 0.05,
    path: str | Sequence[str] = "/health",
    timeout: float = 2.0,
    headers: dict[str, str] | None = None,
) -> Iterator[ProbeTally]:
    """A thread that GETs `path` every `interval` s while the body runs, `timeout` s each.

    Several paths are checked one after the other at each tick, on the one connection.
    """
    paths = [path] if isinstance(path, str) else list(path)
    tally = ProbeTally()
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(
            base_url=url, timeout=timeout, verify=tls_context(), headers=headers
        ) as client:
            while not stop.is_set():
                for each in paths:
                    start = time.monotonic()
                    try:
                        good = client.get(each).status_code == 200
                    except httpx.HTTPError:
                        good = False
                    tally.times.append(time.monotonic() - start)
                    if good:
                        tally.ok += 1
                    else:
                        tally.failed += 1
                stop.wait(interval)

    thread = threading.Thread(target=run, name="probe-client", daemon=True)
    thread.start()
    try:
        yield tally
    finally:
        stop.set()
        thread.join(timeout=timeout + 10)
