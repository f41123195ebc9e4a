"""A kept-alive connection: reused for the next request, closed once idle past the timeout.

Hypercorn restarts a connection's keep-alive timer after every response; on
trio the registry restarts it without waiting for the timer task to start
(`frontends/servers/hypercorn/patches.py`), so these pin what the timer must
still do on both frontends: not cut a connection that is being reused, and
close one left idle (5 s, `servers/hypercorn/config.py`).

The timer also runs from the accept to the first request. When the process
gets no CPU for longer than the timeout (a loaded machine), the timer and the
reader become due at once; on trio the timer could win and close a connection
whose request was already in the socket (`spare_connections_with_waiting_requests`).
SIGSTOP stands in for the starvation: every connection is accepted, the
process is stopped, the requests are sent, and it resumes after the timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest
from reliability_support import AUTH_LINE, base_env, kept_socket, read_response, serving_on

from conformance.server_process import ServerProcess
from frontends.servers.hypercorn.patches import restart_idle_timers_at_once

#: hypercorn config's keep_alive_timeout, and how long past it the close may take.
KEEP_ALIVE_SECONDS = 5.0
CLOSE_SLACK_SECONDS = 10.0
#: Connections whose requests wait while the server is stopped.
CONNECTIONS = 40

REQUEST = b"GET /v1/discovery/services HTTP/1.1\r\nHost: x\r\n" + AUTH_LINE + b"\r\n"


@pytest.fixture(scope="module")
def server(frontend: str) -> Iterator[ServerProcess]:
    with kept_socket() as sock, serving_on(frontend, base_env(), sock) as srv:
        yield srv


def test_one_connection_serves_request_after_request(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        for _ in range(20):
            conn.sendall(REQUEST)
            head, _, ending = read_response(conn, timeout=5)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            assert ending == "timeout", "the server closed a connection in use"


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(REQUEST)
        head, _, _ = read_response(conn, timeout=1)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        answered = time.monotonic()
        conn.settimeout(KEEP_ALIVE_SECONDS + CLOSE_SLACK_SECONDS)
        assert conn.recv(1) == b"", "the server sent more than one answer"
        idle = time.monotonic() - answered
    # Closed by the keep-alive timer, not by anything sooner (read_response waited 1 s).
    assert idle >= KEEP_ALIVE_SECONDS - 1.5, f"closed after {idle:.1f} s idle"


def test_the_timer_patch_is_in_place_once() -> None:
    from hypercorn.trio.worker_context import TrioSingleTask

    restart_idle_timers_at_once()
    patched = TrioSingleTask.restart
    restart_idle_timers_at_once()
    assert TrioSingleTask.restart is patched
    assert patched.__name__ == "_restart_idle_timer"


def test_requests_sent_while_the_server_was_stopped_are_answered(server: ServerProcess) -> None:
    with contextlib.ExitStack() as stack:
        conns = [
            stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            for _ in range(CONNECTIONS)
        ]
        # One request answered on a later connection: the ones before it were accepted
        # (the kernel's accept queue is first in, first out), their timers running.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as probe:
            probe.sendall(REQUEST)
            head, _, _ = read_response(probe, timeout=5)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
        os.kill(server.pid, signal.SIGSTOP)
        try:
            for conn in conns:
                conn.sendall(REQUEST)
            time.sleep(KEEP_ALIVE_SECONDS + 1)  # a real process: no clock to jump
        finally:
            os.kill(server.pid, signal.SIGCONT)
        answered = 0
        seen: list[tuple[bytes, str]] = []  # what each got, for a failure's message
        for conn in conns:
            head, _, ending = read_response(conn, timeout=10)
            answered += head.startswith(b"HTTP/1.1 200")
            seen.append((head[:40], ending))
    assert answered == CONNECTIONS, (
        f"{CONNECTIONS - answered} of {CONNECTIONS} not answered 200; got {sorted(set(seen))}"
    )
