"""The DNS interface's sockets on asyncio: UDP by the loop's reader callback, TCP by streams.

Started and stopped with the app's serving lifespan (`app._serve_tasks`), on
hypercorn and uvicorn alike. What the bytes mean, and every limit, is in
`runtime.dns_server`; this module only waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from frontends.runtime.dns_server import BadFrame, DnsService

#: Bytes read from a TCP connection at a time.
_READ = 4096


async def serve_dns(service: DnsService, sockets: tuple[socket.socket, socket.socket]) -> None:
    """Answer on the bound sockets (`DnsService.bind`) until cancelled, then close them."""
    udp, tcp = sockets
    loop = asyncio.get_running_loop()
    connections: set[asyncio.Task[None]] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await _converse(service, reader, writer)
        finally:
            connections.discard(task)

    loop.add_reader(udp.fileno(), service.drain_udp, udp)
    server = await asyncio.start_server(connection, sock=tcp, limit=_READ)
    try:
        await asyncio.Event().wait()
    finally:
        loop.remove_reader(udp.fileno())
        udp.close()
        server.close()
        for task in list(connections):
            task.cancel()
        for task in list(connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _converse(
    service: DnsService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Queries in, answers out, until the client closes, idles or breaks a rule."""
    if not service.admit():
        writer.close()
        return
    loop = asyncio.get_running_loop()
    idle = service.settings.tcp_idle
    framer = service.framer()
    try:
        deadline = loop.time() + idle
        while True:
            async with asyncio.timeout_at(deadline):
                data = await reader.read(_READ)
            if not data:
                return
            done = framer.completed
            replies = framer.feed(data)
            if framer.completed != done:
                deadline = loop.time() + idle
            if replies:
                writer.write(replies)
                async with asyncio.timeout(idle):
                    await writer.drain()
    except (TimeoutError, BadFrame, OSError):
        return
    finally:
        service.leave()
        writer.close()
