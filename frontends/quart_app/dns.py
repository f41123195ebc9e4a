"""The DNS interface's sockets on asyncio: UDP by the loop's reader callback, TCP by a protocol.

Started and stopped with the app's serving lifespan (`app._serve_tasks`), on
hypercorn and uvicorn, asyncio's loop or uvloop alike. Protocols rather than
streams: no task per connection, and `asyncio.start_server` is the one the
hypercorn server wraps for its own listeners. What the bytes mean, and every
limit, is in `runtime.dns_server`; this module only waits and times.
"""

from __future__ import annotations

import asyncio
import socket
from typing import cast

from frontends.runtime.dns_server import BadFrame, DnsService, TcpFramer


async def serve_dns(service: DnsService, sockets: tuple[socket.socket, socket.socket]) -> None:
    """Answer on the bound sockets (`DnsService.bind`) until cancelled, then close them."""
    udp, tcp = sockets
    loop = asyncio.get_running_loop()
    open_connections: set[_Connection] = set()
    loop.add_reader(udp.fileno(), service.drain_udp, udp)
    try:
        server = await loop.create_server(lambda: _Connection(service, open_connections), sock=tcp)
    except BaseException:
        loop.remove_reader(udp.fileno())
        udp.close()
        tcp.close()
        raise
    try:
        await asyncio.Event().wait()
    finally:
        loop.remove_reader(udp.fileno())
        udp.close()
        server.close()
        for connection in list(open_connections):
            connection.abort()


class _Connection(asyncio.Protocol):
    """One TCP client: queries in, answers out, until it closes, idles or breaks a rule.

    The idle deadline restarts at each whole query; a client that stops reading
    its answers stops being read and answered (`pause_writing`: the queries of its
    last read wait, unanswered, until it reads), so it idles out; nor is it read
    while a batch of its queries waits for the loop's next turn."""

    def __init__(self, service: DnsService, open_connections: set[_Connection]) -> None:
        self._service = service
        self._open = open_connections
        self._transport: asyncio.Transport | None = None
        self._framer: TcpFramer | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._pumping = False  # a batch of queries waits for the next turn
        self._write_paused = False  # the client reads its answers too slowly

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not `asyncio.Transport` subclasses).
        self._transport = cast(asyncio.Transport, transport)
        if not self._service.admit():
            self._transport.abort()
            return
        self._framer = self._service.framer()
        self._open.add(self)
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._serve(data)

    def _serve(self, data: bytes = b"") -> None:
        """Answer what is complete (a batch at most); the rest on a later turn, unread meanwhile."""
        framer, transport = self._framer, self._transport
        if framer is None or transport is None or transport.is_closing():
            return
        done = framer.completed
        try:
            replies = framer.feed(data)
            more = framer.ready
        except BadFrame:
            self.abort()
            return
        if replies:
            transport.write(replies)
        if framer.completed != done:
            self._arm()
        if more != self._pumping:
            self._pumping = more
            self._reading()
        if more and not self._write_paused:  # else `resume_writing` goes on with it
            asyncio.get_running_loop().call_soon(self._serve)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._reading()
        if self._pumping:  # the batches that waited for the client to read
            asyncio.get_running_loop().call_soon(self._serve)

    def _reading(self) -> None:
        """Read while neither a batch is pending nor the client is behind on its answers."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._pumping or self._write_paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._framer is not None:
            self._framer = None
            self._open.discard(self)
            self._service.leave()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._service.settings.tcp_idle, self.abort)
