"""Hypercorn configuration shared by both frontends."""

from __future__ import annotations

import logging
import os
import socket
import struct

from hypercorn.config import Config

from frontends.runtime.settings import Settings
from frontends.servers.hypercorn.write_deadline import WRITE_TIMEOUT_SECONDS


class ServerConfig(Config):
    """hypercorn's config, with what our patches read from it beside hypercorn's own."""

    #: Seconds one write may wait for a slow reader (see write_deadline).
    write_timeout: float = WRITE_TIMEOUT_SECONDS


def hypercorn_config(settings: Settings) -> ServerConfig:
    """The config both frontends serve with (the patches it relies on are applied by
    `install.install`)."""
    config = ServerConfig()
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
    config.h11_max_incomplete_size = settings.max_head_bytes
    # How long an idle keep-alive connection is kept, and so how long a head may
    # take. (A connection the peer closed is released at once: see patches.)
    config.keep_alive_timeout = settings.head_timeout
    config.write_timeout = settings.write_timeout
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
