"""Thousands of raw client connections to a registry: opened without overflowing, read at once.

Shared by the reliability tests and `tests.soak.harness.parked_wake`. Opening thousands
of connections as fast as `connect()` allows overflows the server's accept
queue, and the kernel then drops SYNs and retries them a second later, so a
test would measure the backlog rather than the server. These helpers read
the listening socket's accept queue (the caller keeps a copy of the socket,
see `conformance.server_process.kept_socket`) and open only what fits.
"""

from __future__ import annotations

import re
import selectors
import socket
import struct
import time

#: Connections kept out of the accept queue's capacity, so it never fills.
ACCEPT_QUEUE_MARGIN = 20


def accept_queue(sock: socket.socket) -> tuple[int, int]:
    """(connections waiting to be accepted, backlog) of a listening socket (Linux TCP_INFO).

    For a socket in LISTEN state the kernel reports the accept queue's length
    in `tcpi_unacked` and its capacity in `tcpi_sacked`.
    """
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    unacked, sacked = struct.unpack_from("II", info, 24)
    return unacked, sacked


def open_connections(
    sock: socket.socket, port: int, count: int, timeout: float = 120
) -> list[socket.socket]:
    """Open `count` connections as fast as the server accepts them (never overflowing
    its accept queue, where the kernel would drop SYNs and retry a second later)."""
    opened: list[socket.socket] = []
    selector = selectors.DefaultSelector()
    pending = 0
    deadline = time.monotonic() + timeout
    try:
        while len(opened) < count or pending:
            assert time.monotonic() < deadline, f"only {len(opened)} connections opened"
            queued, backlog = accept_queue(sock)
            room = min(
                max(0, backlog - ACCEPT_QUEUE_MARGIN - queued - pending), count - len(opened)
            )
            for _ in range(room):
                conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                opened.append(conn)
                conn.setblocking(False)
                conn.connect_ex(("127.0.0.1", port))
                selector.register(conn, selectors.EVENT_WRITE)
                pending += 1
            for key, _ in selector.select(0.005):
                selector.unregister(key.fileobj)
                pending -= 1
                error = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # type: ignore[union-attr]
                assert error == 0, f"connect failed: errno {error}"
        while accept_queue(sock)[0]:
            assert time.monotonic() < deadline, "the server did not accept every connection"
            time.sleep(0.02)
    except BaseException:
        for conn in opened:
            conn.close()
        raise
    finally:
        selector.close()
    return opened


def send_on_each(sock: socket.socket, port: int, count: int, request: bytes) -> list[socket.socket]:
    """`count` connections, each of which has sent `request`, opened in steps of 500.

    In steps, each sending at once: an idle connection would be closed by the
    server's keep-alive timeout (5 s) while the rest are being opened.
    """
    conns: list[socket.socket] = []
    try:
        while len(conns) < count:
            step = open_connections(sock, port, min(500, count - len(conns)))
            conns += step
            for conn in step:
                conn.setblocking(True)
                conn.sendall(request)
    except BaseException:
        for conn in conns:
            conn.close()
        raise
    return conns


def read_responses(conns: list[socket.socket], timeout: float) -> list[bytes]:
    """One complete response from every connection (Content-Length delimited), within `timeout`."""
    selector = selectors.DefaultSelector()
    received = {conn: b"" for conn in conns}
    done: dict[socket.socket, bytes] = {}
    for conn in conns:
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while len(done) < len(conns):
            assert time.monotonic() < deadline, f"only {len(done)} of {len(conns)} answered"
            for key, _ in selector.select(0.1):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                chunk = ready.recv(65536)
                assert chunk, f"a connection closed: {received[ready][:200]!r}"
                data = received[ready] = received[ready] + chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length: *(\d+)", head)
                if sep and length and len(body) >= int(length.group(1)):
                    done[ready] = data
                    selector.unregister(ready)
    finally:
        selector.close()
    return [done[conn] for conn in conns]
