"""The Quart application on asyncio: one catch-all route into the shared request flow.

Routing, auth and every answer are decided by `shared.request_flow` and
`sd_core.HttpApi`; Quart's own routing only hands every path and method to
`dispatch`, so 404 and 405 have the same JSON shape as the API's errors and
can never be HTML. Serving starts the probe driver and the snapshot loop as
tasks. Mirrors `trio_app/app.py` name for name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable
from typing import TypeVar

from quart import Quart, Response, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from sd_core import INTERNAL_ERROR, HttpRequest, HttpResponse

from ..shared.logs import logfmt
from ..shared.request_flow import OVERSIZE_DRAIN_BYTES, BodyTimeout, BodyTooLarge, respond
from ..shared.runtime import LoopParts, Runtime
from .probe_driver import ProbeDriver
from .snapshots import snapshot_loop
from .watchers import Watchers

log = logging.getLogger("sd.registry")
PARTS = LoopParts(frontend="quart", probe_driver=ProbeDriver, watchers=Watchers)
_T = TypeVar("_T")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"]


def create_app(runtime: Runtime) -> Quart:
    """The Quart app serving `runtime` (built with `PARTS`)."""
    app = Quart(__name__)
    # Quart stops buffering past this; `read_body` drops what it reads past the limit.
    app.config["MAX_CONTENT_LENGTH"] = runtime.api.max_body_bytes + OVERSIZE_DRAIN_BYTES
    # Our own deadline (`_within`) answers first; Quart's would answer in its own shape.
    app.config["BODY_TIMEOUT"] = runtime.settings.body_timeout + 60
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    background: list[asyncio.Task[None]] = []

    @app.before_serving
    async def lifespan_startup() -> None:
        runtime.restore_state()
        background.append(asyncio.create_task(runtime.driver.run(), name="probe-driver"))
        background.append(asyncio.create_task(snapshot_loop(runtime), name="snapshots"))
        background.append(asyncio.create_task(runtime.run_cluster(), name="cluster"))

    @app.after_serving
    async def lifespan_shutdown() -> None:
        runtime.watchers.release_all()
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        runtime.final_snapshot()
        await runtime.prober.aclose()

    @app.route("/", defaults={"path": ""}, methods=METHODS, provide_automatic_options=False)
    @app.route("/<path:path>", methods=METHODS, provide_automatic_options=False)
    async def dispatch(path: str) -> Response:
        async def park(watched: str | None, seconds: float) -> bool:
            # Quart cancels this handler when the client hangs up, so it never left.
            await runtime.watchers.wait(watched, seconds)
            return True

        response = await respond(
            runtime, request.method, request.path, request.query_string, request.scope["headers"],
            _body_chunks(), park, _within,
        )  # fmt: skip
        assert response is not None  # only a disconnect ends without one, and Quart has none
        return _to_response(response)

    @app.errorhandler(HTTPException)
    async def framework_error(error: HTTPException) -> Response:
        # Quart refused the request before `dispatch` (a malformed path, say):
        # answer through the mapping so the shape is still the API's.
        if isinstance(error, RequestEntityTooLarge):
            return _to_response(runtime.too_large(request.method, request.path))
        result = runtime.handle(HttpRequest(request.method, request.path))
        if not isinstance(result, HttpResponse):  # a wait or a write: not without a body
            return _to_response(INTERNAL_ERROR)
        return _to_response(result)

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.error(logfmt("internal_error", error=type(error).__name__), exc_info=error)
        return _to_response(INTERNAL_ERROR)

    return app


async def _body_chunks() -> AsyncGenerator[bytes, None]:
    try:
        async for chunk in request.body:
            yield chunk
    except RequestEntityTooLarge:
        raise BodyTooLarge from None


async def _within(seconds: float, work: Awaitable[_T]) -> _T:
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError:
        raise BodyTimeout from None


def _to_response(response: HttpResponse) -> Response:
    return Response(response.body, status=response.status, headers=Headers(list(response.headers)))
