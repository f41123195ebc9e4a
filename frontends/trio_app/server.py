"""Serve the ASGI app with hypercorn's trio worker until SIGTERM or SIGINT."""

from __future__ import annotations

import signal

import trio
from hypercorn.trio import serve as hypercorn_serve

from ..shared.http1_only import Http1Only
from ..shared.hypercorn_setup import hypercorn_config
from ..shared.process_setup import prepare_process
from ..shared.runtime import Runtime
from ..shared.settings import Settings
from ..shared.watch_streams import WatchRoute
from ..shared.write_deadline import bound_trio_writes
from .app import PARTS, create_app
from .direct_streams import serve_watches_first
from .streams import make_hold


async def serve_async(settings: Settings) -> None:
    runtime = Runtime(settings, PARTS, clock=trio.current_time)
    app = create_app(runtime)

    async def shutdown_trigger() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        runtime.begin_drain(exit_after=settings.shutdown_grace)
        close_waiting()

    config = hypercorn_config(settings)
    close_waiting = serve_watches_first(runtime, config.keep_alive_timeout)
    try:
        await hypercorn_serve(
            Http1Only(WatchRoute(app, runtime, make_hold)),  # type: ignore[arg-type]
            config,
            shutdown_trigger=shutdown_trigger,
        )
    finally:
        runtime.end_drain()


def serve(settings: Settings) -> None:
    """Run until a signal."""
    prepare_process(settings)
    bound_trio_writes()
    trio.run(serve_async, settings)
