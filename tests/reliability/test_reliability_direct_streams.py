"""Watch streams served below hypercorn, and every other connection still hypercorn's.

Each hypercorn frontend reads a connection's first bytes itself
(`frontends/servers/direct/first_bytes.py`): a plain watch request opens its
stream there, anything else is handed to hypercorn with the bytes read so
far. These pin, on both frontends, that the split is invisible to clients:
a stream served below hypercorn (its response names no `server`, as
hypercorn's do) carries the same events; requests that only begin like a
watch, arrive in pieces, or are a watch hypercorn must answer (on a used
connection, HTTP/1.0, with a body header, refused, oversized) get
hypercorn's answers (a request pipelined after a watch is never answered,
so that watch is served below hypercorn all the same); and a head that
never ends is closed, as hypercorn closes one after its keep-alive timeout.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from reliability_support import (
    AUTH_LINE,
    base_env,
    kept_socket,
    raw_exchange,
    read_response,
    register_instance,
    serving_on,
    status_of,
)

from conformance.server_process import ServerProcess
from conformance.sse_client import SseStream
from frontends.runtime.stream_response import http1_start

#: How a response written below the server begins: our status line and stream headers,
#: in our order (hypercorn writes no reason phrase and a `server` header, uvicorn puts
#: `date` first).
OURS = http1_start().partition(b"date:")[0]
#: hypercorn config's keep_alive_timeout (how long a head may take), and slack past it.
HEAD_SECONDS = 5.0
CLOSE_SLACK_SECONDS = 10.0


@pytest.fixture(scope="module")
def frontend(server_kind: str) -> str:
    """Every server kind: both hypercorn frontends, and Quart on uvicorn."""
    return server_kind


@pytest.fixture(scope="module")
def server(frontend: str) -> Iterator[ServerProcess]:
    with kept_socket() as sock, serving_on(frontend, base_env(), sock) as srv:
        yield srv


def watch_head(service: str, *, version: bytes = b"1.1", extra: bytes = b"") -> bytes:
    return b"GET /v1/discovery/watch?service=%s HTTP/%s\r\nHost: x\r\n%s%s\r\n" % (
        service.encode(),
        version,
        AUTH_LINE,
        extra,
    )


def served_below_the_server(stream: SseStream) -> bool:
    """Whether the stream's head is ours (`OURS`), by its headers' names and order."""
    ours = [line.partition(b":")[0].decode() for line in OURS.split(b"\r\n")[1:-1]]
    return list(stream.headers)[: len(ours)] == ours and "server" not in stream.headers


def test_a_stream_on_its_own_connection_is_served_below_the_server(
    server: ServerProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(watch_head("direct"))
        stream = SseStream.reading(conn)
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream"
        assert stream.headers["transfer-encoding"] == "chunked"
        assert "date" in stream.headers
        assert served_below_the_server(stream), stream.headers
        first = stream.next_event()
        assert first is not None
        assert first.json()["instances"] == []
        register_instance(server.url, "direct", "i1")
        change = stream.next_event()
        assert change is not None
        assert [i["instance_id"] for i in change.json()["instances"]] == ["i1"]


def test_a_watch_after_another_request_is_the_servers(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, ending = read_response(conn, timeout=2)
        assert status_of(head) == 200 and ending == "timeout"
        conn.sendall(watch_head("used"))
        stream = SseStream.reading(conn)
        assert stream.status == 200
        assert not served_below_the_server(stream), stream.headers
        first = stream.next_event()
        assert first is not None
        assert first.json()["service_name"] == "used"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        # begins like the watch route, then another path
        (b"GET /v1/discovery/watchers HTTP/1.1\r\nHost: x\r\n" + AUTH_LINE + b"\r\n", 404),
        (b"GET /v1/discovery/services/w HTTP/1.1\r\nHost: x\r\n" + AUTH_LINE + b"\r\n", 404),
        # a watch refused: hypercorn answers it, in the API's shape
        (b"GET /v1/discovery/watch?service=a HTTP/1.1\r\nHost: x\r\n\r\n", 401),
        (watch_head("a&index=x"), 422),
        # a watch that is more than a plain GET
        (watch_head("a", extra=b"Content-Length: 0\r\n"), 200),
        (watch_head("a", version=b"1.0"), 200),
        (watch_head("a", extra=b"Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n", 200),
        # no Host: hypercorn's h11 refuses it, uvicorn serves it (the servers differ there)
        (b"GET /v1/discovery/watch?service=a HTTP/1.1\r\n" + AUTH_LINE + b"\r\n", (400, 200)),
    ],
    ids=[
        "other-path",
        "diverging-path",
        "no-token",
        "bad-index",
        "content-length",
        "http-1.0",
        "chunked",
        "no-host",
    ],
)
def test_whatever_is_not_a_plain_watch_is_answered_by_the_server(
    frontend: str, server: ServerProcess, request_bytes: bytes, status: int | tuple[int, int]
) -> None:
    """`status`: the answer, or (hypercorn's, uvicorn's) where the two servers differ."""
    if isinstance(status, tuple):
        status = status[1] if frontend == "quart-uvicorn" else status[0]
    received, _ = raw_exchange(server.port, request_bytes, timeout=1.0)
    assert status_of(received) == status, received[:300]
    assert not received.startswith(OURS), received[:300]


def test_a_watch_with_a_request_pipelined_after_it_is_served_below_the_server(
    server: ServerProcess,
) -> None:
    """What follows a stream is never answered (the stream does not end while its client
    is there); served here, the stream ends with its connection
    (`test_reliability_watch_connections`)."""
    pipelined = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(watch_head("pipelined") + pipelined)
        stream = SseStream.reading(conn)
        assert stream.status == 200
        assert served_below_the_server(stream), stream.headers
        first = stream.next_event()
        assert first is not None
        assert first.json()["service_name"] == "pipelined"


def test_a_request_sent_in_pieces_is_answered_whole(server: ServerProcess) -> None:
    """The first bytes are read before hypercorn sees them: nothing may be lost on the way."""
    request = b"GET /v1/discovery/services HTTP/1.1\r\nHost: x\r\n" + AUTH_LINE + b"\r\n"
    for cut in (3, 14, 20, 40):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sendall(request[:cut])
            time.sleep(0.05)  # (a real socket: let the server read the first piece alone)
            conn.sendall(request[cut:])
            head, _, ending = read_response(conn, timeout=2)
            assert status_of(head) == 200, (cut, head[:200])
            assert ending == "timeout", "the connection was not kept alive"


def test_a_watch_sent_in_pieces_is_served(server: ServerProcess) -> None:
    request = watch_head("pieces")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(request), 25):
            conn.sendall(request[start : start + 25])
            time.sleep(0.02)  # (each piece read on its own)
        stream = SseStream.reading(conn)
        assert stream.status == 200
        first = stream.next_event()
        assert first is not None
        assert first.json()["service_name"] == "pieces"


def test_an_oversized_head_that_begins_like_a_watch_is_the_servers(
    server: ServerProcess,
) -> None:
    """Past 16 KiB a head is the server's to bound (hypercorn: `h11_max_incomplete_size`)."""
    padding = b"X-Pad: " + b"p" * (32 * 1024) + b"\r\n"
    received, _ = raw_exchange(server.port, watch_head("big", extra=padding), timeout=1.0)
    status = status_of(received)
    assert status is not None and status < 500, received[:300]
    assert not received.startswith(OURS), received[:300]


def test_a_watch_head_that_never_ends_is_closed(server: ServerProcess) -> None:
    started = time.monotonic()
    received, ending = raw_exchange(
        server.port,
        b"GET /v1/discovery/watch?service=a HTTP/1.1\r\nHost: x\r\n",
        timeout=HEAD_SECONDS + CLOSE_SLACK_SECONDS,
    )
    assert ending in ("eof", "reset"), f"still open after {time.monotonic() - started:.1f} s"
    assert received == b""


def read_chunks(conn: socket.socket, received: bytes, count: int) -> bytes:
    """`received` read on until its chunked body holds `count` chunks of events."""
    deadline = time.monotonic() + 10
    while received.partition(b"\r\n\r\n")[2].count(b"\n\n\r\n") < count:
        assert time.monotonic() < deadline, received
        conn.settimeout(max(0.1, deadline - time.monotonic()))
        data = conn.recv(65536)
        assert data, received
        received += data
    return received


def test_both_paths_write_the_same_body_bytes_for_the_same_events(
    server: ServerProcess,
) -> None:
    """A stream below the server and one the server writes: byte for byte the same body
    (chunk sizes, framing, events), as both come from `runtime.stream_response`."""
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as direct,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as task,
    ):
        task.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(read_response(task, timeout=2)[0]) == 200
        direct.sendall(watch_head("same-bytes"))
        task.sendall(watch_head("same-bytes"))
        received = {conn: read_chunks(conn, b"", 1) for conn in (direct, task)}
        register_instance(server.url, "same-bytes", "i1")
        bodies = [read_chunks(c, received[c], 2).partition(b"\r\n\r\n")[2] for c in received]
        assert bodies[0] == bodies[1]
        assert bodies[0].count(b"\r\n") == 4  # two chunks: size line and end each
