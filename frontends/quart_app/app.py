"""The application on asyncio: a Quart app whose registry paths skip Quart.

`create_app(runtime)` is a `quart.Quart` app with the registry in it;
`mount(app, runtime)` puts the registry into a Quart app of your own. Either
way the app is the user's to extend: routes, blueprints, `before_request`
hooks, error handlers, `before_serving` tasks.

Per request, before any of Quart's machinery: a watch stream is answered by
`WatchRoute`; every other request goes through `runtime.asgi_api`, given this
loop's half `CALLS`, exactly as on trio. Where the core's head finds no route
for the path (its routes, `/openapi.json`, the pages), that request goes on
to Quart's own `asgi_app`, so to its router: the path is routed once by the
core, whoever answers it. Why the split: Quart's request machinery
(request context, Werkzeug's routing, two tasks a request) was most of the
CPU per request on uvicorn (docs/frontends.md), and the registry's answers do
not need it. A path neither serves gets the API's JSON 404 or 405 from the
handlers `mount` registers. The HTTP/1.1-only guard (`runtime.http1_guard`)
sits in front of all of it, user routes included. Mounted, the registry's
tasks (probe driver, snapshot loop, cluster, DNS) run as `before_serving` and stop
in `after_serving`. Mirrors `trio_app/app.py` name for name where it can.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import cast

from quart import Quart, Response, request
from quart.typing import ResponseReturnValue
from werkzeug.exceptions import MethodNotAllowed

from frontends.quart_app.body_deadline import within
from frontends.quart_app.dns import serve_dns
from frontends.quart_app.parked import ParkedQueries
from frontends.quart_app.probe_driver import ProbeDriver
from frontends.quart_app.snapshots import snapshot_loop
from frontends.quart_app.streams import make_hold
from frontends.runtime.asgi_api import ASGIApp, LoopCalls, Scope, Wait, disconnected, serve_api
from frontends.runtime.http1_guard import Http1Only
from frontends.runtime.runtime import LoopParts, Runtime
from frontends.runtime.watch_streams import Receive, Send, WatchRoute
from sd_core import HttpResponse
from sd_core.body import as_bytes
from sd_core.http_api import method_not_allowed, not_found

PARTS = LoopParts(frontend="quart", probe_driver=ProbeDriver, parked=ParkedQueries)
#: Where `mount` keeps the runtime in `app.extensions` (and how it knows it mounted).
EXTENSION = "service_discovery"


def create_app(runtime: Runtime) -> Quart:
    """A Quart app serving `runtime` (built with `PARTS`), ready for routes of your own."""
    return mount(Quart("service_discovery"), runtime)


def mount(app: Quart, runtime: Runtime) -> Quart:
    """Put the registry into `app` (once) and return it.

    Installs, Quart's way (`app.asgi_app` wrapped, hooks and handlers
    registered): the guard and the registry's paths in front of Quart, the
    registry's tasks in the app's serving lifespan, and the API's JSON 404 and
    405 for what no route serves (unless the app has its own handler for one).
    """
    if EXTENSION in app.extensions:
        raise RuntimeError("the registry is already mounted in this app")
    app.extensions[EXTENSION] = runtime
    first = RegistryFirst(runtime, cast(ASGIApp, app.asgi_app))
    guarded = Http1Only(WatchRoute(first, runtime, make_hold))
    app.asgi_app = guarded  # type: ignore[method-assign, assignment]  # Quart's middleware idiom
    _serve_tasks(app, runtime)
    handlers: dict[int, Callable[[Exception], Awaitable[ResponseReturnValue]]] = {
        404: _json_not_found(runtime),
        405: _json_not_allowed(runtime),
    }
    for code, handler in handlers.items():
        if code not in app.error_handler_spec[None]:
            app.register_error_handler(code, handler)
    return app


class RegistryFirst:
    """ASGI: an `http` scope goes to the registry (`asgi_api.serve_api`), all else to `other`.

    A request whose path no route of the core has goes on to `other` from
    inside `request_flow.respond`, after the core's head routed it: no path
    is matched twice. It is admitted as the registry's own requests are: it
    counts towards `SERVICE_DISCOVERY_MAX_IN_FLIGHT_REQUESTS` and gets the
    same `503 overloaded` past it, so user routes cannot take the process
    past its limit. Returns the registry's awaitable instead of awaiting it,
    so no frame of its own stays on the stack of the registry's hot paths.
    """

    def __init__(self, runtime: Runtime, other: ASGIApp) -> None:
        self.runtime = runtime
        self.other = other

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "http":
            return serve_api(self.runtime, CALLS, scope, receive, send, self.other)
        return self.other(scope, receive, send)


def _serve_tasks(app: Quart, runtime: Runtime) -> None:
    """The registry's tasks, started and stopped with the app's serving lifespan."""
    background: list[asyncio.Task[None]] = []

    @app.before_serving
    async def start_registry() -> None:
        runtime.restore_state()
        # Bound first, so a taken port fails the startup before any task starts.
        dns_sockets = None if runtime.dns is None else runtime.dns.bind(runtime.settings.host)
        background.append(asyncio.create_task(runtime.driver.run(), name="probe-driver"))
        background.append(asyncio.create_task(snapshot_loop(runtime), name="snapshots"))
        background.append(asyncio.create_task(runtime.run_cluster(), name="cluster"))
        if runtime.dns is not None and dns_sockets is not None:
            background.append(asyncio.create_task(serve_dns(runtime.dns, dns_sockets), name="dns"))

    @app.after_serving
    async def stop_registry() -> None:
        runtime.parked.release_all()
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        runtime.final_snapshot()
        await runtime.prober.aclose()


def _as_quart(runtime: Runtime, response: HttpResponse) -> Response:
    """The core's error answer as Quart's response, counted as the core counts its own."""
    runtime.count(response)
    return Response(as_bytes(response.body), status=response.status, headers=dict(response.headers))


def _json_not_found(runtime: Runtime) -> Callable[[Exception], Awaitable[Response]]:
    async def json_not_found(error: Exception) -> Response:
        return _as_quart(runtime, not_found(request.path))

    return json_not_found


def _json_not_allowed(runtime: Runtime) -> Callable[[Exception], Awaitable[Response]]:
    async def json_not_allowed(error: Exception) -> Response:
        methods = error.valid_methods if isinstance(error, MethodNotAllowed) else None
        return _as_quart(runtime, method_not_allowed(request.method, methods or (), "unknown"))

    return json_not_allowed


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
