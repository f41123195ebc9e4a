"""What both hypercorn entry points serve, and how a run ends: said once for both loops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.config import Config

from frontends.runtime.runtime import Runtime
from frontends.runtime.watch_streams import Hold, WatchRoute
from frontends.servers.hypercorn.http1_only import Http1Only

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
            Http1Only(WatchRoute(app, runtime, make_hold)),  # type: ignore[arg-type]
            config,
            shutdown_trigger=shutdown_trigger,
        )
    finally:
        runtime.end_drain()
