"""Serving a :class:`~service_discovery.HealthChecker` from a WSGI app (Flask, Django).

:class:`~service_discovery.HealthChecker` is async (its checks run
concurrently, each with a timeout), and a WSGI request runs in a plain thread
with no event loop. So each probe runs the checks on an event loop of its
own, made for that request (``anyio.run``): nothing is shared with the
server's threads, and sync checks still run in worker threads, where their
timeout holds. A probe every few seconds makes the cost of a loop per
request (about a millisecond) irrelevant.

:func:`health_wsgi_app` wraps any WSGI app (Django's ``application``) or
stands alone; :func:`~service_discovery.setup_service_health_checks` mounts
the endpoint on a Flask app with :func:`mount_on_flask`.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import anyio

from .health import HealthChecker
from .health_answer import health_answer
from .models import HealthCheckResult

__all__ = ["health_wsgi_app"]


def check_now(checker: HealthChecker) -> HealthCheckResult:
    """Run the checks from synchronous code (a thread without an event loop)."""
    return anyio.run(checker.run)


def health_wsgi_app(
    checker: HealthChecker, app: WSGIApplication | None = None, *, path: str = "/health"
) -> WSGIApplication:
    """A WSGI app answering the health check, for Django and any other WSGI framework.

    With ``app``: requests to exactly ``path`` (``PATH_INFO``) get the health
    answer and everything else goes to ``app``. Without: every request gets
    it, whatever its path, so it can be mounted under any prefix. ``GET`` and
    ``HEAD`` are served; other methods get ``405``. The answer is the ASGI
    helper's, byte for byte.
    """

    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if app is not None and environ.get("PATH_INFO") != path:
            return app(environ, start_response)
        method = str(environ.get("REQUEST_METHOD", "GET"))
        answer = anyio.run(health_answer, checker, method)
        start_response(f"{answer.status} {HTTPStatus(answer.status).phrase}", answer.headers)
        return [answer.body]

    return wsgi


def mount_on_flask(app: Any, checker: HealthChecker, path: str, endpoint: str) -> None:
    """``GET path`` on a Flask app: a sync view that runs the checks per request."""

    def service_discovery_health() -> tuple[dict[str, Any], int]:
        result = check_now(checker)
        return result.model_dump(mode="json"), result.http_status

    app.add_url_rule(path, endpoint=endpoint, view_func=service_discovery_health, methods=["GET"])
