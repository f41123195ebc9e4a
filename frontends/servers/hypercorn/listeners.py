"""Where hypercorn takes each accepted connection, replaced on both workers.

Neither worker has a hook for it. The asyncio worker calls the module-level
`asyncio.start_server`, whose accept batch equals its backlog; the trio worker
calls `hypercorn.trio.run.TCPServer` with each connection. The direct watch
streams (`servers/direct/`) need the connection's first bytes before
hypercorn, so both are replaced, here and only here, by `install.install`.
Upstream: drafted in docs/upstream.md ("A hook for accepted connections",
"asyncio's accept batch is the backlog").
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable
from typing import Any

import hypercorn.trio.run

from frontends.servers.direct.asyncio_streams import FirstProtocol
from frontends.servers.direct.trio_streams import Connection

#: How many connections asyncio accepts per readiness event of the listening socket.
ASYNCIO_ACCEPT_BATCH = 16


def accept_in_small_batches(backlog: int, first_protocol: FirstProtocol | None = None) -> None:
    """asyncio: listen with `backlog`, but accept at most `ASYNCIO_ACCEPT_BATCH` per loop turn.

    asyncio uses `start_server`'s backlog twice: for `listen()`, and as the
    number of connections it accepts in one go each time the socket is
    readable. With a backlog of thousands, a connection flood (the rapid-reset
    bench) made one loop turn accept thousands of connections while every
    established client waited: 6 of 12 probes answered on quart (16 at a
    time: all, p50 78 ms). So hypercorn
    is given the small batch, and the socket is listened again with the real
    backlog once asyncio serves it. Affects this process's `asyncio.start_server`
    only (the server process calls it once per listening socket).

    `first_protocol`, when given, makes each connection's protocol from
    hypercorn's connection callback instead of asyncio's stream protocol (the
    quart frontend's `servers.direct.asyncio_streams.FirstBytes`, which hands hypercorn's
    connections over to that callback itself).
    """
    original = getattr(asyncio.start_server, "__wrapped__", asyncio.start_server)

    @functools.wraps(original)
    async def start_server(
        connected: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> asyncio.Server:
        kwargs["backlog"] = min(ASYNCIO_ACCEPT_BATCH, backlog)
        if first_protocol is None:
            server = await original(connected, *args, **kwargs)
        else:
            loop = asyncio.get_running_loop()
            server = await loop.create_server(lambda: first_protocol(connected), *args, **kwargs)
        sock = kwargs.get("sock")  # hypercorn always hands over its own socket
        if isinstance(sock, socket.socket):
            sock.listen(backlog)
        return server

    asyncio.start_server = start_server  # type: ignore[assignment]


def hand_trio_connections_to(connection: Connection) -> None:
    """trio: have hypercorn's listener call `connection` with each new connection,
    instead of its `TCPServer` (this process).

    Fails loudly if a hypercorn upgrade no longer builds connections there.
    """
    if getattr(hypercorn.trio.run, "TCPServer", None) is None:
        raise RuntimeError(
            "hypercorn.trio.run has no TCPServer any more: re-check how its listener "
            "serves a connection before serving watch streams below it"
        )
    hypercorn.trio.run.TCPServer = connection  # type: ignore[attr-defined, assignment]
