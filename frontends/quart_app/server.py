"""Serve the Quart app with hypercorn's asyncio worker until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import time
from collections.abc import Coroutine
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve

from ..shared.http1_only import Http1Only
from ..shared.hypercorn_setup import hypercorn_config
from ..shared.process_setup import prepare_process
from ..shared.runtime import Runtime
from ..shared.settings import Settings
from ..shared.watch_streams import WatchRoute
from ..shared.write_deadline import bound_asyncio_writes
from .app import PARTS, create_app
from .direct_streams import serve_watches_first
from .streams import make_hold


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def run_on(loop: str, main: Coroutine[Any, Any, None]) -> None:
    """Run `main` to the end on `loop`: `asyncio`, `uvloop`, or `auto` (uvloop when installed).

    Both asyncio servers (hypercorn's and uvicorn) pick their loop here.
    """
    use_uvloop = loop == "uvloop" or (loop == "auto" and uvloop_available())
    if use_uvloop:
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    else:
        asyncio.run(main)


async def serve_async(settings: Settings) -> None:
    runtime = Runtime(settings, PARTS, clock=time.monotonic)
    app = create_app(runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def shutdown_trigger() -> None:
        await stop.wait()
        runtime.begin_drain(exit_after=settings.shutdown_grace)

    config = hypercorn_config(settings)
    serve_watches_first(runtime, config.keep_alive_timeout, config.backlog)
    try:
        await hypercorn_serve(
            Http1Only(WatchRoute(app, runtime, make_hold)),  # type: ignore[arg-type]
            config,
            shutdown_trigger=shutdown_trigger,
        )
    finally:
        runtime.end_drain()


def serve(settings: Settings, *, loop: str = "auto") -> None:
    """Run until a signal; `loop` is `asyncio`, `uvloop`, or `auto` (uvloop when installed)."""
    prepare_process(settings)
    bound_asyncio_writes()
    run_on(loop, serve_async(settings))
