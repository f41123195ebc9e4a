"""The application on asyncio: the shared plain-ASGI API, with Quart for the lifespan only.

Every HTTP request is served by `runtime.asgi_api`, given this loop's half,
`CALLS`; no request reaches Quart. Why: the core answers every path (its
routes, the pages, `/openapi.json`, and 404/405 in the API's JSON shape), so
Quart's one catch-all route only added its request machinery, most of the
CPU per request on uvicorn (docs/frontends.md). Quart keeps
the lifespan: `before_serving` starts the probe driver, the snapshot loop and
the cluster as tasks, `after_serving` stops them. Mirrors `trio_app/app.py`
name for name.
"""

from __future__ import annotations

import asyncio
import contextlib

from quart import Quart

from frontends.quart_app.body_deadline import within
from frontends.quart_app.parked import ParkedQueries
from frontends.quart_app.probe_driver import ProbeDriver
from frontends.quart_app.snapshots import snapshot_loop
from frontends.runtime.asgi_api import ASGIApp, LoopCalls, Wait, api_app, disconnected
from frontends.runtime.runtime import LoopParts, Runtime
from frontends.runtime.watch_streams import Receive

PARTS = LoopParts(frontend="quart", probe_driver=ProbeDriver, watchers=ParkedQueries)


def create_app(runtime: Runtime) -> ASGIApp:
    """The ASGI callable serving `runtime` (built with `PARTS`)."""
    lifespan = Quart(__name__)
    background: list[asyncio.Task[None]] = []

    @lifespan.before_serving
    async def lifespan_startup() -> None:
        runtime.restore_state()
        background.append(asyncio.create_task(runtime.driver.run(), name="probe-driver"))
        background.append(asyncio.create_task(snapshot_loop(runtime), name="snapshots"))
        background.append(asyncio.create_task(runtime.run_cluster(), name="cluster"))

    @lifespan.after_serving
    async def lifespan_shutdown() -> None:
        runtime.watchers.release_all()
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        runtime.final_snapshot()
        await runtime.prober.aclose()

    return api_app(runtime, CALLS, lifespan)  # type: ignore[arg-type]


async def _unless_gone(wait: Wait, receive: Receive) -> bool:
    waiting = asyncio.ensure_future(wait())
    gone = asyncio.ensure_future(disconnected(receive))
    try:
        await asyncio.wait((waiting, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Cancelled, the wait unparks the query (and the watch ends) on the loop's next turn.
        waiting.cancel()
        gone.cancel()
    if waiting.cancelled() or not waiting.done():
        return False
    waiting.result()  # a watcher bug is raised here, as it would be when awaited
    return True


CALLS = LoopCalls(within=within, unless_gone=_unless_gone)
