"""``setup_service_health_checks`` on Quart and FastAPI/Starlette, and ``health_asgi_app``."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from quart import Quart
from starlette.applications import Starlette

from service_discovery import HealthChecker, health_asgi_app, setup_service_health_checks

SEED_KEYS = {"status", "service", "timestamp", "uptime_seconds", "load_percentage", "custom_checks"}


class FakeDB:
    def __init__(self) -> None:
        self.up = True

    async def ping(self) -> bool:
        return self.up


def external_transport() -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, json={"status": "ok"}))


def check_body(body: dict[str, Any], *, status: str, failed: list[str]) -> None:
    assert set(body) == SEED_KEYS
    assert body["status"] == status
    assert body["service"] == "my-service"
    assert body["timestamp"].endswith("Z")
    assert 0.0 <= body["load_percentage"] <= 1.0
    got_failed = [n for n, c in body["custom_checks"].items() if c["status"] == "fail"]
    assert got_failed == failed


def test_quart_app_healthy_then_unhealthy() -> None:
    app = Quart(__name__)
    db = FakeDB()
    checker = setup_service_health_checks(
        app=app,
        service_name="my-service",
        db_client=db,
        external_services={"payment-api": "https://payment.example.com"},
        transport=external_transport(),
        load_percentage=lambda: 0.5,
    )
    flag = {"ok": True}
    checker.add_check("queue", lambda: flag["ok"])

    async def main() -> None:
        client = app.test_client()
        response = await client.get("/health")
        assert response.status_code == 200
        assert response.content_type == "application/json"
        body = await response.get_json()
        check_body(body, status="healthy", failed=[])
        assert list(body["custom_checks"]) == ["database", "payment-api", "queue"]
        assert body["load_percentage"] == 0.5

        flag["ok"] = False
        response = await client.get("/health")
        assert response.status_code == 503
        body = await response.get_json()
        check_body(body, status="unhealthy", failed=["queue"])
        assert body["custom_checks"]["queue"]["message"] == "check returned False"

        db.up = False
        body = await (await client.get("/health")).get_json()
        check_body(body, status="unhealthy", failed=["database", "queue"])

    asyncio.run(main())


def test_quart_app_seed_call_without_extras() -> None:
    app = Quart(__name__)
    checker = setup_service_health_checks(app=app, service_name="my-service")
    assert isinstance(checker, HealthChecker)

    async def main() -> None:
        response = await app.test_client().get("/health")
        assert response.status_code == 200
        check_body(await response.get_json(), status="healthy", failed=[])

    asyncio.run(main())


async def _exercise_starlette_family(app: Any) -> None:
    def failing() -> None:
        raise RuntimeError("cache unreachable")

    checker = setup_service_health_checks(
        app=app,
        service_name="my-service",
        external_services={"payment-api": "https://payment.example.com"},
        transport=external_transport(),
        path="/healthz",
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        response = await http.get("/healthz")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        check_body(response.json(), status="healthy", failed=[])

        checker.add_check("cache", failing)
        response = await http.get("/healthz")
        assert response.status_code == 503
        body = response.json()
        check_body(body, status="unhealthy", failed=["cache"])
        assert body["custom_checks"]["cache"]["message"] == "RuntimeError: cache unreachable"
        assert (await http.post("/healthz")).status_code == 405


async def test_fastapi_app_on_trio() -> None:
    app = FastAPI()
    await _exercise_starlette_family(app)
    assert "/healthz" not in app.openapi()["paths"]


def test_fastapi_app_on_asyncio() -> None:
    asyncio.run(_exercise_starlette_family(FastAPI()))


async def test_starlette_app() -> None:
    await _exercise_starlette_family(Starlette())


def test_unknown_app_is_refused_with_a_pointer() -> None:
    with pytest.raises(TypeError, match="health_asgi_app"):
        setup_service_health_checks(app=object(), service_name="x")


async def test_asgi_app_standalone_answers_every_path() -> None:
    checker = HealthChecker("my-service", load_percentage=lambda: 0.1)
    app = health_asgi_app(checker)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        for path in ["/health", "/", "/mounted/under/prefix"]:
            response = await http.get(path)
            assert response.status_code == 200
            check_body(response.json(), status="healthy", failed=[])
        head = await http.head("/health")
        assert head.status_code == 200 and head.content == b""
        post = await http.post("/health")
        assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
        checker.add_check("down", lambda: False)
        response = await http.get("/health")
        assert response.status_code == 503
        check_body(response.json(), status="unhealthy", failed=["down"])


async def test_asgi_app_wrapping_another_app() -> None:
    calls: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    checker = HealthChecker("my-service")
    app = health_asgi_app(checker, inner, path="/status")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        assert (await http.get("/status")).status_code == 200
        assert (await http.get("/health")).status_code == 204
        assert (await http.get("/other")).status_code == 204
    assert calls == ["/health", "/other"]


async def test_asgi_app_acknowledges_lifespan() -> None:
    app = health_asgi_app(HealthChecker("x"))
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_a_bad_external_service_url_is_refused_before_mounting() -> None:
    from quart import Quart

    app = Quart("bad-url")
    with pytest.raises(ValueError, match="'not a url'"):
        setup_service_health_checks(
            app, "my-service", external_services={"payment-api": "not a url"}
        )
    assert "service_discovery_health" not in app.view_functions
