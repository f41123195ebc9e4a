"""Serve the Quart app with hypercorn's asyncio worker until SIGTERM or SIGINT.

The app is the registry's own (`create_app`) or one named by `serve --app`
(`quart_app.user_app`); either way it carries the guard and the registry's
paths itself (`quart_app.mount`), and hypercorn serves it as it is.
"""

from __future__ import annotations

import asyncio
import signal
import time

from hypercorn.asyncio import serve as hypercorn_serve

from frontends.quart_app.app import PARTS, create_app
from frontends.quart_app.event_loop import run_on
from frontends.quart_app.user_app import AppSource, build_app
from frontends.runtime.process_setup import prepare_process
from frontends.runtime.runtime import Runtime
from frontends.runtime.settings import Settings
from frontends.servers.direct.asyncio_streams import first_protocol
from frontends.servers.hypercorn.config import hypercorn_config
from frontends.servers.hypercorn.install import AsyncioWorker, install


async def serve_async(settings: Settings, app_source: AppSource = create_app) -> None:
    runtime = Runtime(settings, PARTS, clock=time.monotonic)
    app = build_app(app_source, runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def shutdown_trigger() -> None:
        await stop.wait()
        runtime.begin_drain(exit_after=settings.shutdown_grace)

    config = hypercorn_config(settings)
    install(AsyncioWorker(config.backlog, first_protocol(runtime, config.keep_alive_timeout)))
    try:
        # `asgi_app`, what `Quart.__call__` would await: one frame fewer per request.
        await hypercorn_serve(app.asgi_app, config, shutdown_trigger=shutdown_trigger)
    finally:
        runtime.end_drain()


def serve(settings: Settings, *, loop: str = "auto", app: AppSource = create_app) -> None:
    """Serve `app` until a signal; `loop`: `asyncio`, `uvloop`, or `auto` (uvloop if installed)."""
    prepare_process(settings)
    run_on(loop, serve_async(settings, app))
