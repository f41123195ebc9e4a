"""A server starved of CPU past the keep-alive timeout answers the requests waiting for it.

Hypercorn's keep-alive timer runs from the accept to the first request. When
the process gets no CPU for longer than the timeout (a loaded machine), the
timer and the reader both become due at once; on trio the timer could win and
close a connection whose request was already in the socket
(`frontends/shared/hypercorn_patches.py`, `spare_connections_with_waiting_requests`).
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

#: hypercorn_setup's keep_alive_timeout; the process stays stopped a second longer.
KEEP_ALIVE_SECONDS = 5.0
CONNECTIONS = 40

REQUEST = b"GET /v1/discovery/services HTTP/1.1\r\nHost: x\r\n" + AUTH_LINE + b"\r\n"


@pytest.fixture(scope="module")
def server(frontend: str) -> Iterator[ServerProcess]:
    with kept_socket() as sock, serving_on(frontend, base_env(), sock) as srv:
        yield srv


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
        for conn in conns:
            head, _, _ = read_response(conn, timeout=10)
            answered += head.startswith(b"HTTP/1.1 200")
    assert answered == CONNECTIONS, f"{CONNECTIONS - answered} of {CONNECTIONS} closed unanswered"
