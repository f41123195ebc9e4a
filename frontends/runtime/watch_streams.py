"""Open watch streams: who follows what, and the bytes each is owed (no event loop here).

The core decides what the events are (`sd_core.watch_stream`); this hub only
routes them. On an index rise, `changed` renders each raised service's event
once and appends the very same bytes object to every stream that follows it,
then wakes that stream's writer, which is the frontend's (`hold` in each
app's `streams.py`). A writer blocked on a slow reader leaves its bytes here;
past `max_pending_bytes` (`SERVICE_DISCOVERY_WATCH_BACKLOG_BYTES`) the stream
is dropped (its writer aborted, its bytes freed) and the client resumes by
index, so no reader can make the registry buffer without bound.

Keep-alives come from the hub too (`tick`), not from a timer per stream: with
tens of thousands open, a timer and a timeout object each were a good part of
what an idle stream cost (docs/performance.md, scenario 6). One ticker per
loop (`keep_alive`) visits a sixteenth of the streams per step, so the
keep-alives of an idle registry are spread over the interval rather than
written all at once. The streams are kept by share too, so a step costs
what its streams do, however many services each follows.

`serve_watch` is the ASGI side both apps share: the checks of any read
(auth, parameters, limits) answered as ordinary responses, then the stream.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from frontends.runtime import stream_response
from frontends.runtime.logs import logfmt
from frontends.runtime.settings import DEFAULT_WATCH_BACKLOG_BYTES, Settings
from frontends.runtime.stream_response import Message as Message
from sd_core import HttpApi, HttpRequest, HttpResponse
from sd_core.watch_stream import (
    KEEPALIVE,
    STREAM_PREAMBLE,
    WATCH_ROUTE,
    LiveEvent,
    StreamEvents,
    WatchSpec,
    join_events,
)

log = logging.getLogger("sd.registry")

Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The keep-alive ticker's steps per interval; each step visits one of these shares.
KEEPALIVE_SHARES = 16


class Stream(ABC):
    """One open stream: what it follows, the bytes not yet written, and how to wake its writer.

    Each frontend subclasses it with its loop's writer (`wake`, `abort`; a
    `TaskStream`'s task also `idle`s, a `direct_streams.DirectStream` is
    written by `wake` itself): one object per stream, rather than closures
    and events beside it.
    """

    __slots__ = (
        "closed",
        "dropped",
        "ended",
        "follows",
        "last_push",
        "pending",
        "pending_bytes",
        "share",
    )

    def __init__(self, follows: frozenset[str] | None) -> None:
        # A tuple is a fifth of a small frozenset's size; the writer drops its spec once open.
        self.follows = None if follows is None else tuple(follows)
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.last_push = 0  # the hub's tick when bytes were last queued here
        self.share = 0  # which of the keep-alive ticker's steps visits it
        self.closed = False  # the writer ends the response after what is pending
        self.dropped = False  # the reader fell behind or left: send nothing more
        self.ended = False  # the response's end is written (`owed`)

    @abstractmethod
    def wake(self) -> None:
        """Bytes are pending or the stream closed: make the writer look (it may be idle)."""

    @abstractmethod
    def abort(self) -> None:
        """The stream was dropped: stop the writer, even one blocked on its reader."""

    def take(self) -> bytes:
        """Everything pending, as one piece (usually the one shared event, uncopied)."""
        pending = self.pending
        if not pending:
            return b""
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self.pending = []
        self.pending_bytes = 0
        return data

    def owed(self) -> tuple[bytes, bool]:
        """What the writer is to send now, whichever way it writes: the pending bytes, and
        whether the response ends after them (once the stream is closed; once, and never
        after a drop). The one place that decides a stream's body (`stream_response`
        renders it for either path).
        """
        data = self.take()
        ends = self.closed and not self.dropped and not self.ended
        if ends:
            self.ended = True
        return data, ends


class TaskStream(Stream):
    """A stream written by a task of its own through the ASGI `send` (`write_stream`)."""

    __slots__ = ()

    @abstractmethod
    async def idle(self) -> None:
        """Wait for a `wake`, or for the client to leave (then mark the stream dropped)."""

    def received(self, message: Message) -> None:
        """What the writer's `idle` got from the client: only a disconnect matters."""
        if message["type"] == "http.disconnect":
            self.closed = self.dropped = True  # nobody to write to


class StreamHub:
    """Every open stream, by the service it follows (`*` streams apart)."""

    def __init__(
        self, events: StreamEvents, *, max_pending_bytes: int = DEFAULT_WATCH_BACKLOG_BYTES
    ) -> None:
        """`max_pending_bytes` is the runtime's `Settings.watch_backlog_bytes`."""
        self._events = events
        self._max_pending = max_pending_bytes
        self._by_service: dict[str, set[Stream]] = {}
        self._every: set[Stream] = set()
        # Every open stream, by keep-alive share: what one ticker step visits.
        self._shares: list[set[Stream]] = [set() for _ in range(KEEPALIVE_SHARES)]
        self.count = 0
        self.dropped = 0
        self.opened = 0  # streams opened so far (they take the ticker's shares in turn)
        self.ticks = 0  # keep-alive ticker steps so far
        self.ticking = False  # a ticker runs (`keep_alive`)
        #: Cluster mode: whether a stream resuming from this id must wait for the node's
        #: view to reach it (then it is held, and `caught_up` lets it go on).
        self.hold: Callable[[int], bool] | None = None
        self._held: dict[int, dict[Stream, WatchSpec]] = {}  # by the id they resume from

    def open(self, stream: Stream, spec: WatchSpec) -> None:
        """Count `stream` (its writer's, following `spec`) open, its first events pending.

        Held (cluster mode, its id ahead of the node's view): only the preamble, and no
        live event until `caught_up`, so it is never sent a state older than its id."""
        self.count += 1
        if spec.since is not None and self.hold is not None and self.hold(spec.since):
            self._held.setdefault(spec.since, {})[stream] = spec
            first = STREAM_PREAMBLE
        else:
            self._follow(stream, spec)
            first = self._events.first_events(spec)
        stream.pending.append(first)
        stream.pending_bytes = len(first)
        stream.last_push = self.ticks
        stream.share = self.opened % KEEPALIVE_SHARES
        self._shares[stream.share].add(stream)
        self.opened += 1

    def _follow(self, stream: Stream, spec: WatchSpec) -> None:
        if spec.services is None:
            self._every.add(stream)
        else:
            for name in spec.services:
                self._by_service.setdefault(name, set()).add(stream)

    def caught_up(self, reached: frozenset[int], expired: frozenset[int]) -> None:
        """The node's view reached these ids (held streams resume after them), or gave up
        on these (their streams start over: every followed service's state, as after a
        registry restart). Either way they follow their services from now on."""
        for since in reached | expired:
            held = self._held.pop(since, None)
            for stream, spec in (held or {}).items():
                self._follow(stream, spec)
                start = spec if since in reached else spec._replace(since=None)
                events = self._events.first_events(start)[len(STREAM_PREAMBLE) :]
                if events:
                    self._push(stream, events)

    def close(self, stream: Stream) -> None:
        """Forget `stream` (idempotent): its writer has ended."""
        self._shares[stream.share].discard(stream)
        for since, held in self._held.items():
            if held.pop(stream, None) is not None:
                if not held:
                    del self._held[since]
                self.count -= 1
                return
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
        stream.last_push = self.ticks
        stream.wake()

    def start_ticking(self) -> bool:
        """Whether the caller is to start a keep-alive ticker (none runs yet); it now runs."""
        if self.ticking:
            return False
        self.ticking = True
        return True

    def tick(self) -> None:
        """One keep-alive step: a keep-alive to each stream of this step's share that was
        sent nothing since its share's last step (`KEEPALIVE_SHARES` steps ago).

        So an idle stream gets one every interval, and one that had an event at
        most two intervals after it.
        """
        quiet_since = self.ticks - KEEPALIVE_SHARES
        # A copy: a push may drop a stream, which leaves its share.
        for stream in list(self._shares[self.ticks % KEEPALIVE_SHARES]):
            if stream.last_push <= quiet_since:
                self._push(stream, KEEPALIVE)
        self.ticks += 1

    def _streams(self) -> set[Stream]:
        return set[Stream]().union(*self._shares)

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
        for stream in self._streams():
            stream.closed = True
            stream.wake()


async def keep_alive(
    hub: StreamHub, interval: float, sleep: Callable[[float], Awaitable[Any]]
) -> None:
    """The hub's keep-alive ticker on one loop: runs while any stream is open.

    A frontend starts it as a stream opens, when `hub.start_ticking()` says
    none runs; it ends by itself once the last stream has closed.
    """
    try:
        while hub.count:
            await sleep(interval / KEEPALIVE_SHARES)
            hub.tick()
    finally:
        hub.ticking = False


class WatchServing(Protocol):
    """What serving a watch needs of the runtime: its API, hub, settings and counters.

    A protocol rather than `runtime.Runtime`, which builds its `StreamHub` from
    this module: both sides import this, neither imports the other.
    """

    @property
    def api(self) -> HttpApi: ...
    @property
    def streams(self) -> StreamHub: ...
    @property
    def settings(self) -> Settings: ...
    def count(self, response: HttpResponse) -> None: ...


# The frontend's writer: holds the open stream on its loop until it ends.
Hold = Callable[[StreamHub, WatchSpec, Receive, Send], Awaitable[None]]


def serve_watch(
    runtime: WatchServing, scope: Message, receive: Receive, send: Send, hold: Hold
) -> Awaitable[None]:
    """`GET /v1/discovery/watch`: refused like any read, or held open as a stream.

    Checks at once and hands back what to await (the refusal, or the stream
    itself), so an open stream's task holds no frame of this function's; what
    the checks built (the request, its headers' values) is gone too, only the
    spec stays with the stream.
    """
    result = open_watch(runtime, scope)
    if isinstance(result, HttpResponse):
        runtime.count(result)
        return send_response(send, result)
    count_opened(runtime)
    release_request(scope)
    return hold(runtime.streams, result, receive, send)


def count_opened(runtime: WatchServing) -> None:
    """Count a stream that opens as a served `200` of the watch route (its metrics)."""
    runtime.count(HttpResponse(200, b"", (), WATCH_ROUTE))


#: What of a stream's scope is kept once it is checked: what the servers read
#: while sending a response (hypercorn 0.18: `method`, `http_version`; uvicorn:
#: `method`) and the small values that name the request, should a log want them.
SCOPE_KEPT = (
    "type",
    "http_version",
    "method",
    "scheme",
    "path",
    "query_string",
    "root_path",
    "server",
    "client",
)


def release_request(scope: Message) -> None:
    """Drop what an open stream no longer needs from its scope, in place.

    The server holds the scope (hypercorn's `HTTPStream`, uvicorn's protocol
    and cycle) for as long as the stream is open; its dict, the request
    headers, the lifespan state's copy and the extensions were about a
    kilobyte per stream. `clear` is what gives a dict's table back.
    """
    kept = {key: scope[key] for key in SCOPE_KEPT if key in scope}
    scope.clear()
    scope.update(kept)


def open_watch(runtime: WatchServing, scope: Message) -> WatchSpec | HttpResponse:
    """The stream a watch request asks for, or the response refusing it."""
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
    result: WatchSpec | HttpResponse = runtime.api.open_watch(request, last_event_id)
    if (
        isinstance(result, WatchSpec)
        and runtime.streams.count >= runtime.settings.max_watch_streams
    ):
        overloaded: HttpResponse = runtime.api.overloaded("GET", WATCH_ROUTE, "watch streams")
        return overloaded
    return result


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
    body = response.body
    if isinstance(body, bytes):
        await send(stream_response.body(body, more=False))
        return
    for piece in body.chunks():  # views of other cached bodies, large ones uncopied
        await send(stream_response.body(piece))
    await send(stream_response.end())


async def write_stream(stream: TaskStream, send: Send) -> None:
    """Write the stream's response: its start, then what the hub queues, until it closes.

    The one task a stream has: between writes it waits in `stream.idle`, which
    also hears the client leave. A dropped stream's response is left unfinished.
    """
    await send(stream_response.start())
    while True:
        data, ends = stream.owed()
        for message in stream_response.asgi_owed(data, ends):
            await send(message)
        if ends or (stream.closed and not data):
            return
        if not data:
            await stream.idle()


class WatchRoute:
    """ASGI wrapper: `GET /v1/discovery/watch` is streamed here, everything else to the app.

    Loop-independent; each frontend passes its own `make_hold` (how a stream is
    held open on that loop).
    """

    def __init__(self, app: Any, runtime: WatchServing, make_hold: Callable[[float], Hold]) -> None:
        self.app = app
        self.runtime = runtime
        self._hold = make_hold(runtime.settings.watch_keepalive)

    def __call__(self, scope: Message, receive: Receive, send: Send) -> Awaitable[None]:
        """What to await for this request (no frame of this wrapper's stays on the stack)."""
        if scope["type"] == "http" and scope["path"] == WATCH_ROUTE and scope["method"] == "GET":
            return serve_watch(self.runtime, scope, receive, send, self._hold)
        app_call: Awaitable[None] = self.app(scope, receive, send)
        return app_call
