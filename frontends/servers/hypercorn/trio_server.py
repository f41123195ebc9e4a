"""Serve the ASGI app with hypercorn's trio worker until SIGTERM or SIGINT."""

from __future__ import annotations

import signal

import trio
from hypercorn.trio import serve as hypercorn_serve

from frontends.runtime.process_setup import prepare_process
from frontends.runtime.runtime import Runtime
from frontends.runtime.settings import Settings
from frontends.servers.direct.trio_streams import first_connections
from frontends.servers.hypercorn.config import hypercorn_config
from frontends.servers.hypercorn.install import TrioWorker, install
from frontends.servers.hypercorn.serving import serve_registry
from frontends.trio_app.app import PARTS, create_app
from frontends.trio_app.streams import make_hold


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
    connection, close_waiting = first_connections(runtime, config.keep_alive_timeout)
    install(TrioWorker(connection))
    await serve_registry(hypercorn_serve, app, runtime, make_hold, config, shutdown_trigger)


def serve(settings: Settings) -> None:
    """Run until a signal."""
    prepare_process(settings)
    trio.run(serve_async, settings)
