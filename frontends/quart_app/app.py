"""The Quart application: one catch-all route into the shared HTTP mapping.

Routing, auth and every answer are decided by `sd_core.HttpApi`; Quart's own
routing only hands every path and method to `dispatch`, so 404 and 405 have
the same JSON shape as the API's errors and can never be HTML.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from quart import Quart, Response, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from sd_core import INTERNAL_ERROR, BlockingWait, HttpRequest, HttpResponse

from ..shared.logs import logfmt
from ..shared.probers import make_prober
from ..shared.runtime import OVERSIZE_DRAIN_BYTES, Runtime
from .probe_driver import Fetch, ProbeDriver, Sleep
from .snapshots import snapshot_loop
from .watchers import Watchers

log = logging.getLogger("sd.registry")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"]


def to_response(result: HttpResponse) -> Response:
    return Response(result.body, status=result.status, headers=Headers(list(result.headers)))


def create_app(
    runtime: Runtime,
    *,
    fetch: Fetch | None = None,
    sleep: Sleep | None = None,
) -> Quart:
    """Build the app around `runtime`; `fetch` and `sleep` are for driver tests."""
    app = Quart(__name__)
    # Quart stops buffering past this; `read_body` drops what it reads past the limit.
    app.config["MAX_CONTENT_LENGTH"] = runtime.api.max_body_bytes + OVERSIZE_DRAIN_BYTES
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    settings = runtime.settings
    watchers = Watchers(runtime, sleep=sleep)
    prober = make_prober(settings)
    driver = ProbeDriver(
        runtime,
        fetch or prober.probe,
        concurrency=settings.max_concurrent_probes,
        timeout=settings.registry.health_check_timeout,
        sleep=sleep,
    )
    runtime.submit_probe = driver.submit
    runtime.wake_watchers = watchers.wake
    runtime.wake_driver = driver.wake
    app.extensions["sd_runtime"] = runtime
    app.extensions["sd_watchers"] = watchers
    tasks: list[asyncio.Task[None]] = []

    @app.before_serving
    async def start_background() -> None:
        runtime.restore_state()
        tasks.append(asyncio.create_task(driver.run(), name="probe-driver"))
        tasks.append(asyncio.create_task(snapshot_loop(runtime), name="snapshots"))

    @app.after_serving
    async def stop_background() -> None:
        watchers.release_all()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        runtime.final_snapshot()
        await prober.aclose()

    async def read_body() -> bytes | None:
        """The body, or None when it passes the limit (never buffered past it).

        An oversized body is read on and dropped, up to a bound, so that the
        client gets to read the 413 (see OVERSIZE_DRAIN_BYTES).
        """
        limit = runtime.api.max_body_bytes
        if (request.content_length or 0) > limit + OVERSIZE_DRAIN_BYTES:
            return None
        body = bytearray()
        size = 0
        try:
            async for chunk in request.body:
                size += len(chunk)
                if size <= limit:
                    body += chunk
                elif size > limit + OVERSIZE_DRAIN_BYTES:
                    return None
        except RequestEntityTooLarge:
            return None
        return bytes(body) if size <= limit else None

    @app.route("/", defaults={"path": ""}, methods=METHODS, provide_automatic_options=False)
    @app.route("/<path:path>", methods=METHODS, provide_automatic_options=False)
    async def dispatch(path: str) -> Response:
        method, route_path = request.method, request.path
        refused = runtime.admit(method, route_path)
        if refused is not None:
            return to_response(refused)
        try:
            return to_response(await answer(method, route_path))
        finally:
            runtime.leave()

    async def answer(method: str, route_path: str) -> HttpResponse:
        body = await read_body()
        if body is None:
            return runtime.too_large(method, route_path)
        headers = request.headers
        # A repeated header is read as its values joined by ", " (RFC 9110),
        # so a duplicate can never pick which token or media type counts.
        authorization = ", ".join(headers.getlist("authorization")) or None
        content_type = ", ".join(headers.getlist("content-type")) or None
        call = HttpRequest(
            method, route_path, request.query_string, authorization, content_type, body
        )
        result = runtime.handle(call)
        if isinstance(result, BlockingWait):
            await watchers.wait(result.scope, runtime.jittered(result))
            result = runtime.handle(call, may_block=False)
            assert isinstance(result, HttpResponse)
        return result

    @app.errorhandler(HTTPException)
    async def framework_error(error: HTTPException) -> Response:
        # Quart refused the request before `dispatch` (a malformed path, say):
        # answer through the mapping so the shape is still the API's.
        if isinstance(error, RequestEntityTooLarge):
            return to_response(runtime.too_large(request.method, request.path))
        result = runtime.handle(HttpRequest(request.method, request.path))
        if isinstance(result, BlockingWait):  # cannot happen without a query
            return to_response(INTERNAL_ERROR)
        return to_response(result)

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.error(logfmt("internal_error", error=type(error).__name__), exc_info=error)
        return to_response(INTERNAL_ERROR)

    return app
