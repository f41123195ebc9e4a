"""Hypercorn configuration shared by both frontends."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from hypercorn.config import Config

from frontends.runtime.settings import Settings
from frontends.servers.hypercorn.http1_only import refuse_http2_switch
from frontends.servers.hypercorn.patches import (
    release_closed_connections,
    restart_idle_timers_at_once,
    spare_connections_with_waiting_requests,
)
from frontends.servers.hypercorn.request_heads import MAX_HEAD_BYTES, bound_hypercorn_heads
from frontends.servers.hypercorn.streams import streams_hear_clients_leave


def hypercorn_config(settings: Settings) -> Config:
    """The config both frontends serve with; also patches hypercorn (HTTP/2, closed
    connections, trio's keep-alive timer, request heads, streams' connections)."""
    refuse_http2_switch()
    bound_hypercorn_heads()
    streams_hear_clients_leave()
    release_closed_connections()
    restart_idle_timers_at_once()
    spare_connections_with_waiting_requests()
    config = Config()
    # HTTP/1.1 only, even if TLS is ever configured (see http1_only).
    config.alpn_protocols = ["http/1.1"]
    config.backlog = listen_backlog(settings)
    if settings.fd is not None:
        config.bind = [f"fd://{settings.fd}"]
    else:
        host = settings.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        config.bind = [f"{host}:{settings.port}"]
    config.accesslog = None
    # Hypercorn's errors go through our log format, once (its default adds a
    # second stderr handler of its own).
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = settings.shutdown_grace
    # Heads larger than this are refused by hypercorn before we see them, whole
    # or in pieces (see request_heads).
    config.h11_max_incomplete_size = MAX_HEAD_BYTES
    # How long an idle keep-alive connection is kept. (A connection the peer
    # closed is released at once: see hypercorn_patches.)
    config.keep_alive_timeout = 5
    return config


def listen_backlog(settings: Settings) -> int:
    """`SERVICE_DISCOVERY_BACKLOG`, or an inherited socket's backlog when that is larger.

    Hypercorn calls `listen()` again on every socket it serves, an inherited
    `--fd` one included, with its own default of 100: a supervisor that
    listened with 4,096 would see its queue cut to 100 without a word. (The
    kernel caps any backlog at `net.core.somaxconn`.)
    """
    inherited = inherited_backlog(settings.fd) if settings.fd is not None else None
    return max(settings.backlog, inherited or 0)


def inherited_backlog(fd: int) -> int | None:
    """The backlog socket `fd` listens with (Linux TCP_INFO), or None when it cannot be told.

    For a listening TCP socket the kernel reports its backlog in `tcpi_sacked`.
    """
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    with sock:
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        except (OSError, AttributeError):  # not TCP, or not Linux
            return None
    if len(info) < 32 or info[0] != _TCP_LISTEN:
        return None
    backlog: int = struct.unpack_from("I", info, 28)[0]
    return backlog


_TCP_LISTEN = 10  # tcpi_state of a listening socket (include/net/tcp_states.h)


#: How many connections asyncio accepts per readiness event of the listening socket.
ASYNCIO_ACCEPT_BATCH = 16


#: Makes a connection's first protocol from `start_server`'s callback.
FirstProtocol = Callable[[Callable[..., Any]], asyncio.Protocol]


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
    quart frontend's `direct_streams.FirstBytes`, which hands hypercorn's
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
