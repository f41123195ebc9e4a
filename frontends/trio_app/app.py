"""The ASGI application on trio: the shared plain-ASGI API plus a lifespan of its own.

No framework: `runtime.asgi_api` serves every request (on either loop), given
this loop's half, `CALLS`. The lifespan owns the nursery the probe driver and
the snapshot loop (and the DNS sockets) run in. Mirrors `quart_app/app.py` name for name.
"""

from __future__ import annotations

import logging

import trio

from frontends.runtime.asgi_api import ASGIApp, LoopCalls, Scope, Wait, api_app, disconnected
from frontends.runtime.logs import logfmt
from frontends.runtime.runtime import LoopParts, Runtime
from frontends.runtime.watch_streams import Receive, Send
from frontends.trio_app.body_deadline import within
from frontends.trio_app.dns import serve_dns
from frontends.trio_app.parked import ParkedQueries
from frontends.trio_app.probe_driver import ProbeDriver
from frontends.trio_app.snapshots import snapshot_loop

log = logging.getLogger("sd.registry")
PARTS = LoopParts(frontend="trio", probe_driver=ProbeDriver, parked=ParkedQueries)


def create_app(runtime: Runtime) -> ASGIApp:
    """The ASGI callable serving `runtime` (built with `PARTS`)."""

    async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" or (await receive())["type"] != "lifespan.startup":
            return
        try:
            runtime.restore_state()
            dns_sockets = None if runtime.dns is None else runtime.dns.bind(runtime.settings.host)
        except Exception as error:  # fail startup loudly rather than serve half a registry
            log.exception(logfmt("startup_failed", error=type(error).__name__))
            await send({"type": "lifespan.startup.failed", "message": str(error)[:200]})
            return
        async with trio.open_nursery() as background:
            await background.start(runtime.driver.run)
            background.start_soon(snapshot_loop, runtime)
            background.start_soon(runtime.run_cluster)
            if runtime.dns is not None and dns_sockets is not None:
                background.start_soon(serve_dns, runtime.dns, dns_sockets)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            runtime.parked.release_all()
            background.cancel_scope.cancel()
        runtime.final_snapshot()
        await runtime.prober.aclose()
        await send({"type": "lifespan.shutdown.complete"})

    return api_app(runtime, CALLS, lifespan)


async def _unless_gone(wait: Wait, receive: Receive) -> bool:
    gone = False
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            nonlocal gone
            await disconnected(receive)
            gone = True
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        await wait()
        nursery.cancel_scope.cancel()
    return not gone


CALLS = LoopCalls(within=within, unless_gone=_unless_gone)
