"""Waking thousands of parked watchers must not starve everyone else.

One change used to answer 5,000 parked blocking queries in one go: the loop
ran them all before it looked at another socket, and on trio 46 of 48
health checks timed out during the wake. The watchers now wake in batches
(`frontends/runtime/scope_events.py`), each batch after the loop has polled
its sockets. The test parks `WATCHERS` queries, changes their service while
a probe client checks `/health` every 20 ms, and requires 99 % of those
checks answered and every watcher woken with the change.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator

import httpx
import pytest
from reliability_support import (
    AUTH,
    SECRET,
    assert_still_serving,
    base_env,
    kept_socket,
    metric,
    probing,
    raise_open_file_limit,
    register_instance,
    serving_on,
    wait_for,
)

from conformance.parked_connections import read_responses, send_on_each
from conformance.server_process import ServerProcess

#: Parked blocking queries woken by one change.
WATCHERS = 5000

#: Descriptors the test process needs beyond the watchers' connections.
FD_HEADROOM = 200


@pytest.fixture(scope="module")
def server(frontend: str) -> Iterator[ServerProcess]:
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    raise_open_file_limit(WATCHERS + FD_HEADROOM)
    try:
        with kept_socket() as sock, serving_on(frontend, base_env(), sock) as srv:
            yield srv
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def test_a_change_wakes_5000_watchers_without_starving_health_checks(
    server: ServerProcess,
) -> None:
    url = server.url
    index = httpx.get(f"{url}/v1/discovery/services/wake", headers=AUTH, timeout=5).headers[
        "x-discovery-index"
    ]
    query = (
        f"GET /v1/discovery/services/wake?index={index}&wait=120s HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {SECRET}\r\n\r\n"
    ).encode()
    assert server.sock is not None
    conns = send_on_each(server.sock, server.port, WATCHERS, query)
    try:
        wait_for(
            lambda: metric(url, "sd_blocking_queries") == WATCHERS,
            60,
            f"{WATCHERS} parked blocking queries",
            interval=0.2,
        )
        with probing(url, interval=0.02) as tally:
            wait_for(lambda: tally.ok >= 5, 10, "the probe client to start")
            before = tally.ok + tally.failed
            register_instance(url, "wake", "w-1", timeout=30)
            woke = time.monotonic()
            answers = read_responses(conns, timeout=120)
            wake_seconds = time.monotonic() - woke
            during = tally.ok + tally.failed - before
        print(
            f"\nwake of {WATCHERS} in {wake_seconds:.2f} s: {tally.ok} of "
            f"{tally.ok + tally.failed} health checks answered ({during} during the wake), "
            f"p99 {tally.p99() * 1000:.1f} ms, worst {max(tally.times) * 1000:.1f} ms"
        )
        assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers)
        assert all(b'"w-1"' in answer for answer in answers)
        assert during >= 1, "no health check ran during the wake"
        tally.assert_served()
    finally:
        for conn in conns:
            conn.close()
    wait_for(lambda: metric(url, "sd_blocking_queries") == 0, 10, "no parked query left")
    assert_still_serving(server)
