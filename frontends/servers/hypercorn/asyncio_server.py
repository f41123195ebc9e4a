"""Serve the Quart app with hypercorn's asyncio worker until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import time

from hypercorn.asyncio import serve as hypercorn_serve

from frontends.quart_app.app import PARTS, create_app
from frontends.quart_app.event_loop import run_on
from frontends.quart_app.streams import make_hold
from frontends.runtime.process_setup import prepare_process
from frontends.runtime.runtime import Runtime
from frontends.runtime.settings import Settings
from frontends.servers.direct.asyncio_streams import first_protocol
from frontends.servers.hypercorn.config import hypercorn_config
from frontends.servers.hypercorn.install import AsyncioWorker, install
from frontends.servers.hypercorn.serving import serve_registry


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
    install(AsyncioWorker(config.backlog, first_protocol(runtime, config.keep_alive_timeout)))
    await serve_registry(hypercorn_serve, app, runtime, make_hold, config, shutdown_trigger)


def serve(settings: Settings, *, loop: str = "auto") -> None:
    """Run until a signal; `loop` is `asyncio`, `uvloop`, or `auto` (uvloop when installed)."""
    prepare_process(settings)
    run_on(loop, serve_async(settings))
