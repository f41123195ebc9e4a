"""Serving a :class:`~service_discovery.HealthChecker` as ``GET /health``.

:func:`setup_service_health_checks` mounts the endpoint on a Quart app or a
FastAPI/Starlette app, or a Flask app. The framework is recognised from the
app's class, so this module imports none of them until it has found one (a
service using Quart does not need Starlette installed, and the reverse). For
any other ASGI framework, :func:`health_asgi_app` wraps the app (or stands
alone); for any other WSGI framework (Django),
:func:`~service_discovery.health_wsgi_app`.

Healthy answers 200, unhealthy 503, both with the same JSON body, which is
what the registry's probe and most load balancers expect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import httpx

from .health import DEFAULT_CHECK_TIMEOUT, CheckFn, HealthChecker, LoadFn, checks_from_mapping
from .health_answer import health_answer
from .health_wsgi import mount_on_flask

__all__ = [
    "health_asgi_app",
    "setup_service_health_checks",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ENDPOINT_NAME = "service_discovery_health"


def setup_service_health_checks(
    app: Any,
    service_name: str,
    db_client: Any = None,
    external_services: Mapping[str, str] | None = None,
    *,
    path: str = "/health",
    checks: Mapping[str, CheckFn] | None = None,
    load_percentage: LoadFn | None = None,
    check_timeout: float = DEFAULT_CHECK_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> HealthChecker:
    """Create a :class:`HealthChecker` for the service and mount ``GET path`` on ``app``.

    * ``db_client``: checked as ``database`` by
      :func:`~service_discovery.health.database_probe`
      (``admin.command("ping")``, ``ping()``, ``execute("SELECT 1")`` or a call).
    * ``external_services``: ``name -> URL``; each is a check named ``name``
      that GETs the URL and passes on any answer below 500. A URL that is not
      ``http(s)://host...`` raises ``ValueError`` here, before anything is mounted.
    * ``checks``: more ``name -> check`` callables; add others later with
      ``checker.add_check`` or the ``@checker.check()`` decorator.

    ``app`` may be a Quart, FastAPI/Starlette or Flask app (Flask's view runs
    the checks on an event loop of its own per request, see
    :mod:`~service_discovery.health_wsgi`); anything else is a ``TypeError``
    pointing at :func:`health_asgi_app` and
    :func:`~service_discovery.health_wsgi_app`. Returns the checker.
    """
    framework = _framework_of(app)
    if framework is None:
        raise TypeError(
            f"setup_service_health_checks() supports Quart, FastAPI, Starlette and Flask "
            f"apps, not {type(app).__qualname__}; wrap other ASGI apps with "
            "health_asgi_app(), other WSGI apps (Django) with health_wsgi_app()"
        )
    checker = HealthChecker(
        service_name,
        load_percentage=load_percentage,
        check_timeout=check_timeout,
        transport=transport,
    )
    if db_client is not None:
        checker.add_database_check(db_client)
    for name, url in (external_services or {}).items():
        checker.add_http_check(name, url)
    checks_from_mapping(checker, checks)
    if framework == "quart":
        _mount_on_quart(app, checker, path)
    elif framework == "flask":
        mount_on_flask(app, checker, path, _ENDPOINT_NAME)
    else:
        _mount_on_starlette(app, checker, path)
    return checker


def _framework_of(app: Any) -> str | None:
    # Quart's app class derives from Flask's, so the first match in the MRO decides.
    for cls in type(app).__mro__:
        package = cls.__module__.partition(".")[0]
        if package in {"quart", "flask"}:
            return package
        if package in {"fastapi", "starlette"}:
            return "starlette"
    return None


def _mount_on_quart(app: Any, checker: HealthChecker, path: str) -> None:
    async def service_discovery_health() -> tuple[dict[str, Any], int]:
        result = await checker.run()
        return result.model_dump(mode="json"), result.http_status

    app.add_url_rule(
        path, endpoint=_ENDPOINT_NAME, view_func=service_discovery_health, methods=["GET"]
    )


def _mount_on_starlette(app: Any, checker: HealthChecker, path: str) -> None:
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    async def service_discovery_health(request: Request) -> JSONResponse:
        result = await checker.run()
        return JSONResponse(result.model_dump(mode="json"), status_code=result.http_status)

    # add_route (not a FastAPI decorator) works on both, and keeps the
    # endpoint out of a FastAPI app's OpenAPI schema.
    app.add_route(path, service_discovery_health, methods=["GET"], name=_ENDPOINT_NAME)


def health_asgi_app(
    checker: HealthChecker, app: ASGIApp | None = None, *, path: str = "/health"
) -> ASGIApp:
    """An ASGI app answering the health check, for frameworks without an integration.

    With ``app``: requests to exactly ``path`` get the health answer and
    everything else (other paths, websockets, lifespan) goes to ``app``.
    Without: every HTTP request gets the health answer, whatever its path, so
    it can be mounted under any prefix; lifespan events are acknowledged.
    ``GET`` and ``HEAD`` are served; other methods get ``405``.
    """

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        is_http = scope["type"] == "http"
        if app is not None and not (is_http and scope.get("path") == path):
            await app(scope, receive, send)
            return
        if is_http:
            await _answer_health(checker, scope, send)
        elif scope["type"] == "lifespan":
            await _acknowledge_lifespan(receive, send)

    return asgi


async def _answer_health(checker: HealthChecker, scope: Scope, send: Send) -> None:
    answer = await health_answer(checker, scope.get("method", "GET"))
    headers = [(name.encode(), value.encode()) for name, value in answer.headers]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


async def _acknowledge_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
