"""The DNS interface's sockets on trio: UDP by readiness, TCP by `serve_listeners`.

Started and stopped with the app's lifespan (`app.create_app`). What the bytes
mean, and every limit, is in `runtime.dns_server`; this module only waits.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import trio

from frontends.runtime.dns_server import BadFrame, DnsService

#: Bytes read from a TCP connection at a time.
_READ = 4096


async def serve_dns(service: DnsService, sockets: tuple[socket.socket, socket.socket]) -> None:
    """Answer on the bound sockets (`DnsService.bind`) until cancelled, then close them."""
    udp, tcp = sockets
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(tcp))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_udp, service, udp)
            nursery.start_soon(trio.serve_listeners, _connection(service), [listener])
    finally:
        udp.close()
        await listener.aclose()


async def _udp(service: DnsService, udp: socket.socket) -> None:
    try:
        while True:
            await trio.lowlevel.wait_readable(udp)
            service.drain_udp(udp)
    finally:
        trio.lowlevel.notify_closing(udp)


def _connection(service: DnsService) -> Callable[[trio.SocketStream], Awaitable[None]]:
    async def converse(stream: trio.SocketStream) -> None:
        """Queries in, answers out, until the client closes, idles or breaks a rule."""
        if not service.admit():
            await stream.aclose()
            return
        idle = service.settings.tcp_idle
        framer = service.framer()
        try:
            deadline = trio.current_time() + idle
            while True:
                with trio.move_on_at(deadline) as waited:
                    data = await stream.receive_some(_READ)
                if waited.cancelled_caught or not data:
                    return
                done = framer.completed
                replies = framer.feed(data)
                while True:  # a batch per turn, nothing read until the queries are answered
                    if framer.completed != done:
                        deadline = trio.current_time() + idle
                    if replies:
                        with trio.move_on_after(idle) as writing:
                            await stream.send_all(replies)
                        if writing.cancelled_caught:
                            return
                    if not framer.ready:
                        break
                    await trio.lowlevel.checkpoint()
                    done = framer.completed
                    replies = framer.feed()
        except (BadFrame, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        finally:
            service.leave()
            await trio.aclose_forcefully(stream)

    return converse
