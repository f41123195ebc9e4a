"""``GET /health`` for WSGI apps: ``health_wsgi_app`` (Django, any WSGI) and Flask.

The WSGI app is called as a WSGI server calls it (an environ, a
``start_response``), in this thread, which has no event loop: exactly a
WSGI worker's situation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment
from wsgiref.util import setup_testing_defaults

from flask import Flask

from service_discovery import HealthChecker, health_wsgi_app, setup_service_health_checks


def call(app: WSGIApplication, path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    """One request through the WSGI interface: (status line, headers, body)."""
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": method}
    setup_testing_defaults(environ)
    started: list[tuple[str, dict[str, str]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, dict(headers)))
        return lambda data: None

    body = b"".join(app(environ, start_response))
    ((status, headers),) = started
    return status, headers, body


def test_standalone_answers_every_path_and_reflects_the_checks() -> None:
    checker = HealthChecker("my-service", load_percentage=lambda: 0.25)
    app = health_wsgi_app(checker)
    for path in ["/health", "/", "/mounted/under/prefix"]:
        status, headers, body = call(app, path)
        assert status == "200 OK"
        assert headers["content-type"] == "application/json"
        assert headers["cache-control"] == "no-store"
        assert int(headers["content-length"]) == len(body)
        answer = json.loads(body)
        assert answer["status"] == "healthy" and answer["service"] == "my-service"
        assert answer["load_percentage"] == 0.25

    status, headers, body = call(app, "/health", "HEAD")
    assert status == "200 OK" and body == b"" and int(headers["content-length"]) > 0
    status, headers, _ = call(app, "/health", "POST")
    assert status == "405 Method Not Allowed" and headers["allow"] == "GET, HEAD"

    checker.add_check("database", lambda: False)  # a sync check: runs in a worker thread
    status, _, body = call(app, "/health")
    assert status == "503 Service Unavailable"
    answer = json.loads(body)
    assert answer["status"] == "unhealthy"
    assert answer["custom_checks"]["database"]["status"] == "fail"


def test_wrapping_a_django_style_app_answers_only_its_path() -> None:
    calls: list[str] = []

    def django(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        calls.append(environ["PATH_INFO"])
        start_response("204 No Content", [])
        return [b""]

    app = health_wsgi_app(HealthChecker("my-service"), django, path="/status")
    assert call(app, "/status")[0] == "200 OK"
    assert call(app, "/health")[0] == "204 No Content"
    assert call(app, "/orders")[0] == "204 No Content"
    assert calls == ["/health", "/orders"]


def test_flask_app_gets_the_endpoint() -> None:
    app = Flask(__name__)
    flag = {"ok": True}
    checker = setup_service_health_checks(
        app=app, service_name="my-service", checks={"queue": lambda: flag["ok"]}
    )
    assert checker.check_names == ["queue"]
    http = app.test_client()
    response = http.get("/health")
    assert response.status_code == 200
    assert response.json is not None and response.json["status"] == "healthy"
    flag["ok"] = False
    response = http.get("/health")
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["custom_checks"]["queue"]["status"] == "fail"
