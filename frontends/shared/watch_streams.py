"""Open watch streams: who follows what, and the bytes each is owed (no event loop here).

The core decides what the events are (`sd_core.watch_stream`); this hub only
routes them. On an index rise, `changed` renders each raised service's event
once and appends the very same bytes object to every stream that follows it,
then wakes that stream's writer, which is the frontend's (`hold` in each
app's `streams.py`). A writer blocked on a slow reader leaves its bytes here;
past `max_pending_bytes` the stream is dropped (its writer aborted, its bytes
freed) and the client resumes by index, so no reader can make the registry
buffer without bound.

`serve_watch` is the ASGI side both apps share: the checks of any read
(auth, parameters, limits) answered as ordinary responses, then the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sd_core import HttpRequest, HttpResponse
from sd_core.watch_stream import (
    KEEPALIVE,
    STREAM_HEADERS,
    WATCH_ROUTE,
    LiveEvent,
    WatchEvents,
    WatchSpec,
    join_events,
)

from .logs import logfmt

log = logging.getLogger("sd.registry")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: A stream whose reader falls this far behind is dropped (it resumes by index).
MAX_PENDING_BYTES = 1024 * 1024


class Stream:
    """One open stream: what it follows, the bytes not yet written, and how to wake its writer."""

    __slots__ = ("abort", "closed", "dropped", "follows", "pending", "pending_bytes", "wake")

    def __init__(
        self, follows: frozenset[str] | None, wake: Callable[[], None], abort: Callable[[], None]
    ) -> None:
        self.follows = follows
        self.wake = wake
        self.abort = abort
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.closed = False  # the writer ends the response after what is pending
        self.dropped = False  # the reader fell behind: abort, send nothing more

    def take(self) -> bytes:
        """Everything pending, as one piece (usually the one shared event, uncopied)."""
        pending = self.pending
        if not pending:
            return b""
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self.pending = []
        self.pending_bytes = 0
        return data


class StreamHub:
    """Every open stream, by the service it follows (`*` streams apart)."""

    def __init__(self, events: WatchEvents, *, max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self._events = events
        self._max_pending = max_pending_bytes
        self._by_service: dict[str, set[Stream]] = {}
        self._every: set[Stream] = set()
        self.count = 0
        self.dropped = 0

    def open(self, spec: WatchSpec, wake: Callable[[], None], abort: Callable[[], None]) -> Stream:
        """A new stream, its first events already pending."""
        stream = Stream(spec.services, wake, abort)
        if spec.services is None:
            self._every.add(stream)
        else:
            for name in spec.services:
                self._by_service.setdefault(name, set()).add(stream)
        self.count += 1
        first = self._events.first_events(spec)
        stream.pending.append(first)
        stream.pending_bytes = len(first)
        return stream

    def close(self, stream: Stream) -> None:
        """Forget `stream` (idempotent): its writer has ended."""
        if stream.follows is None:
            if stream in self._every:
                self._every.discard(stream)
                self.count -= 1
            return
        removed = False
        for name in stream.follows:
            followers = self._by_service.get(name)
            if followers is not None and stream in followers:
                removed = True
                followers.discard(stream)
                if not followers:
                    del self._by_service[name]
        if removed:
            self.count -= 1

    def changed(self, services: frozenset[str]) -> None:
        """These services' indexes rose: queue each one's event, rendered once, to its followers."""
        if not self.count:
            return
        by_service = self._by_service
        every = self._every
        raised = [name for name in services if name in by_service] if not every else services
        if not raised:
            return
        events = self._events.changed(raised)
        if len(events) == 1:
            event = events[0]
            for stream in (*by_service.get(event.name, ()), *every):
                self._push(stream, event.with_id)
            return
        owed: dict[Stream, list[LiveEvent]] = {}
        for event in events:
            for stream in (*by_service.get(event.name, ()), *every):
                owed.setdefault(stream, []).append(event)
        for stream, its_events in owed.items():
            self._push(stream, join_events(its_events))

    def _push(self, stream: Stream, data: bytes) -> None:
        if stream.closed:
            return
        size = stream.pending_bytes + len(data)
        if size > self._max_pending:
            self.drop(stream)
            return
        stream.pending.append(data)
        stream.pending_bytes = size
        stream.wake()

    def drop(self, stream: Stream) -> None:
        """The reader fell too far behind: free its bytes and abort its writer."""
        stream.pending = []
        stream.pending_bytes = 0
        stream.closed = stream.dropped = True
        self.close(stream)
        self.dropped += 1
        log.info(logfmt("watch_stream_dropped", reason="slow_reader"))
        stream.abort()

    def close_all(self) -> None:
        """Shutdown: every writer ends its response after what is pending."""
        streams = {*self._every, *(s for group in self._by_service.values() for s in group)}
        for stream in streams:
            stream.closed = True
            stream.wake()


# The frontend's writer: holds the open stream on its loop until it ends.
Hold = Callable[[StreamHub, WatchSpec, Receive, Send], Awaitable[None]]


async def serve_watch(
    runtime: Any, scope: Message, receive: Receive, send: Send, hold: Hold
) -> None:
    """`GET /v1/discovery/watch`: refused like any read, or held open as a stream."""
    authorizations: list[str] = []
    last_event_id: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorizations.append(value.decode("latin-1"))
        elif name == b"last-event-id":
            last_event_id = value.decode("latin-1")
    request = HttpRequest(
        "GET", WATCH_ROUTE, scope["query_string"], ", ".join(authorizations) or None
    )
    result = runtime.api.open_watch(request, last_event_id)
    if (
        isinstance(result, WatchSpec)
        and runtime.streams.count >= runtime.settings.max_watch_streams
    ):
        result = runtime.api.overloaded("GET", WATCH_ROUTE, "watch streams")
    if isinstance(result, HttpResponse):
        runtime.count(result)
        await send_response(send, result)
        return
    runtime.count(HttpResponse(200, b"", (), WATCH_ROUTE))
    await hold(runtime.streams, result, receive, send)


def stream_start() -> Message:
    return {
        "type": "http.response.start",
        "status": 200,
        "headers": [(k.encode(), v.encode()) for k, v in STREAM_HEADERS],
    }


def body(data: bytes, *, more: bool = True) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


async def send_response(send: Send, response: HttpResponse) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [
                *((k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers),
                (b"content-length", str(len(response.body)).encode()),
            ],
        }
    )
    await send(body(response.body, more=False))


async def write_stream(
    stream: Stream, send: Send, idle: Callable[[float], Awaitable[bool]], keepalive: float
) -> None:
    """Write the stream's response: its start, then what the hub queues, until it closes.

    A keepalive goes out after `keepalive` seconds with nothing to send. `idle(seconds)`
    is the one loop call: it waits for the stream's wake and says whether it came (False:
    the seconds passed). A dropped stream's response is left unfinished.
    """
    await send(stream_start())
    while True:
        data = stream.take()
        if data:
            await send(body(data))
            continue
        if stream.closed:
            break
        if not await idle(keepalive):
            await send(body(KEEPALIVE))
    if not stream.dropped:
        await send(body(b"", more=False))


async def until_disconnect(receive: Receive, stream: Stream) -> None:
    """Mark `stream` closed once its client goes away, and wake its writer."""
    while (await receive())["type"] != "http.disconnect":
        pass
    stream.closed = stream.dropped = True  # nobody to write to
    stream.wake()


class WatchRoute:
    """ASGI wrapper: `GET /v1/discovery/watch` is streamed here, everything else to the app.

    Loop-independent; each frontend passes its own `make_hold` (how a stream is
    held open on that loop).
    """

    def __init__(self, app: Any, runtime: Any, make_hold: Callable[[float], Hold]) -> None:
        self.app = app
        self.runtime = runtime
        self._hold = make_hold(runtime.settings.watch_keepalive)

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == WATCH_ROUTE and scope["method"] == "GET":
            await serve_watch(self.runtime, scope, receive, send, self._hold)
        else:
            await self.app(scope, receive, send)
