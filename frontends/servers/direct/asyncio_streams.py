"""Watch streams served below the asyncio servers: a protocol per connection, no task.

See `servers.direct.first_bytes` for why and what is served here. On asyncio each
accepted connection starts with `FirstBytes` as its protocol, which hands
every connection that is not a stream's to the server's own protocol, fed the
bytes read so far: on hypercorn what `asyncio.start_server` would have given
it (a `StreamReaderProtocol` calling hypercorn's connection callback; see
`first_protocol`), on uvicorn its HTTP protocol
(`uvicorn_first_bytes`). A stream's connection gets `_ConnectionStream`: the
hub's `wake` writes to the transport at once, asyncio's flow control
(`pause_writing`) says when the reader is behind, and the transport's
`connection_lost` is the client leaving. Mirrors `servers/direct/trio_streams.py`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, cast

from frontends.quart_app.streams import start_ticker
from frontends.runtime.watch_streams import StreamHub, WatchServing
from frontends.servers.direct.first_bytes import DirectStream, Look, accept_watch, first_look
from frontends.servers.sockets import bytes_waiting
from sd_core.watch_stream import WatchSpec

#: What `asyncio.start_server` calls with each connection's reader and writer (hypercorn's).
Connected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]
#: Gives a connection, the bytes it sent so far and the loop time by which its
#: first head must be complete, to the server's own protocol.
HandOff = Callable[[asyncio.Transport, bytes, float], None]

#: `asyncio.start_server`'s reader limit, which hypercorn leaves at its default.
STREAM_READER_LIMIT = 2**16


#: Makes a connection's first protocol from `start_server`'s callback.
FirstProtocol = Callable[[Connected], asyncio.Protocol]


def first_protocol(runtime: WatchServing, head_timeout: float) -> FirstProtocol:
    """What hypercorn's `asyncio.start_server` should make each new connection's protocol
    with: `FirstBytes`, handing other connections to hypercorn's callback
    (`servers.hypercorn.listeners.accept_in_small_batches` puts it there).

    Unlike trio's, nothing is needed for the shutdown: hypercorn's asyncio
    worker does not wait for connections it was never given, so those still
    waiting for their first request end with the loop, at once.
    """

    def make(connected: Connected) -> asyncio.Protocol:
        return FirstBytes(runtime, functools.partial(_to_hypercorn, connected), head_timeout)

    return make


def _to_hypercorn(
    connected: Connected, transport: asyncio.Transport, first: bytes, deadline: float
) -> None:
    """As `asyncio.start_server` would have served the connection, with what it sent so far
    (hypercorn's keep-alive timer bounds the rest of the head)."""
    reader = asyncio.StreamReader(STREAM_READER_LIMIT)
    protocol = asyncio.StreamReaderProtocol(reader, connected)
    _switch(transport, protocol, first)


def uvicorn_first_bytes(
    runtime: WatchServing, head_timeout: float, protocol_class: Callable[..., asyncio.Protocol]
) -> Callable[..., asyncio.Protocol]:
    """A protocol factory for uvicorn's `http` setting: `FirstBytes`, handing over to
    `protocol_class` made with the arguments uvicorn gives the factory and the first
    head's deadline (`head_deadline`, which it keeps)."""

    def make(**server_arguments: Any) -> asyncio.Protocol:
        def to_uvicorn(transport: asyncio.Transport, first: bytes, deadline: float) -> None:
            protocol = protocol_class(head_deadline=deadline, **server_arguments)
            _switch(transport, protocol, first)

        return FirstBytes(runtime, to_uvicorn, head_timeout)

    return make


def _switch(transport: asyncio.Transport, protocol: asyncio.Protocol, first: bytes) -> None:
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    protocol.data_received(first)


class FirstBytes(asyncio.Protocol):
    """A connection until its first bytes say whose it is: a watch stream's, or the server's.

    A head that takes longer than `head_timeout` (the keep-alive timeout,
    which bounds a head on hypercorn) is closed unanswered, as hypercorn
    closes one; so is a connection that ends before its head did.

    A process starved of CPU past `head_timeout` (stopped, or a long pause) can
    find the deadline due in the same loop turn as the request already waiting
    in the socket, and run the timer first (seen as one connection in several
    closed unanswered under `tests/reliability/test_reliability_keep_alive.py`).
    So the timer looks first: bytes waiting mean the reader is due, and the head
    gets one more period; a second expiry closes even so, so a client cannot hold
    the connection by trickling bytes. (The same rule holds for trio's gate,
    `servers.direct.trio_streams`, and hypercorn's trio keep-alive timer,
    `servers.hypercorn.patches.spare_connections_with_waiting_requests`.)
    """

    def __init__(self, runtime: WatchServing, hand_off: HandOff, head_timeout: float) -> None:
        self._runtime = runtime
        self._hand_off_to = hand_off
        self._head_timeout = head_timeout
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._spared = False  # the head already got its one more period

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)
        self._arm()

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self._head_timeout
        self._timer = loop.call_at(self._deadline, self._head_timed_out)

    def _head_timed_out(self) -> None:
        """Close, unless the client's bytes wait unread and the head was not spared yet."""
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        if not self._spared and sock is not None and bytes_waiting(sock.fileno()):
            self._spared = True
            self._arm()
            return
        transport.close()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        look = first_look(self._buffer)
        if look is Look.MORE:
            return
        spec = accept_watch(self._runtime, self._buffer) if look is Look.HEAD else None
        if spec is None:
            self._hand_off()
        else:
            self._serve(spec)

    def eof_received(self) -> bool | None:
        return None  # a head cut short: close (a watch's start was all it sent)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _hand_off(self) -> None:
        self._stop_timer()
        assert self._transport is not None
        first, self._buffer = self._buffer, b""
        self._hand_off_to(self._transport, first, self._deadline)

    def _serve(self, spec: WatchSpec) -> None:
        self._stop_timer()
        assert self._transport is not None
        hub: StreamHub = self._runtime.streams
        settings = self._runtime.settings
        stream = _ConnectionStream(spec.services, self._transport, hub, settings.write_timeout)
        self._transport.set_protocol(stream)
        self._transport.write(stream.open_on(hub, spec))
        start_ticker(hub, settings.watch_keepalive)
        self._buffer = b""


class _ConnectionStream(DirectStream, asyncio.Protocol):
    """One stream's connection: written by `wake`, paused by the transport when the reader
    is behind (then the hub keeps its events, up to its bound, or the write deadline,
    `write_timeout` seconds of the reader taking nothing, drops it)."""

    __slots__ = ("hub", "paused_at", "transport", "write_timeout")

    def __init__(
        self,
        follows: frozenset[str] | None,
        transport: asyncio.Transport,
        hub: StreamHub,
        write_timeout: float,
    ) -> None:
        super().__init__(follows)
        self.transport = transport
        self.hub = hub
        self.write_timeout = write_timeout  # SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS
        self.paused_at: asyncio.TimerHandle | None = None  # the write deadline, while paused

    def wake(self) -> None:
        if self.paused_at is not None or self.transport.is_closing():
            return
        data = self.framed()
        if data:
            self.transport.write(data)
        if self.ended:
            self.transport.close()  # after what is buffered has been written

    def abort(self) -> None:
        self.transport.abort()

    def pause_writing(self) -> None:
        loop = asyncio.get_running_loop()
        self.paused_at = loop.call_later(self.write_timeout, self._reader_stuck)

    def resume_writing(self) -> None:
        if self.paused_at is not None:
            self.paused_at.cancel()
            self.paused_at = None
        self.wake()

    def _reader_stuck(self) -> None:
        """The reader took nothing for the whole write deadline: drop it, as hypercorn would."""
        self.paused_at = None
        self.hub.drop(self)

    def data_received(self, data: bytes) -> None:
        """A stream's client has nothing more to say; whatever it sends is discarded."""

    def eof_received(self) -> bool | None:
        return None  # the client closed its side: it has left (asyncio closes ours)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.paused_at is not None:
            self.paused_at.cancel()
            self.paused_at = None
        self.left()
        self.pending = []
        self.hub.close(self)
