"""Serve the Quart app with uvicorn (httptools, uvloop when installed): `--server uvicorn`.

An option beside hypercorn, the default: uvicorn's httptools parser and its
leaner response path answer the hot paths with less CPU (docs/performance.md).
The same app (guard included, see `quart_app.mount`) and settings as
`hypercorn/asyncio_server.py`: `Http1Only` in front (uvicorn
speaks no HTTP/2 at all: `Upgrade: h2c` is ignored, and a `PRI` preface gets the
same `400 http_version_not_supported` as on hypercorn, see `http1`), the
bind or `--fd`, SIGTERM/SIGINT draining first, then `SHUTDOWN_GRACE_SECONDS`
for what is in flight, and our log format (uvicorn's loggers propagate to
ours; no access log). uvicorn closes a connection the peer closed at once, so
its fd is never held idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import signal
import time
from collections.abc import Callable, Iterator

import uvicorn

from frontends.quart_app.app import PARTS, create_app
from frontends.quart_app.event_loop import run_on
from frontends.quart_app.user_app import AppSource, build_app
from frontends.runtime.process_setup import Throttle, prepare_process
from frontends.runtime.runtime import Runtime
from frontends.runtime.settings import Settings
from frontends.servers.direct.asyncio_streams import uvicorn_first_bytes
from frontends.servers.uvicorn.http1 import Http1OnlyProtocol
from frontends.servers.uvicorn.install import install

#: What `/health` reports as `frontend` under uvicorn.
FRONTEND = "quart-uvicorn"
UVICORN_PARTS = dataclasses.replace(PARTS, frontend=FRONTEND)


class _Server(uvicorn.Server):
    """uvicorn's server, with our signal handling: drain first, exit 0 after.

    uvicorn's own `capture_signals` re-raises the signal once it has stopped,
    which would end the process by SIGTERM instead of with exit code 0.
    """

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self._runtime = runtime

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop)
        try:
            yield
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    def _stop(self) -> None:
        if self.should_exit:
            self.force_exit = True
            return
        self._runtime.begin_drain()
        self.should_exit = True


def connection_protocol(settings: Settings) -> Callable[..., Http1OnlyProtocol]:
    """What makes each connection's protocol: the server's bounds, and one
    malformed-request log throttle shared by every connection."""
    return functools.partial(
        Http1OnlyProtocol,
        max_head_bytes=settings.max_head_bytes,
        write_timeout=settings.write_timeout,
        malformed_log=Throttle(settings.error_log_interval),
    )


def uvicorn_config(settings: Settings, app: object, runtime: Runtime) -> uvicorn.Config:
    bind: dict[str, object]
    if settings.fd is not None:
        bind = {"fd": settings.fd}
    else:
        bind = {"host": settings.host, "port": settings.port}
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        **bind,  # type: ignore[arg-type]
        loop="none",  # the loop is chosen in `serve`
        # Connections whose first request opens a watch stream are served below
        # uvicorn, as below hypercorn (`servers/direct`); the others by this protocol.
        http=uvicorn_first_bytes(runtime, settings.head_timeout, connection_protocol(settings)),  # type: ignore[arg-type]
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=False,
        # Nothing reads the client address or scheme that X-Forwarded-* would
        # rewrite (hypercorn does not either); the middleware cost ~2 % a request.
        proxy_headers=False,
        server_header=False,
        # (typed as whole seconds, used as any: a fraction is kept)
        timeout_keep_alive=settings.head_timeout,  # type: ignore[arg-type]
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace)),
    )


async def serve_async(settings: Settings, app_source: AppSource = create_app) -> None:
    runtime = Runtime(settings, UVICORN_PARTS, clock=time.monotonic)
    app = build_app(app_source, runtime)
    # `asgi_app`, what `Quart.__call__` would await: one frame fewer per request.
    await _Server(uvicorn_config(settings, app.asgi_app, runtime), runtime).serve()


def serve(settings: Settings, *, loop: str = "auto", app: AppSource = create_app) -> None:
    """Run `app` until a signal; `loop` and `app` as for `hypercorn.asyncio_server.serve`."""
    install()
    prepare_process(settings)
    run_on(loop, serve_async(settings, app))
