"""A connection the client closes must give its file descriptor back promptly.

Found by the soak's fd figures: hypercorn 0.18 kept a keep-alive connection
that the client closed in CLOSE-WAIT, holding its fd, until its
`keep_alive_timeout` ran out (75 s when found, 5 s since
frontends/servers/hypercorn/config.py shortened it): its TCP server sees the end
of the stream but waits for its idle-timeout task before closing the socket.
`frontends/servers/hypercorn/patches.py` stops that task once reading ends.
Run against every server kind: both frontends on hypercorn, and Quart on
uvicorn (which closes at once by itself, and must keep doing so).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from conformance.server_process import ServerProcess, serving
from tests.soak.harness.scenario import client_connections, registry_env

CONNECTIONS = 20
#: How long a closed connection may keep its fd.
RELEASE_SECONDS = 3.0
#: Connections still held after that (a race may let a few go in time).
TOLERATED = 2


def _read_response(sock: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)


def _open_and_close(server: ServerProcess, *, send_request: bool) -> None:
    for _ in range(CONNECTIONS):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            if send_request:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: registry\r\n\r\n")
                _read_response(sock)
            else:  # a TCP check, as load balancers do: connect, wait a moment, close
                time.sleep(0.05)


@pytest.fixture(scope="module", params=["quart", "trio", "quart-uvicorn"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serving(request.param, registry_env()) as running:
        time.sleep(0.5)
        yield running


def _held_after_close(server: ServerProcess, *, send_request: bool) -> int:
    """How many of CONNECTIONS closed client connections the registry still holds."""
    pid = server.proc.pid
    deadline = time.monotonic() + 10
    while client_connections(pid, server.port) and time.monotonic() < deadline:
        time.sleep(0.2)  # the previous test's connections: wait for them to go
    before = client_connections(pid, server.port)
    _open_and_close(server, send_request=send_request)
    deadline = time.monotonic() + RELEASE_SECONDS
    held = client_connections(pid, server.port) - before
    while held > TOLERATED and time.monotonic() < deadline:
        time.sleep(0.2)
        held = client_connections(pid, server.port) - before
    return held


def test_closed_connections_are_released_after_a_request(server: ServerProcess) -> None:
    assert _held_after_close(server, send_request=True) <= TOLERATED


def test_closed_connections_are_released_without_a_request(server: ServerProcess) -> None:
    assert _held_after_close(server, send_request=False) <= TOLERATED
