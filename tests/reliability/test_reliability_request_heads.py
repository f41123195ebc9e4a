"""Request heads are bounded by bytes and by time on every server kind (issue 24, items 1-2).

A head (request line and headers) may take at most 16 KiB and the keep-alive
timeout to arrive, whatever the server kind, on a connection's first request
and on every later one: past 16 KiB it gets `431` or a close, past the
deadline a close. uvicorn's parser had neither bound (100 MiB of header lines
were accepted, and a head trickled a byte at a time was kept open), and
h11 bounded only heads that arrived in pieces (one of up to 64 KiB read at
once was served). The flood test measures the server's memory around
8 MiB of header lines, so a server that buffers them shows it.
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h11
import pytest
from reliability_support import (
    AUTH_LINE,
    WEBSOCKET_UPGRADE,
    assert_still_serving,
    base_env,
    kept_socket,
    raw_exchange,
    read_response,
    serving_on,
    status_of,
)

from conformance.server_process import ServerProcess
from frontends.runtime.process_setup import Throttle
from frontends.servers.hypercorn.request_heads import MAX_HEAD_BYTES, HeadBoundConnection

#: The head limit the README states, and the keep-alive timeout that bounds a head's time.
HEAD_LIMIT = MAX_HEAD_BYTES
HEAD_SECONDS = 5.0
#: On the hypercorn kinds the timer starts again when hypercorn takes the connection
#: over from the first bytes' check, and trio's grants a client that has spoken one
#: more period (`servers/hypercorn/patches.py`); past that and some slack, a head still open fails.
TRICKLE_BOUND_SECONDS = 3 * HEAD_SECONDS + 5.0
#: What the flood sends at most: header lines after a valid request line.
FLOOD_BYTES = 8 * 1024 * 1024
#: How much a server may grow while refusing the flood (it reads 16 KiB of it, plus
#: its read buffers; one that keeps the flood grows by more than the flood's size).
FLOOD_GROWTH_BOUND = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[ServerProcess]:
    with kept_socket() as sock, serving_on(server_kind, base_env(), sock) as srv:
        yield srv


def _memory_kib(pid: int, field: str) -> int:
    """`VmRSS` or `VmHWM` (the peak) of process `pid`, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def _padded_head(size: int, *, path: bytes = b"/health") -> bytes:
    """A complete GET head of exactly `size` bytes, padded by one header of many values."""
    start = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + AUTH_LINE + b"X-Pad: "
    padding = size - len(start) - len(b"\r\n\r\n")
    assert padding > 0
    return start + b"p" * padding + b"\r\n\r\n"


def _refused(received: bytes, ending: str) -> bool:
    """`431` (in the API's error shape when it has a body), or a close with no response."""
    if not received:
        return ending in ("eof", "reset")
    if status_of(received) != 431:
        return False
    body = received.partition(b"\r\n\r\n")[2]
    return not body or json.loads(body)["error"] == "request_header_fields_too_large"


def test_a_flood_of_header_lines_is_cut_off_without_growing_the_server(
    server_kind: str, server: ServerProcess
) -> None:
    """(`-rP` prints what it measured, for docs/reliability.md.)"""
    line = b"X-Flood: " + b"f" * 1000 + b"\r\n"
    baseline = _memory_kib(server.pid, "VmRSS")
    cpu_before = _cpu_seconds(server.pid)
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        try:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            batch = line * 64
            while sent < FLOOD_BYTES:
                conn.sendall(batch)
                sent += len(batch)
        except OSError:
            pass  # the server closed: what we want (a reset may then hide its 431)
        received, ending = _drain(conn)
    grown = _memory_kib(server.pid, "VmRSS") - baseline
    cpu = _cpu_seconds(server.pid) - cpu_before
    outcome = (
        f"RSS {baseline / 1024:.1f} MiB, +{grown} KiB; CPU {cpu:.2f} s; {sent} bytes sent; "
        f"{ending}: {received[:40]!r}"
    )
    print(f"{server_kind}: {outcome}")
    assert _refused(received, ending), outcome
    assert grown * 1024 < FLOOD_GROWTH_BOUND, outcome
    assert_still_serving(server)


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _drain(conn: socket.socket, timeout: float = 5.0) -> tuple[bytes, str]:
    """What the server sent on `conn` until it closed it, and how it ended."""
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            return received, "timeout"
        except OSError:
            return received, "reset"
        if not chunk:
            return received, "eof"
        received += chunk
    return received, "timeout"


@pytest.mark.parametrize("size", [HEAD_LIMIT + 1024, 40 * 1024, 60 * 1024])
def test_a_head_over_16_kib_in_one_read_is_refused(server: ServerProcess, size: int) -> None:
    received, ending = raw_exchange(server.port, _padded_head(size), timeout=3.0)
    assert _refused(received, ending), (ending, received[:300])


def test_an_oversized_head_pipelined_after_a_request_is_refused(server: ServerProcess) -> None:
    small = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(small + _padded_head(40 * 1024))
        received, ending = _drain(conn, timeout=3.0)
    first, _, rest = received.partition(b"\r\n\r\n")
    assert status_of(first) == 200, received[:300]
    assert b"HTTP/1.1 200" not in rest, "the oversized head was served"
    assert ending in ("eof", "reset"), ending


def test_a_head_under_the_limit_in_one_read_is_served(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(_padded_head(HEAD_LIMIT - 512))
        head, _, _ = read_response(conn, timeout=3)
    assert status_of(head) == 200, head[:300]


def _trickle(
    port: int,
    prefix: bytes,
    results: dict[str, str],
    name: str,
    bound: float = TRICKLE_BOUND_SECONDS,
) -> None:
    """Send `prefix` (answered requests), then an endless head one byte every 0.5 s;
    records how long the server kept the connection, or that it was still open at `bound`."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        if prefix:
            conn.sendall(prefix)
            head, _, ending = read_response(conn, timeout=3)
            if status_of(head) != 200 or ending != "timeout":
                results[name] = f"the first request failed: {ending} {head[:100]!r}"
                return
        started = time.monotonic()
        head_bytes = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100
        for byte in head_bytes:
            if time.monotonic() - started > bound:
                results[name] = "still open"
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                break
            readable, _, _ = select.select([conn], [], [], 0.5)
            if readable:
                try:
                    if conn.recv(65536) == b"":
                        break
                except OSError:
                    break
                results[name] = "answered before the head ended"
                return
        else:
            results[name] = "the head ran out before the server closed"
            return
        results[name] = f"closed after {time.monotonic() - started:.1f} s"


def test_a_trickled_head_is_closed_on_first_and_kept_alive_requests(
    server_kind: str, server: ServerProcess
) -> None:
    _assert_trickles_closed(server_kind, server.port, TRICKLE_BOUND_SECONDS)


def _assert_trickles_closed(server_kind: str, port: int, bound: float) -> None:
    """A head trickled as a connection's first request, and one after an answered
    request, at once: both closed by the server within `bound` seconds."""
    results: dict[str, str] = {}
    kept_alive = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    threads = [
        threading.Thread(target=_trickle, args=(port, prefix, results, name, bound))
        for prefix, name in ((b"", "first"), (kept_alive, "later"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(bound + 10)
    print(f"{server_kind}: {results}")
    assert set(results) == {"first", "later"}, results
    assert all(outcome.startswith("closed") for outcome in results.values()), results


def test_websocket_upgrade_gets_400_without_warnings(server: ServerProcess) -> None:
    log_before = len(server.stderr())
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            conn.sendall(WEBSOCKET_UPGRADE)
            head, body, _ = read_response(conn, timeout=5)
        assert status_of(head) == 400, head[:300]
        assert b"content-type: application/json" in head.lower(), head
        assert json.loads(body)["error"] == "websocket_not_supported", body
    log = server.stderr()[log_before:]
    assert "WARNING" not in log and "ERROR" not in log, log[-4000:]


def test_malformed_requests_are_logged_at_most_once_per_interval(server: ServerProcess) -> None:
    log_before = len(server.stderr())
    for _ in range(20):
        received, _ = raw_exchange(server.port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", timeout=2)
        assert status_of(received) == 400, received[:300]
    log = server.stderr()[log_before:]
    lines = [line for line in log.splitlines() if "invalid" in line.lower()]
    assert len(lines) <= 1, lines


# ------------------------------------------- the same bounds, set below their defaults

#: What the settings below set: a quarter of the default head size, a fifth of its time.
TIGHT_HEAD_LIMIT = 4096
TIGHT_HEAD_SECONDS = 1.0
#: Under the default head timeout a trickled head is open for 5 s at least, on every
#: kind; under the short one it must be closed before this.
TIGHT_TRICKLE_BOUND_SECONDS = HEAD_SECONDS - 0.5


@pytest.fixture(scope="module")
def tight_server(server_kind: str) -> Iterator[ServerProcess]:
    env = base_env(
        SERVICE_DISCOVERY_MAX_HEAD_BYTES=str(TIGHT_HEAD_LIMIT),
        SERVICE_DISCOVERY_HEAD_TIMEOUT_SECONDS=str(TIGHT_HEAD_SECONDS),
        SERVICE_DISCOVERY_ERROR_LOG_INTERVAL_SECONDS="0.001",
    )
    with kept_socket() as sock, serving_on(server_kind, env, sock) as srv:
        yield srv


@pytest.mark.parametrize("path", [b"/health", b"/v1/discovery/watch?service=*"])
def test_a_lower_head_limit_refuses_a_head_the_default_serves(
    tight_server: ServerProcess, path: bytes
) -> None:
    """`SERVICE_DISCOVERY_MAX_HEAD_BYTES=4096`: a 5 KiB head gets `431` naming the
    limit, a watch's too (the first-bytes gate hands it to the server); 3 KiB is served."""
    received, ending = raw_exchange(tight_server.port, _padded_head(5 * 1024, path=path), 3.0)
    assert status_of(received) == 431, (ending, received[:300])
    error = json.loads(received.partition(b"\r\n\r\n")[2])
    assert error["error"] == "request_header_fields_too_large", error
    assert str(TIGHT_HEAD_LIMIT) in error["message"], error
    with socket.create_connection(("127.0.0.1", tight_server.port), timeout=5) as conn:
        conn.sendall(_padded_head(3 * 1024))
        head, _, _ = read_response(conn, timeout=3)
    assert status_of(head) == 200, head[:300]


def test_a_shorter_head_timeout_closes_a_trickled_head_sooner(
    server_kind: str, tight_server: ServerProcess
) -> None:
    """`SERVICE_DISCOVERY_HEAD_TIMEOUT_SECONDS=1`: closed before the default's 5 s could."""
    _assert_trickles_closed(server_kind, tight_server.port, TIGHT_TRICKLE_BOUND_SECONDS)


def test_a_shorter_log_interval_logs_malformed_requests_more_often(
    server_kind: str, tight_server: ServerProcess
) -> None:
    """`SERVICE_DISCOVERY_ERROR_LOG_INTERVAL_SECONDS=0.001`: a line per malformed request
    (the default's 10 s allows one for the lot). Only uvicorn logs them at all."""
    if "uvicorn" not in server_kind:
        pytest.skip("h11 answers a malformed request without a log line")
    log_before = len(tight_server.stderr())
    for _ in range(5):
        received, _ = raw_exchange(tight_server.port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        assert status_of(received) == 400, received[:300]
    log = tight_server.stderr()[log_before:]
    lines = [line for line in log.splitlines() if "invalid_http_request" in line]
    assert len(lines) >= 2, lines


# ------------------------------------------------------ the pieces, without a server


@pytest.mark.parametrize("size", [HEAD_LIMIT, HEAD_LIMIT + 1])
def test_h11_bounds_a_head_received_whole(size: int) -> None:
    connection = HeadBoundConnection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
    connection.receive_data(_padded_head(size))
    if size <= HEAD_LIMIT:
        assert isinstance(connection.next_event(), h11.Request)
        return
    with pytest.raises(h11.RemoteProtocolError) as refused:
        connection.next_event()
    assert refused.value.error_status_hint == 431
    assert connection.their_state is h11.ERROR


def test_a_throttle_admits_one_occurrence_per_interval_with_a_count() -> None:
    now = [100.0]
    throttle = Throttle(10.0, clock=lambda: now[0])
    assert throttle.admit() == (1, 0)  # the first one at once
    assert [throttle.admit() for _ in range(5)] == [None] * 5
    now[0] += 10.0
    assert throttle.admit() == (6, 10.0)  # the five kept quiet, and this one
