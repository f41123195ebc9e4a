"""Watch streams served below hypercorn on trio: one parked task per stream, written by `wake`.

See `servers.direct.first_bytes` for why and what is served here. On trio,
hypercorn's listener calls `hypercorn.trio.run.TCPServer` with each accepted
connection; `servers.hypercorn.listeners` puts `first_bytes` there instead. It reads
the connection's first bytes: a stream's connection is held by its own task
(`_ConnectionStream.run`), anything else goes to hypercorn's `TCPServer` with a
stream that replays what was read (`_Replayed`).

A stream's task parks in `wait_readable` on its socket, which is how it hears
the client leave; the hub's `wake` writes to the socket itself (`os.write`,
non-blocking as trio keeps it), so an event costs no task switch. Only when
the socket is full does the task take over, cancelled out of its wait, and
write the rest under the write deadline (`SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS`,
as hypercorn's own writes in `write_deadline`) while the hub keeps later
events, up to its bound. Mirrors `servers/direct/asyncio_streams.py`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import trio
from hypercorn.trio.tcp_server import MAX_RECV
from hypercorn.trio.tcp_server import TCPServer as HypercornConnection

from frontends.runtime.logs import logfmt
from frontends.runtime.watch_streams import StreamHub, WatchServing
from frontends.servers.direct.first_bytes import DirectStream, Look, accept_watch, first_look
from frontends.servers.sockets import bytes_waiting
from frontends.trio_app.streams import start_ticker

log = logging.getLogger("sd.registry")

#: hypercorn's own connection server (typed loosely: it is given a `_Replayed` too).
_hypercorn: Any = HypercornConnection


#: What hypercorn's trio listener calls with each accepted connection.
Connection = Callable[[Any, Any, Any, Any, Any], Any]


def first_connections(
    runtime: WatchServing, head_timeout: float
) -> tuple[Connection, Callable[[], None]]:
    """What hypercorn's trio listener should call with each new connection instead of
    its `TCPServer` (`first_bytes`; `servers.hypercorn.listeners` puts it there), and
    what closes the connections still waiting for their first request.

    The second is for the server's shutdown: hypercorn closes its idle
    connections as it stops, and these would otherwise hold its shutdown for up
    to `head_timeout`.
    """
    waiting: set[trio.CancelScope] = set()

    def connection(app: Any, config: Any, context: Any, state: Any, stream: Any) -> Any:
        return first_bytes(runtime, head_timeout, (app, config, context, state), stream, waiting)

    def close_waiting() -> None:
        for scope in waiting:
            scope.cancel()

    return connection, close_waiting


async def first_bytes(
    runtime: WatchServing,
    head_timeout: float,
    hypercorn_args: tuple[Any, ...],
    stream: Any,
    waiting: set[trio.CancelScope],
) -> None:
    """Serve a watch stream's connection here, and give any other to hypercorn.

    A head that takes longer than `head_timeout` (hypercorn's keep-alive
    timeout, which bounds a head there) is closed unanswered, as hypercorn
    closes one; so is a connection that ends before its head did, and one
    still waiting when the server stops (its scope is in `waiting` meanwhile).
    (The listener closes the connection once this returns.) A head whose bytes
    wait unread when its time runs out gets one more period, once, as on asyncio
    (`servers.direct.asyncio_streams.FirstBytes`).
    """
    if not isinstance(stream, trio.SocketStream):  # TLS: hypercorn's, whole
        await _hypercorn(*hypercorn_args, stream)
        return
    with trio.CancelScope() as stopping:
        waiting.add(stopping)
        try:
            buffer = await _first_request(stream, head_timeout)
        finally:
            waiting.discard(stopping)
    if stopping.cancelled_caught or buffer is None:
        return
    try:
        spec = accept_watch(runtime, buffer) if first_look(buffer) is Look.HEAD else None
    except Exception:  # a bug of ours: hypercorn answers the request instead
        log.exception(logfmt("watch_head_failed"))
        spec = None
    if spec is None:
        await _hypercorn(*hypercorn_args, _Replayed(stream, buffer))
        return
    del buffer, hypercorn_args
    hub: StreamHub = runtime.streams
    held = _ConnectionStream(spec.services, stream.socket.fileno())
    held.unsent = held.open_on(hub, spec)  # written first, by the task
    del spec
    start_ticker(hub, runtime.settings.watch_keepalive)
    try:
        await held.run(stream.socket, hub, runtime.settings.write_timeout)
    except Exception:  # a bug of ours ends this stream, never the server's nursery
        log.exception(logfmt("watch_stream_failed"))
    finally:
        hub.close(held)


async def _first_request(stream: trio.SocketStream, head_timeout: float) -> bytes | None:
    """The first bytes, read until they say whose the connection is; None if it ended, or
    its head's time ran out (spared once while its bytes wait unread: a starved process
    may expire the deadline before the reader that is due for them)."""
    buffer = b""
    deadline = trio.current_time() + head_timeout
    spared = False
    while True:
        with trio.move_on_at(deadline) as timer:
            try:
                data = await stream.receive_some(MAX_RECV)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
        if timer.cancelled_caught:
            if spared or not bytes_waiting(stream.socket.fileno()):
                return None
            spared = True
            deadline = trio.current_time() + head_timeout
            continue
        if not data:
            return None
        buffer += data
        if first_look(buffer) is not Look.MORE:
            return buffer


class _Replayed:
    """What hypercorn reads from a connection it takes over: the bytes already read, then
    the socket. Only the stream methods hypercorn's `TCPServer` and our patches use."""

    def __init__(self, stream: trio.SocketStream, first: bytes) -> None:
        self._stream = stream
        self._first = first
        self.socket = stream.socket

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._first:
            data, self._first = self._first, b""
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


class _ConnectionStream(DirectStream):
    """One stream's socket: `unsent` is what the task is writing to a full socket (then
    `wake` leaves events with the hub); `scope` cancels the task's current wait."""

    __slots__ = ("fd", "scope", "unsent")

    def __init__(self, follows: frozenset[str] | None, fd: int) -> None:
        super().__init__(follows)
        self.fd = fd
        self.unsent = b""
        self.scope: trio.CancelScope | None = None

    def wake(self) -> None:
        scope = self.scope
        if self.unsent or scope is None:
            return  # the task is writing, or about to look at what is pending
        data = self.framed()
        if data:
            self.unsent = self._write(data)
        if self.unsent or self.ended or self.dropped:
            scope.cancel()  # the task takes over: to write the rest, or to end

    def abort(self) -> None:
        if self.scope is not None:
            self.scope.cancel()

    def _write(self, data: bytes) -> bytes:
        """Write what the socket takes now; what it did not take."""
        try:
            sent = os.write(self.fd, data)
        except BlockingIOError:
            return data
        except OSError:  # reset or broken: the client has gone
            self.left()
            return b""
        return data[sent:] if sent < len(data) else b""

    async def run(self, sock: trio.socket.SocketType, hub: StreamHub, write_timeout: float) -> None:
        """Hold the stream until it ends, it is dropped, or its client leaves; a write the
        reader has not taken `write_timeout` seconds after the socket filled drops it."""
        while not self.dropped:
            data = self.unsent or self.framed()
            self.unsent = b""
            if data:
                self.unsent = self._write(data)
                if self.unsent and not await self._flush(sock, hub, write_timeout):
                    return
                continue
            if self.ended:
                return
            with trio.CancelScope() as self.scope:
                await trio.lowlevel.wait_readable(sock)
                self._read()
            self.scope = None

    async def _flush(
        self, sock: trio.socket.SocketType, hub: StreamHub, write_timeout: float
    ) -> bool:
        """Write `unsent` as the reader takes it, within the write deadline; False: dropped."""
        deadline = trio.current_time() + write_timeout
        with trio.CancelScope(deadline=deadline) as self.scope:
            while self.unsent and not self.dropped:
                await trio.lowlevel.wait_writable(sock)
                self.unsent = self._write(self.unsent)
        self.scope = None
        if self.unsent and not self.dropped:
            hub.drop(self)  # the reader took nothing for the whole deadline
        return not self.dropped

    def _read(self) -> None:
        """The client spoke: nothing it sends matters but its leaving (the rest is discarded)."""
        try:
            data = os.read(self.fd, MAX_RECV)
        except BlockingIOError:
            return
        except OSError:
            self.left()
            return
        if not data:
            self.left()
