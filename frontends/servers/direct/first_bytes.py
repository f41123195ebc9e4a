"""Watch streams served below the HTTP server, on connections whose first request opens one.

Why: a watch stream held by hypercorn costs its whole per-connection state for
as long as it is open: the `TCPServer`, its task group and idle timer, the
protocol wrapper, h11's connection, the `HTTPStream` and its scope, about
15 KB of Python heap (tracemalloc, `python -m tools.memory_profile streams`),
against issue #13's target of 10 KiB per open stream (uvicorn's about 9 KB).
None of it does anything once the response has started: a stream only ever
writes events and listens for the client to leave.

So each frontend looks at a connection's first bytes before its server does
(`FirstBytes` on asyncio, for hypercorn and uvicorn; `first_bytes` on trio).
When they are a plain `GET /v1/discovery/watch` that opens a stream
(HTTP/1.1, no body, and accepted by the same checks as any watch:
`watch_streams.open_watch`), the frontend serves that
stream itself with one small object (`DirectStream`) whose `wake` writes the
hub's bytes straight to the socket: no writer task woken per event.
Everything else, a refused watch included, is handed to the server with the
bytes read so far, so every other request, every error answer and every
hostile-client defence stays the server's and ours as before (`http1_only`,
`servers.hypercorn.patches`, `write_deadline`). A connection that sends anything but
the start of a watch is handed over at its first read.

What stays the same for a client: the response (status, headers, chunked
SSE body, the last chunk at shutdown), the bound on what a slow reader may
leave pending (`SERVICE_DISCOVERY_WATCH_BACKLOG_BYTES`), the write deadline
(`SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS`, as `write_deadline`), the head's
16 KiB size bound, and the keep-alive timeout as the bound on how long a head
may take (hypercorn's idle timer bounds that). What differs: the connection
is closed after the stream ends rather than kept alive, and a watch sent on
a connection that served an earlier request is the server's as before
(streams are opened on connections of their own by the SDK, browsers'
EventSource and the bench alike). The decision is in docs/frontends.md.
"""

from __future__ import annotations

from abc import abstractmethod
from enum import Enum

import h11

from frontends.runtime import stream_response
from frontends.runtime.watch_streams import (
    Message,
    Stream,
    StreamHub,
    WatchServing,
    count_opened,
    open_watch,
)
from frontends.servers.hypercorn.request_heads import MAX_HEAD_BYTES
from sd_core import HttpResponse
from sd_core.watch_stream import WATCH_ROUTE, WatchSpec

_WATCH_START = b"GET " + WATCH_ROUTE.encode()
_HEAD_END = b"\r\n\r\n"
#: Headers that make a request more than a plain GET: the server answers those.
_NOT_PLAIN = frozenset({b"content-length", b"transfer-encoding", b"upgrade", b"expect"})


class Look(Enum):
    """What a connection's first bytes say so far."""

    MORE = "more"  # may still be a watch request: read on
    HAND_OFF = "hand_off"  # the HTTP server's
    HEAD = "head"  # a complete head that starts like a watch request


def first_look(buffer: bytes) -> Look:
    """Whether `buffer`, a connection's first bytes, can be a watch request's head."""
    start = buffer[: len(_WATCH_START) + 1]
    if not _WATCH_START.startswith(start[: len(_WATCH_START)]):
        return Look.HAND_OFF
    if len(start) > len(_WATCH_START) and start[-1:] not in (b"?", b" "):
        return Look.HAND_OFF  # another path that only begins the same way
    end = buffer.find(_HEAD_END)
    if end < 0:
        return Look.MORE if len(buffer) <= MAX_HEAD_BYTES else Look.HAND_OFF
    return Look.HEAD if end + len(_HEAD_END) <= MAX_HEAD_BYTES else Look.HAND_OFF


def watch_scope(buffer: bytes) -> Message | None:
    """The ASGI-like scope (`headers`, `query_string`) of a plain watch request, or None.

    h11 parses the head, so what is served here is what hypercorn would have
    parsed (uvicorn's parser accepts at least as much); anything h11 refuses,
    or that is more than a plain HTTP/1.1 GET, is None (the server's then).
    Bytes pipelined after the head do not matter: a stream never ends while
    its client is there, so nothing sent after it could ever be answered, and
    a stream's connection discards what its client sends. (Handed to a
    server, such a stream outlived its client: with a request queued behind
    it, neither hypercorn nor uvicorn noticed the connection close.)
    """
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    connection.receive_data(buffer)
    try:
        event = connection.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request) or event.http_version != b"1.1":
        return None
    path, _, query = event.target.partition(b"?")
    if event.method != b"GET" or path != _WATCH_START[4:]:
        return None
    headers = list(event.headers)
    if any(name in _NOT_PLAIN for name, _ in headers):
        return None
    return {"headers": headers, "query_string": query}


def accept_watch(runtime: WatchServing, buffer: bytes) -> WatchSpec | None:
    """The stream a complete head opens here, counted as served; None: the server's
    (a head over `SERVICE_DISCOVERY_MAX_HEAD_BYTES` among them: the server refuses it)."""
    if buffer.find(_HEAD_END) + len(_HEAD_END) > runtime.settings.max_head_bytes:
        return None
    scope = watch_scope(buffer)
    if scope is None:
        return None
    failures = runtime.api.auth_failures
    counted = dict(failures)
    result = open_watch(runtime, scope)
    if isinstance(result, HttpResponse):
        # Refused: the server answers it through `WatchRoute`, as any refusal, and
        # counts an authentication failure then; counted here too, one attempt
        # would show as two in `sd_auth_failures_total`.
        failures.clear()
        failures.update(counted)
        return None
    count_opened(runtime)
    return result


class DirectStream(Stream):
    """A stream written by the hub's `wake` itself, straight to its connection.

    Each frontend says how bytes reach its socket; what to write is what a
    task-written stream sends (`Stream.owed`, `runtime.stream_response`),
    rendered as HTTP/1.1 here (`ended`: the connection may now be closed).
    """

    __slots__ = ()

    def open_on(self, hub: StreamHub, spec: WatchSpec) -> bytes:
        """Open this stream on `hub`; the response's first bytes: its head, the first events."""
        hub.open(self, spec)
        return stream_response.http1_start() + self.framed()

    def framed(self) -> bytes:
        """What is owed to the socket now: pending events, and the end if closed."""
        return stream_response.http1_owed(*self.owed())

    def left(self) -> None:
        """The client closed its side, or the connection failed: nothing more to write."""
        self.closed = self.dropped = True

    @abstractmethod
    def wake(self) -> None:
        """Write what is owed now, unless the socket is still full from the last write."""
