"""The HTTP path of both apps, in process: httpx's ASGI transport on the app's own loop.

The same client code drives the Quart app (on asyncio) and the plain ASGI app
(on trio), each on its kit's fake clock, so blocking queries and the probe
driver started by the ASGI lifespan run without real waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from frontend_kit import (
    KITS,
    READ_TOKEN,
    SECRET,
    ASGIApp,
    AsyncioKit,
    Group,
    Kit,
    TrioKit,
    http_client,
    make_runtime,
    register_body,
)

from conformance.client import INSTANCE_KEYS
from frontends.runtime.runtime import Runtime
from sd_core import ProbePassed, ProbeResult, RunProbe

AUTH = {"authorization": f"Bearer {SECRET}"}
READ_AUTH = {"authorization": f"Bearer {READ_TOKEN}"}
JSON_POST = {**AUTH, "content-type": "application/json"}
EXACT = 1e-9
LIMIT = 1024  # SERVICE_DISCOVERY_MAX_BODY_BYTES in the size tests


def run_http(
    make_kit: Callable[[], Kit],
    body: Callable[[Kit, Group, Runtime, httpx.AsyncClient], Awaitable[None]],
    **env: str,
) -> None:
    """Run `body(kit, group, runtime, client)` against a fresh app of the kit's frontend."""

    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit, **env)
        app = kit.make_app(runtime)
        async with http_client(app) as client:
            await body(kit, group, runtime, client)
        # Every request admitted was let go again, whatever its answer.
        assert runtime.counters.in_flight == 0

    make_kit().run(scenario)


async def index_of(client: httpx.AsyncClient, path: str) -> str:
    """The X-Discovery-Index a read of `path` answers with now: where a blocking query starts."""
    response = await client.get(path, headers=AUTH)
    index: str = response.headers["x-discovery-index"]
    return index


def park(
    kit: Kit, group: Group, client: httpx.AsyncClient, blocking: str, count: int = 1
) -> list[tuple[float, int]]:
    """Start `count` watchers on the blocking query `blocking`; each appends (when, status)
    to the list returned once it is answered."""
    answered: list[tuple[float, int]] = []

    async def watch() -> None:
        response = await client.get(blocking, headers=AUTH)
        answered.append((kit.clock(), response.status_code))

    for _ in range(count):
        group.start_soon(watch)
    return answered


def error_of(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["success"] is False
    assert isinstance(document["message"], str) and document["message"]
    return str(document["error"])


# ------------------------------------------------------------ 404 / 405


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/",
        "/v1/discovery/services/",
        "/v1/discovery/services/a/b/c",
        "/v1/discovery/unregister/only-service",
        "/V1/discovery/services",
        "/health/",
    ],
)
def test_an_unknown_path_is_404_json(make_kit: Callable[[], Kit], path: str) -> None:
    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        for headers in ({}, AUTH):
            response = await client.get(path, headers=headers)
            assert response.status_code == 404
            assert response.json() == {
                "success": False,
                "error": "not_found",
                "message": f"No such endpoint: {path}",
            }
            assert response.headers["content-type"] == "application/json"
            assert "x-discovery-index" not in response.headers

    run_http(make_kit, body)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/health", "GET"),
        ("DELETE", "/metrics", "GET"),
        ("PUT", "/openapi.json", "GET"),
        ("GET", "/v1/discovery/register", "POST"),
        ("PUT", "/v1/discovery/heartbeat", "POST"),
        ("POST", "/v1/discovery/services", "GET"),
        ("PATCH", "/v1/discovery/services/svc", "GET"),
        ("DELETE", "/v1/discovery/services/svc/healthy", "GET"),
        ("POST", "/v1/discovery/services/svc/instances", "GET"),
        ("TRACE", "/v1/discovery/prometheus", "GET"),
        ("GET", "/v1/discovery/unregister/svc/i-1", "DELETE"),
        ("OPTIONS", "/v1/discovery/register", "POST"),
        ("HEAD", "/health", "GET"),
    ],
)
def test_a_wrong_method_is_405_with_allow(
    make_kit: Callable[[], Kit], method: str, path: str, allow: str
) -> None:
    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        response = await client.request(method, path, headers=AUTH)
        assert response.status_code == 405
        assert response.headers["allow"] == allow
        assert response.headers["content-type"] == "application/json"
        if method != "HEAD":  # a HEAD answer has no body to read
            assert error_of(response) == "method_not_allowed"

    run_http(make_kit, body)


# ------------------------------------------------------------------ 413


def exactly(size: int) -> bytes:
    """A valid registration padded with an ignored field to exactly `size` bytes."""
    head = register_body("svc", "padded")[:-1] + b', "pad": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


class Chunks(httpx.AsyncByteStream):
    """A request body sent in 100-byte pieces (an iterator, not an async generator,
    so a body the app stops reading early leaves nothing to finalize)."""

    def __init__(self, data: bytes, size: int = 100) -> None:
        self._pieces = [data[i : i + size] for i in range(0, len(data), size)]

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> bytes:
        if not self._pieces:
            raise StopAsyncIteration
        return self._pieces.pop(0)


SENDS = ["content-length", "streamed", "understated-length"]


async def post(
    client: httpx.AsyncClient, path: str, data: bytes, send: str, headers: dict[str, str]
) -> httpx.Response:
    if send == "content-length":
        return await client.post(path, content=data, headers=headers)
    if send == "streamed":  # chunked: no Content-Length at all
        headers = {**headers, "transfer-encoding": "chunked"}
    else:  # a Content-Length that lies: the bytes read must still be counted
        headers = {**headers, "content-length": "10"}
    request = httpx.Request(
        "POST", client.base_url.join(path), headers=headers, stream=Chunks(data)
    )
    return await client.send(request)


@pytest.mark.parametrize("send", SENDS)
def test_a_body_over_the_limit_is_413_before_auth(make_kit: Callable[[], Kit], send: str) -> None:
    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        too_big = exactly(LIMIT + 1)
        for headers in (JSON_POST, {"content-type": "application/json"}):  # with and without auth
            response = await post(client, "/v1/discovery/register", too_big, send, headers)
            if send != "content-length" and "authorization" not in headers:
                # Only a Content-Length tells the size before the body is
                # read, and an anonymous body is never read (docs/api.md).
                assert response.status_code == 401
                continue
            assert response.status_code == 413
            assert error_of(response) == "payload_too_large"
        assert runtime.registry.instance_count == 0
        # Path and method are still checked first.
        response = await post(client, "/v1/discovery/nope", too_big, send, JSON_POST)
        assert response.status_code == 404
        response = await post(client, "/health", too_big, send, JSON_POST)
        assert response.status_code == 405

    run_http(make_kit, body, SERVICE_DISCOVERY_MAX_BODY_BYTES=str(LIMIT))


@pytest.mark.parametrize("send", ["content-length", "streamed"])
def test_a_body_of_exactly_the_limit_is_accepted(make_kit: Callable[[], Kit], send: str) -> None:
    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        data = exactly(LIMIT)
        assert len(data) == LIMIT
        response = await post(client, "/v1/discovery/register", data, send, JSON_POST)
        assert response.status_code == 200, response.text
        assert runtime.registry.instance_count == 1

    run_http(make_kit, body, SERVICE_DISCOVERY_MAX_BODY_BYTES=str(LIMIT))


# ------------------------------------------------------------ round trip


def test_register_read_heartbeat_unregister_round_trip(make_kit: Callable[[], Kit]) -> None:
    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/discovery/services/game", headers=AUTH)
        assert response.status_code == 404
        assert error_of(response) == "service_not_found"
        assert response.headers["x-discovery-index"] == "1"

        data = register_body(
            "game", "game-1", port=8080, metadata={"version": "1.0.0"}, load_percentage=0.25
        )
        response = await client.post("/v1/discovery/register", content=data, headers=JSON_POST)
        assert response.status_code == 200
        assert response.json() == {
            "success": True,
            "message": "Service game:game-1 registered successfully",
            "ttl_seconds": 86400,  # frontend_kit's TTL
        }

        response = await client.get("/v1/discovery/services/game", headers=AUTH)
        assert response.status_code == 200
        index = int(response.headers["x-discovery-index"])
        assert index > 1
        document = response.json()
        assert document["service_name"] == "game"
        [instance] = document["instances"]
        assert list(instance) == INSTANCE_KEYS
        assert instance["instance_id"] == "game-1"
        assert instance["host"] == "127.0.0.1"
        assert instance["port"] == 8080
        assert instance["health_endpoint"] == "/health"
        assert instance["status"] == "unknown"
        assert instance["last_health_check"] is None
        assert instance["load_percentage"] == 0.25
        assert instance["metadata"] == {"version": "1.0.0"}
        assert instance["registered_at"] == instance["last_heartbeat"]
        assert instance["registered_at"].endswith("Z")

        response = await client.get("/v1/discovery/services", headers=READ_AUTH)
        assert response.json() == {"services": {"game": [instance]}}
        response = await client.get("/v1/discovery/services/game/healthy", headers=AUTH)
        assert response.json() == {"service_name": "game", "healthy_instances": []}
        response = await client.get("/v1/discovery/services/game/instances", headers=AUTH)
        assert response.json() == [
            {
                "targets": ["127.0.0.1:8080"],
                "labels": {
                    "instance": "game-1",
                    "service_name": "game",
                    "status": "unknown",
                    "load_percentage": "0.25",
                    "version": "1.0.0",
                },
            }
        ]

        await kit.sleep(7.5)
        response = await client.post(
            "/v1/discovery/heartbeat",
            json={"service_name": "game", "instance_id": "game-1"},
            headers=AUTH,
        )
        assert response.status_code == 200
        assert response.json() == {"success": True, "message": "Heartbeat updated successfully"}
        response = await client.get("/v1/discovery/services/game", headers=AUTH)
        [after] = response.json()["instances"]
        assert after["last_heartbeat"] != after["registered_at"]
        assert int(response.headers["x-discovery-index"]) == index  # a heartbeat raises nothing

        response = await client.delete("/v1/discovery/unregister/game/game-1", headers=AUTH)
        assert response.status_code == 200
        assert response.json() == {"success": True, "message": "Service unregistered successfully"}
        response = await client.get("/v1/discovery/services/game", headers=AUTH)
        assert response.status_code == 404
        assert int(response.headers["x-discovery-index"]) > index
        response = await client.delete("/v1/discovery/unregister/game/game-1", headers=AUTH)
        assert response.status_code == 404
        assert error_of(response) == "instance_not_found"

    run_http(make_kit, body)


@pytest.mark.parametrize(
    ("headers", "method", "status", "error"),
    [
        ({}, "GET", 401, "unauthorized"),
        ({"authorization": "Basic abc"}, "GET", 401, "unauthorized"),
        ({"authorization": "Bearer wrong"}, "POST", 401, "unauthorized"),
        (READ_AUTH, "POST", 403, "forbidden"),
        (READ_AUTH, "GET", 200, None),
    ],
)
def test_tokens_are_checked_by_both_apps(
    make_kit: Callable[[], Kit],
    headers: dict[str, str],
    method: str,
    status: int,
    error: str | None,
) -> None:
    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        if method == "GET":
            response = await client.get("/v1/discovery/services", headers=headers)
        else:
            response = await client.post(
                "/v1/discovery/register",
                content=register_body("svc", "i-1"),
                headers={**headers, "content-type": "application/json"},
            )
        assert response.status_code == status
        if error is not None:
            assert error_of(response) == error
        if status == 401:
            assert response.headers["www-authenticate"] == "Bearer"
        assert runtime.registry.instance_count == 0

    run_http(make_kit, body)


def test_open_endpoints_need_no_token(make_kit: Callable[[], Kit]) -> None:
    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        await kit.sleep(12.5)
        health = await client.get("/health")
        assert health.status_code == 200
        document = health.json()
        assert document["frontend"] == kit.frontend
        assert document["uptime_seconds"] == 12.5
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'sd_http_requests_total{route="/health",status="200"} 1.0' in metrics.text
        openapi = await client.get("/openapi.json")
        assert openapi.status_code == 200
        assert "openapi" in openapi.json()

    run_http(make_kit, body)


# ----------------------------------------------------------- blocking queries


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        ("/v1/discovery/services/svc", "svc"),
        ("/v1/discovery/services/svc/healthy", "svc"),
        ("/v1/discovery/services", None),
        ("/v1/discovery/prometheus", None),
    ],
)
def test_a_blocking_query_is_woken_by_a_registration(
    make_kit: Callable[[], Kit], path: str, scope: str | None
) -> None:
    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        await client.post(
            "/v1/discovery/register", content=register_body("svc", "i-0"), headers=JSON_POST
        )
        index = int(await index_of(client, path))
        start = kit.clock()
        answered: list[tuple[float, httpx.Response]] = []

        async def watch() -> None:
            response = await client.get(f"{path}?index={index}&wait=30s", headers=AUTH)
            answered.append((kit.clock() - start, response))

        group.start_soon(watch)
        await kit.sleep(2)
        assert answered == []
        assert runtime.counters.parked_queries == 1
        if scope is not None:  # a change to another service leaves a service watch parked
            await client.post(
                "/v1/discovery/register", content=register_body("other", "o-1"), headers=JSON_POST
            )
            await kit.sleep(1)
            assert answered == []
        await kit.sleep(2)
        await client.post(
            "/v1/discovery/register", content=register_body("svc", "i-1"), headers=JSON_POST
        )
        await kit.sleep(1)
        [(elapsed, response)] = answered
        assert elapsed == pytest.approx(5 if scope is not None else 4, abs=EXACT)
        assert response.status_code == 200
        assert int(response.headers["x-discovery-index"]) > index
        if not path.endswith("/healthy"):  # i-1 is still unknown, so not listed as healthy
            assert "i-1" in response.text
        assert runtime.counters.parked_queries == 0

    run_http(make_kit, body)


def test_a_blocking_query_without_change_answers_after_wait_plus_jitter(
    make_kit: Callable[[], Kit],
) -> None:
    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        index = await index_of(client, "/v1/discovery/services/svc")
        start = kit.clock()
        response = await client.get(
            f"/v1/discovery/services/svc?index={index}&wait=16s", headers=AUTH
        )
        elapsed = kit.clock() - start
        assert 16 <= elapsed <= 17  # at most wait/16 of jitter
        assert response.status_code == 404
        assert response.headers["x-discovery-index"] == index

    run_http(make_kit, body)


def test_draining_refuses_writes_and_releases_parked_queries(make_kit: Callable[[], Kit]) -> None:
    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        index = await index_of(client, "/v1/discovery/services")
        blocking = f"/v1/discovery/services?index={index}"
        answered = park(kit, group, client, blocking)
        await kit.sleep(3)
        assert answered == []
        # What both servers' shutdown triggers do (it releases parked queries too):
        runtime.begin_drain()
        stopped = kit.clock()
        await kit.sleep(0.5)
        assert answered == [(pytest.approx(stopped, abs=EXACT), 200)]
        response = await client.post(
            "/v1/discovery/register", content=register_body("svc", "i-1"), headers=JSON_POST
        )
        assert response.status_code == 503
        assert error_of(response) == "shutting_down"
        # Reads still answer, at once.
        response = await client.get(blocking, headers=AUTH)
        assert response.status_code == 200
        assert kit.clock() == stopped + 0.5

    run_http(make_kit, body)


def test_past_the_in_flight_limit_requests_get_503_overloaded(make_kit: Callable[[], Kit]) -> None:
    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        index = await index_of(client, "/v1/discovery/services/svc")
        blocking = f"/v1/discovery/services/svc?index={index}&wait=30s"
        answered = park(kit, group, client, blocking, count=2)
        await kit.sleep(1)
        assert runtime.counters.in_flight == 2
        for method, path in (("GET", "/health"), ("POST", "/v1/discovery/register")):
            response = await client.request(method, path, headers=JSON_POST, content=b"{}")
            assert response.status_code == 503
            assert error_of(response) == "overloaded"
            assert response.headers["retry-after"] == "1"
        response = await client.get("/nope")  # still 503: the limit comes before routing
        assert response.status_code == 503
        await kit.sleep(33)  # 30 s plus at most 30/16 s of jitter
        assert [status for _, status in answered] == [404, 404]
        assert runtime.counters.in_flight == 0
        response = await client.get("/health")
        assert response.status_code == 200

    run_http(make_kit, body, SERVICE_DISCOVERY_MAX_IN_FLIGHT_REQUESTS="2")


def test_past_the_blocking_query_limit_a_blocking_query_gets_503(
    make_kit: Callable[[], Kit],
) -> None:
    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        index = await index_of(client, "/v1/discovery/services")
        blocking = f"/v1/discovery/services?index={index}&wait=30s"
        answered = park(kit, group, client, blocking)
        await kit.sleep(1)
        assert runtime.counters.parked_queries == 1
        start = kit.clock()
        response = await client.get(blocking, headers=AUTH)
        assert kit.clock() == start  # refused at once, not parked
        assert response.status_code == 503
        assert error_of(response) == "overloaded"
        response = await client.get("/v1/discovery/services", headers=AUTH)  # not blocking
        assert response.status_code == 200
        await kit.sleep(33)  # 30 s plus at most 30/16 s of jitter
        assert [status for _, status in answered] == [200]
        assert runtime.counters.parked_queries == 0

    run_http(make_kit, body, SERVICE_DISCOVERY_MAX_BLOCKING_QUERIES="1")


# ------------------------------------------------------------- 500


def test_an_unexpected_error_is_a_plain_500(
    make_kit: Callable[[], Kit], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)

    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        def broken(services: frozenset[str]) -> None:
            raise RuntimeError("watchers exploded")

        runtime.parked.wake = broken  # type: ignore[method-assign]  # fails after the core call, outside its guard
        response = await client.post(
            "/v1/discovery/register", content=register_body("svc", "i-1"), headers=JSON_POST
        )
        assert response.status_code == 500
        assert response.json() == {
            "success": False,
            "error": "internal_error",
            "message": "Internal server error",
        }
        assert "watchers exploded" not in response.text

    run_http(make_kit, body)
    assert any("internal_error" in r.getMessage() and r.exc_info for r in caplog.records)


# ---------------------------------------------------------- lifespan


class Lifespan:
    """Drive an app's ASGI lifespan by hand: startup runs the probe driver, shutdown stops it."""

    def __init__(self, kit: Kit, app: ASGIApp) -> None:
        self._app = app
        self._started = kit.event()
        self._stop = kit.event()
        self._stopped = kit.event()
        self._asked_startup = False
        self.sent: list[str] = []

    async def _receive(self) -> dict[str, Any]:
        if not self._asked_startup:
            self._asked_startup = True
            return {"type": "lifespan.startup"}
        await self._stop.wait()
        return {"type": "lifespan.shutdown"}

    async def _send(self, message: dict[str, Any]) -> None:
        kind = str(message["type"])
        self.sent.append(kind)
        if kind.startswith("lifespan.startup."):
            self._started.set()
        elif kind.startswith("lifespan.shutdown."):
            self._stopped.set()

    async def start(self, group: Group) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        group.start_soon(self._app, scope, self._receive, self._send)
        await self._started.wait()
        assert self.sent == ["lifespan.startup.complete"]

    async def stop(self) -> None:
        self._stop.set()
        await self._stopped.wait()
        assert self.sent[-1] == "lifespan.shutdown.complete"


def test_the_lifespan_runs_the_probe_driver_and_shutdown_stops_it(
    make_kit: Callable[[], Kit],
) -> None:
    probed: list[float] = []

    async def scenario(kit: Kit, group: Group) -> None:
        async def fetch(probe: RunProbe) -> ProbeResult:
            probed.append(kit.clock())
            return ProbePassed(probe.service_name, probe.instance_id, probe.generation, load=0.5)

        runtime = make_runtime(kit, fetch)
        app = kit.make_app(runtime)
        lifespan = Lifespan(kit, app)
        await lifespan.start(group)
        async with http_client(app) as client:
            response = await client.post(
                "/v1/discovery/register", content=register_body("svc", "i-1"), headers=JSON_POST
            )
            assert response.status_code == 200
            await kit.sleep(25)
            assert len(probed) in (2, 3)
            response = await client.get("/v1/discovery/services/svc/healthy", headers=AUTH)
            [instance] = response.json()["healthy_instances"]
            assert instance["load_percentage"] == 0.5
            index = response.headers["x-discovery-index"]

            answered: list[float] = []

            async def watch() -> None:
                await client.get(f"/v1/discovery/services/svc?index={index}", headers=AUTH)
                answered.append(kit.clock())

            group.start_soon(watch)
            await kit.sleep(1)
            assert answered == []
            stopped = kit.clock()
            await lifespan.stop()  # releases parked queries and cancels the driver
            await kit.sleep(0.5)
            assert answered == [pytest.approx(stopped, abs=EXACT)]
            count = len(probed)
            await kit.sleep(100)
            assert len(probed) == count

    make_kit().run(scenario)


# ------------------------------------------------------ same bytes on both


def transcript_of(make_kit: Callable[[], Kit]) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    """Status, headers and body of a fixed request script, on a fixed fake clock."""
    out: list[tuple[int, list[tuple[str, str]], bytes]] = []

    async def body(kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient) -> None:
        requests: list[tuple[str, str, dict[str, str], bytes | None]] = [
            ("GET", "/nope", {}, None),
            ("POST", "/health", {}, None),
            ("GET", "/v1/discovery/services", {}, None),
            ("GET", "/v1/discovery/services", READ_AUTH, None),
            ("POST", "/v1/discovery/register", {**READ_AUTH, "content-type": "application/json"},
             b"{}"),
            ("POST", "/v1/discovery/register", {**AUTH, "content-type": "text/plain"}, b"{}"),
            ("POST", "/v1/discovery/register", JSON_POST, b"{not json"),
            ("POST", "/v1/discovery/register", JSON_POST, b'{"port": "80"}'),
            ("POST", "/v1/discovery/register", JSON_POST, exactly(LIMIT + 1)),
            ("POST", "/v1/discovery/register", JSON_POST,
             register_body("game", "g-1", metadata={"app-version": "2"})),
            ("POST", "/v1/discovery/register", JSON_POST, register_body("game", "g-2")),
            ("GET", "/v1/discovery/services", AUTH, None),
            ("GET", "/v1/discovery/services/game", AUTH, None),
            ("GET", "/v1/discovery/services/game/healthy", AUTH, None),
            ("GET", "/v1/discovery/services/game/instances", AUTH, None),
            ("GET", "/v1/discovery/prometheus", AUTH, None),
            ("GET", "/v1/discovery/services/game?index=abc", AUTH, None),
            ("GET", "/v1/discovery/services/game?index=999", AUTH, None),
            ("POST", "/v1/discovery/heartbeat", JSON_POST,
             b'{"service_name": "game", "instance_id": "g-9"}'),
            ("DELETE", "/v1/discovery/unregister/game/g-2", AUTH, None),
            ("GET", "/v1/discovery/services/missing", AUTH, None),
            ("GET", "/v1/discovery/services/caf%C3%A9", AUTH, None),
            ("GET", "/v1/discovery/services/a%20b/healthy", AUTH, None),
            ("GET", "/v1/discovery/services?index=1&index=2&wait=1s", AUTH, None),
        ]  # fmt: skip
        for method, path, headers, data in requests:
            await kit.sleep(1.25)
            response = await client.request(method, path, headers=headers, content=data)
            out.append((response.status_code, sorted(response.headers.items()), response.content))

    run_http(make_kit, body, SERVICE_DISCOVERY_MAX_BODY_BYTES=str(LIMIT))
    return out


def test_both_apps_answer_a_request_script_identically() -> None:
    transcripts = {name: transcript_of(make_kit) for name, make_kit in KITS.items()}
    reference = transcripts.pop("trio")
    assert len(reference) == 24
    for name, transcript in transcripts.items():
        for n, (left, right) in enumerate(zip(transcript, reference, strict=True)):
            assert left == right, f"request #{n} differs between {name} and trio"


REPEATED_HEADERS = [
    [("authorization", "Bearer wrong"), ("authorization", f"Bearer {SECRET}")],
    [("authorization", f"Bearer {SECRET}"), ("authorization", "Bearer wrong")],
    [
        ("authorization", f"Bearer {SECRET}"),
        ("content-type", "text/plain"),
        ("content-type", "application/json"),
    ],
]


@pytest.mark.parametrize(
    "headers", REPEATED_HEADERS, ids=["wrong-then-right", "right-then-wrong", "text-then-json"]
)
def test_repeated_headers_are_answered_alike(headers: list[tuple[str, str]]) -> None:
    statuses: dict[str, int] = {}
    for name, make_kit in KITS.items():

        async def body(
            kit: Kit, group: Group, runtime: Runtime, client: httpx.AsyncClient, name: str = name
        ) -> None:
            data = register_body("svc", "i-1")
            response = await client.post("/v1/discovery/register", content=data, headers=headers)
            statuses[name] = response.status_code

        run_http(make_kit, body)
    assert len(set(statuses.values())) == 1, statuses


# ---------------------------------------------------------- state file


def test_a_state_file_carries_the_fleet_across_a_restart(
    make_kit: Callable[[], Kit], tmp_path: Path
) -> None:
    state = tmp_path / "registry.json"
    shown: list[dict[str, Any]] = []
    indexes: list[int] = []

    async def scenario(kit: Kit, group: Group) -> None:
        for round_ in (1, 2):
            runtime = make_runtime(kit, passing_probe, SERVICE_DISCOVERY_STATE_FILE=str(state))
            app = kit.make_app(runtime)
            lifespan = Lifespan(kit, app)
            await lifespan.start(group)
            async with http_client(app) as client:
                if round_ == 1:
                    data = register_body("game", "g-1", metadata={"v": "1"}, load_percentage=0.5)
                    response = await client.post(
                        "/v1/discovery/register", content=data, headers=JSON_POST
                    )
                    assert response.status_code == 200
                response = await client.get("/v1/discovery/services/game", headers=AUTH)
                assert response.status_code == 200, (round_, response.text)
                [instance] = response.json()["instances"]
                shown.append(instance)
                indexes.append(int(response.headers["x-discovery-index"]))
            await lifespan.stop()  # the final snapshot is written here
            assert state.exists()
            await kit.sleep(60)

    make_kit().run(scenario)
    before, after = shown
    for key in ("host", "port", "health_endpoint", "metadata", "load_percentage", "registered_at"):
        assert after[key] == before[key], key
    assert indexes[1] > indexes[0]  # a watcher does not see the index go backwards


async def passing_probe(probe: RunProbe) -> ProbeResult:
    return ProbePassed(probe.service_name, probe.instance_id, probe.generation)


@pytest.mark.parametrize(
    "make_kit",
    [partial(TrioKit, real_idle=0.05), partial(AsyncioKit, real_idle=0.05)],
    ids=["trio", "quart"],
)
def test_the_state_file_is_rewritten_while_running(
    make_kit: Callable[[], Kit], tmp_path: Path
) -> None:
    """Every SNAPSHOT_INTERVAL when something changed (on the loop's own timers).

    The write runs in a worker thread, so these kits wait 50 ms of real idleness
    before each jump: fake time must not run to the scenario limit meanwhile.
    """
    state = tmp_path / "registry.json"
    written = threading.Event()

    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(
            kit,
            passing_probe,
            SERVICE_DISCOVERY_STATE_FILE=str(state),
            SERVICE_DISCOVERY_SNAPSHOT_INTERVAL_SECONDS="2",
        )
        original = runtime.write_snapshot

        def spy(snapshot: dict[str, Any]) -> None:
            original(snapshot)
            written.set()

        runtime.write_snapshot = spy  # type: ignore[method-assign]
        app = kit.make_app(runtime)
        lifespan = Lifespan(kit, app)
        await lifespan.start(group)
        async with http_client(app) as client:
            await client.post(
                "/v1/discovery/register", content=register_body("game", "g-1"), headers=JSON_POST
            )
            assert not state.exists()
            assert await kit.in_thread(lambda: written.wait(10))
            assert b'"g-1"' in state.read_bytes()
        await lifespan.stop()

    make_kit().run(scenario)


def test_a_corrupt_state_file_is_moved_aside_and_the_app_starts_empty(
    make_kit: Callable[[], Kit], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    state = tmp_path / "registry.json"
    state.write_bytes(b'{"format": "something else"')

    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit, passing_probe, SERVICE_DISCOVERY_STATE_FILE=str(state))
        app = kit.make_app(runtime)
        lifespan = Lifespan(kit, app)
        await lifespan.start(group)
        async with http_client(app) as client:
            response = await client.get("/v1/discovery/services", headers=AUTH)
            assert response.json() == {"services": {}}
        await lifespan.stop()

    make_kit().run(scenario)
    [aside] = tmp_path.glob("registry.json.corrupt-*")
    assert aside.read_bytes() == b'{"format": "something else"'
    assert any("event=snapshot_corrupt" in r.getMessage() for r in caplog.records)
