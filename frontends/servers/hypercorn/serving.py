"""What the trio entry point serves, and how a run ends.

The Quart app carries the guard and the watch route itself (`quart_app.mount`), so
its entry point serves it as it is; the plain ASGI app of trio gets them here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.config import Config

from frontends.runtime.http1_guard import Http1Only
from frontends.runtime.runtime import Runtime
from frontends.runtime.watch_streams import Hold, WatchRoute

#: hypercorn's `serve` of either worker (`hypercorn.asyncio.serve`, `hypercorn.trio.serve`).
HypercornServe = Callable[..., Awaitable[Any]]


async def serve_registry(
    serve: HypercornServe,
    app: Any,
    runtime: Runtime,
    make_hold: Callable[[float], Hold],
    config: Config,
    shutdown_trigger: Callable[[], Awaitable[None]],
) -> None:
    """Serve `app` behind the HTTP/1.1-only guard, with watch streams held by the loop's
    `make_hold`, until `shutdown_trigger` returns; the drain ends however the run ends."""
    try:
        await serve(
            Http1Only(WatchRoute(app, runtime, make_hold)),
            config,
            shutdown_trigger=shutdown_trigger,
        )
    finally:
        runtime.end_drain()
