"""Hypercorn configuration shared by both frontends."""

from __future__ import annotations

import logging

from hypercorn.config import Config

from .http1_only import refuse_http2_switch
from .hypercorn_patches import release_closed_connections
from .settings import Settings


def hypercorn_config(settings: Settings) -> Config:
    """The config both frontends serve with; also patches hypercorn (HTTP/2, closed connections)."""
    refuse_http2_switch()
    release_closed_connections()
    config = Config()
    # HTTP/1.1 only, even if TLS is ever configured (see http1_only).
    config.alpn_protocols = ["http/1.1"]
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
    # Headers larger than this are refused by hypercorn before we see them.
    config.h11_max_incomplete_size = 16 * 1024
    # How long an idle keep-alive connection is kept. (A connection the peer
    # closed is released at once: see hypercorn_patches.)
    config.keep_alive_timeout = 5
    return config
