"""The shared HTTP mapping: auth, routing (404/405), responses, blocking-query parameters."""

from __future__ import annotations

import json

import pytest
from core_support import (
    AUTH,
    HEARTBEAT,
    PROMETHEUS,
    READ_AUTH,
    READ_TOKEN,
    REGISTER,
    SECRET,
    SERVICES,
    Core,
    register_body,
    to_reply,
)

from sd_core import BlockingWait, HttpApi, HttpRequest, HttpResponse, Registry, RegistryConfig

READ_PATHS = [
    SERVICES,
    PROMETHEUS,
    f"{SERVICES}/game-service",
    f"{SERVICES}/game-service/healthy",
    f"{SERVICES}/game-service/instances",
]
WRITES: list[tuple[str, str, dict[str, object] | None]] = [
    ("POST", REGISTER, register_body(instance="game-2")),
    ("POST", HEARTBEAT, {"service_name": "game-service", "instance_id": "game-1"}),
    ("DELETE", "/v1/discovery/unregister/game-service/game-1", None),
]


def _core() -> Core:
    core = Core()
    core.register()
    return core


# -------------------------------------------------------------------- auth

BAD_AUTH = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer  ",
    f"{SECRET}x",
    f"{READ_TOKEN}x",
    f"{SECRET} {SECRET}",
    f"Basic {SECRET}",
    f"Token {SECRET}",
    f"Bearer {SECRET}x",
    f"Bearer {SECRET[:-1]}",
    f"Bearer {SECRET.upper()}",
    f"Bearer {SECRET} extra",
    f"Bearer\t{SECRET}",
    "Bearer sécret-ü",
    "Bearer \x00",
]


@pytest.mark.parametrize("auth", BAD_AUTH)
@pytest.mark.parametrize(("method", "path", "body"), [("GET", SERVICES, None), *WRITES])
def test_missing_or_wrong_token_is_401(
    auth: str | None, method: str, path: str, body: dict[str, object] | None
) -> None:
    core = _core()
    before = core.snapshot("game-service")
    reply = core.send(method, path, body, auth=auth)
    assert (reply.status, reply.error) == (401, "unauthorized")
    assert reply.headers["www-authenticate"] == "Bearer"
    assert reply.headers["content-type"] == "application/json"
    assert SECRET not in reply.raw.decode()
    assert core.snapshot("game-service") == before


@pytest.mark.parametrize("auth", [AUTH, f"bearer {SECRET}"])
def test_write_token_is_accepted(auth: str) -> None:
    core = _core()
    assert core.send("GET", SERVICES, auth=auth).status == 200
    assert core.send("POST", REGISTER, register_body(instance="x"), auth=auth).status == 200


def test_bare_tokens_without_a_scheme_are_accepted() -> None:
    """Debian's Prometheus 2.42 sends `Authorization: <token>` when no `type` is set."""
    core = _core()
    assert core.send("GET", SERVICES, auth=SECRET).status == 200
    assert core.send("POST", REGISTER, register_body(instance="x"), auth=SECRET).status == 200
    assert core.send("GET", SERVICES, auth=READ_TOKEN).status == 200
    reply = core.send("POST", REGISTER, register_body(instance="y"), auth=READ_TOKEN)
    assert (reply.status, reply.error) == (403, "forbidden")


@pytest.mark.parametrize("path", READ_PATHS)
def test_read_token_reads(path: str) -> None:
    core = _core()
    assert core.send("GET", path, auth=READ_AUTH).status == 200


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_read_token_cannot_write(method: str, path: str, body: dict[str, object] | None) -> None:
    core = _core()
    before = core.snapshot("game-service")
    reply = core.send(method, path, body, auth=READ_AUTH)
    assert (reply.status, reply.error) == (403, "forbidden")
    assert "www-authenticate" not in reply.headers
    assert core.snapshot("game-service") == before


def test_read_token_is_checked_before_media_type_and_body() -> None:
    core = _core()
    reply = core.send("POST", REGISTER, body=b"{", content_type="text/plain", auth=READ_AUTH)
    assert reply.status == 403
    reply = core.send("POST", REGISTER, body=b"{", content_type="text/plain", auth=None)
    assert reply.status == 401


def test_read_token_unset_means_no_read_token() -> None:
    core = Core(read_token=None)
    assert core.send("GET", SERVICES, auth=READ_AUTH).status == 401
    core = Core(read_token="")
    assert core.send("GET", SERVICES, auth="Bearer ").status == 401


def test_open_endpoints_need_no_token() -> None:
    registry = Registry(RegistryConfig(), now=0.0, wall_offset=0.0)
    api = HttpApi(
        registry,
        secret=SECRET,
        read_token=READ_TOKEN,
        frontend="test",
        version="1.2.3",
        metrics=lambda: (b"# metrics\n", "text/plain; version=0.0.4"),
        openapi=lambda: b'{"openapi":"3.1.0"}',
    )
    health = api.handle(HttpRequest("GET", "/health", b"", None, None, b""), 5.0)
    metrics = api.handle(HttpRequest("GET", "/metrics", b"", None, None, b""), 5.0)
    openapi = api.handle(HttpRequest("GET", "/openapi.json", b"", "Bearer wrong", None, b""), 5.0)
    assert isinstance(health, HttpResponse) and health.status == 200
    assert isinstance(metrics, HttpResponse) and metrics.status == 200
    assert metrics.body == b"# metrics\n"
    assert ("content-type", "text/plain; version=0.0.4") in metrics.headers
    assert isinstance(openapi, HttpResponse) and openapi.status == 200
    document = json.loads(health.body)
    assert document["status"] == "healthy"
    assert document["service"] == "service-discovery"
    assert document["frontend"] == "test" and document["version"] == "1.2.3"
    assert document["uptime_seconds"] == 5.0
    assert document["self_preservation"] is False
    assert document["self_preservation_reason"] is None


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic x", READ_AUTH, AUTH])
def test_open_endpoints_ignore_any_token(auth: str | None) -> None:
    core = Core()
    reply = core.send("GET", "/health", auth=auth)
    assert reply.status == 200
    assert reply.body["status"] == "healthy"


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("POST", REGISTER, REGISTER),
        ("GET", f"{SERVICES}/x", "/v1/discovery/services/{name}"),
        ("GET", "/nope", "unknown"),
    ],
)
def test_overloaded(method: str, path: str, route: str) -> None:
    core = Core()
    response = core.api.overloaded(method, path, "blocking queries")
    assert response.status == 503
    assert response.route == route
    reply = to_reply(response)
    assert reply.error == "overloaded"
    assert reply.headers["retry-after"] == "1"
    assert "blocking queries" in reply.body["message"]


def test_metrics_and_openapi_without_renderers_are_404() -> None:
    core = Core()
    for path in ("/metrics", "/openapi.json"):
        reply = core.send("GET", path, auth=None)
        assert (reply.status, reply.error) == (404, "not_found")


# ----------------------------------------------------------------- routing

NOT_FOUND = [
    ("GET", "/"),
    ("GET", "/nope"),
    ("GET", "/v1"),
    ("GET", "/v1/discovery"),
    ("GET", "/v1/discovery/"),
    ("GET", "/v1/discovery/services/"),
    ("GET", "/v1/discovery/services//healthy"),
    ("GET", "/v1/discovery/services/game-service/"),
    ("GET", "/v1/discovery/services/game-service/healthy/"),
    ("GET", "/v1/discovery/services/game-service/other"),
    ("GET", "/v1/discovery/services/a/b/c"),
    ("GET", "/V1/discovery/services"),
    ("GET", "/v1/discovery/services/game-service/instances/x"),
    ("POST", "/v1/discovery/register/"),
    ("POST", "/v1/discovery/heartbeat/x"),
    ("DELETE", "/v1/discovery/unregister"),
    ("DELETE", "/v1/discovery/unregister/"),
    ("DELETE", "/v1/discovery/unregister/game-service"),
    ("DELETE", "/v1/discovery/unregister/game-service/"),
    ("DELETE", "/v1/discovery/unregister//game-1"),
    ("DELETE", "/v1/discovery/unregister/game-service/game-1/x"),
    ("GET", "/health/"),
]


@pytest.mark.parametrize(("method", "path"), NOT_FOUND)
@pytest.mark.parametrize("auth", [AUTH, None])
def test_unknown_path_is_404_before_auth(method: str, path: str, auth: str | None) -> None:
    core = _core()
    before = core.snapshot("game-service")
    reply = core.send(method, path, auth=auth)
    assert (reply.status, reply.error) == (404, "not_found")
    assert reply.body["success"] is False
    assert core.snapshot("game-service") == before


METHOD_NOT_ALLOWED = [
    ("POST", SERVICES, "GET"),
    ("DELETE", SERVICES, "GET"),
    ("POST", PROMETHEUS, "GET"),
    ("PUT", f"{SERVICES}/game-service", "GET"),
    ("POST", f"{SERVICES}/game-service/healthy", "GET"),
    ("DELETE", f"{SERVICES}/game-service/instances", "GET"),
    ("GET", REGISTER, "POST"),
    ("PUT", REGISTER, "POST"),
    ("DELETE", HEARTBEAT, "POST"),
    ("GET", "/v1/discovery/unregister/game-service/game-1", "DELETE"),
    ("POST", "/v1/discovery/unregister/game-service/game-1", "DELETE"),
    ("POST", "/health", "GET"),
    ("HEAD", SERVICES, "GET"),
    ("HEAD", "/health", "GET"),
    ("OPTIONS", REGISTER, "POST"),
    ("OPTIONS", f"{SERVICES}/game-service", "GET"),
    ("get", SERVICES, "GET"),
]


@pytest.mark.parametrize(("method", "path", "allow"), METHOD_NOT_ALLOWED)
@pytest.mark.parametrize("auth", [AUTH, None])
def test_wrong_method_is_405_with_allow_before_auth(
    method: str, path: str, allow: str, auth: str | None
) -> None:
    core = _core()
    before = core.snapshot("game-service")
    reply = core.send(method, path, auth=auth)
    assert (reply.status, reply.error) == (405, "method_not_allowed")
    assert reply.headers["allow"] == allow
    assert core.snapshot("game-service") == before


def test_success_bodies_and_headers() -> None:
    core = Core()
    reply = core.send("POST", REGISTER, register_body())
    assert reply.raw == (
        b'{"success":true,"message":"Service game-service:game-1 registered successfully",'
        b'"ttl_seconds":180}'
    )
    assert reply.headers["content-type"] == "application/json"
    reply = core.heartbeat()
    assert reply.status == 200
    assert reply.body == {"success": True, "message": "Heartbeat updated successfully"}
    reply = core.unregister()
    assert reply.status == 200
    assert reply.body == {"success": True, "message": "Service unregistered successfully"}


def test_unknown_instances_and_services_are_404() -> None:
    core = _core()
    before = core.snapshot("game-service", "nope")
    for reply in (
        core.heartbeat("game-service", "game-9"),
        core.heartbeat("nope", "game-1"),
        core.unregister("game-service", "game-9"),
        core.unregister("nope", "x"),
    ):
        assert (reply.status, reply.error) == (404, "instance_not_found")
    assert core.heartbeat("nope", "x").body["message"] == "Instance nope:x is not registered"
    assert core.unregister("a", "b").body["message"] == "Instance a:b is not registered"
    assert core.snapshot("game-service", "nope") == before
    reply = core.get(f"{SERVICES}/nope")
    assert (reply.status, reply.error) == (404, "service_not_found")
    assert reply.index == 1
    assert reply.headers["content-type"] == "application/json"
    assert core.get(f"{SERVICES}/nope/healthy").body == {
        "service_name": "nope",
        "healthy_instances": [],
    }
    assert core.get(f"{SERVICES}/nope/instances").body == []


def test_every_read_endpoint_carries_the_index() -> None:
    core = _core()
    for path in READ_PATHS:
        reply = core.get(path)
        assert reply.index is not None and reply.index >= 2
    assert core.get(SERVICES).index == core.registry.global_index
    assert core.get(PROMETHEUS).index == core.registry.global_index
    assert core.get(f"{SERVICES}/game-service").index == core.registry.service_index("game-service")


# --------------------------------------------------------- blocking queries


@pytest.mark.parametrize(
    ("wait", "seconds"),
    [
        ("", 60.0),
        ("&wait=10s", 10.0),
        ("&wait=10", 10.0),
        ("&wait=1.5", 1.5),
        ("&wait=500ms", 0.5),
        ("&wait=2m", 120.0),
        ("&wait=0.5m", 30.0),
        ("&wait=300s", 300.0),
        ("&wait=301s", 300.0),
        ("&wait=1h", 300.0),
        ("&wait=99999999h", 300.0),
        ("&wait=0", 0.0),
    ],
)
@pytest.mark.parametrize(
    ("path", "scope"),
    [
        (SERVICES, None),
        (PROMETHEUS, None),
        (f"{SERVICES}/game-service", "game-service"),
        (f"{SERVICES}/game-service/healthy", "game-service"),
        (f"{SERVICES}/game-service/instances", "game-service"),
    ],
)
def test_current_index_blocks(path: str, scope: str | None, wait: str, seconds: float) -> None:
    core = _core()
    core.register("other", "o-1")  # global index now ahead of game-service's
    index = core.registry.global_index if scope is None else core.registry.service_index(scope)
    before = core.snapshot("game-service")
    result = core.handle("GET", path, query=f"index={index}{wait}")
    assert result == BlockingWait(scope, index, seconds)
    assert core.snapshot("game-service") == before
    # the frontend calls again once woken (or timed out): an ordinary answer
    again = core.handle("GET", path, query=f"index={index}{wait}", may_block=False)
    assert isinstance(again, HttpResponse) and again.status == 200
    assert to_reply(again).index == index


@pytest.mark.parametrize("path", READ_PATHS)
def test_passed_zero_or_future_index_answers_at_once(path: str) -> None:
    core = _core()
    core.register("other", "o-1")
    for query in ("index=0", "index=1", "index=0&wait=5m", "index=999999", "wait=10s", "x=1"):
        result = core.handle("GET", path, query=query)
        assert isinstance(result, HttpResponse), query
        assert result.status == 200


def test_unknown_service_blocks_on_index_1() -> None:
    core = _core()
    result = core.handle("GET", f"{SERVICES}/nope", query="index=1&wait=3s")
    assert result == BlockingWait("nope", 1, 3.0)
    reply = core.send("GET", f"{SERVICES}/nope", query="index=1&wait=3s", may_block=False)
    assert (reply.status, reply.index) == (404, 1)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("index=-1", "index"),
        ("index=abc", "index"),
        ("index=1.5", "index"),
        ("index=1e3", "index"),
        ("index=", "index"),
        ("index=+1", "index"),
        ("index=%201", "index"),
        ("index=0x10", "index"),
        ("index=%D9%A1", "index"),  # an Arabic-Indic digit
        ("index=99999999999999999999", "index"),
        ("index=1&wait=abc", "wait"),
        ("index=1&wait=-1s", "wait"),
        ("index=1&wait=10x", "wait"),
        ("index=1&wait=10S", "wait"),
        ("index=1&wait=", "wait"),
        ("index=1&wait=s", "wait"),
        ("index=1&wait=1m30s", "wait"),
        ("index=1&wait=10%20s", "wait"),
        ("index=1&wait=.5s", "wait"),
        ("wait=forever", "wait"),
    ],
)
@pytest.mark.parametrize("path", [SERVICES, f"{SERVICES}/game-service"])
def test_malformed_blocking_params_are_422(path: str, query: str, field: str) -> None:
    core = _core()
    reply = core.send("GET", path, query=query)
    assert (reply.status, reply.error) == (422, "validation_error"), query
    assert reply.detail_fields == [field]


@pytest.mark.parametrize("query", ["index=2&wait=10s%0A", "index=2&wait=%D9%A1s"])
def test_wait_must_be_ascii_and_exact(query: str) -> None:
    """Regression: `\\d` and `$` once let these through."""
    core = _core()
    reply = core.send("GET", SERVICES, query=query)
    assert reply.status == 422


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("GET", f"{SERVICES}/game-service", "/v1/discovery/services/{name}"),
        ("GET", f"{SERVICES}/nope", "/v1/discovery/services/{name}"),
        ("GET", f"{SERVICES}/a/healthy", "/v1/discovery/services/{name}/healthy"),
        ("GET", f"{SERVICES}/a/instances", "/v1/discovery/services/{name}/instances"),
        (
            "DELETE",
            "/v1/discovery/unregister/a/b",
            "/v1/discovery/unregister/{service_name}/{instance_id}",
        ),
        (
            "GET",
            "/v1/discovery/unregister/a/b",
            "/v1/discovery/unregister/{service_name}/{instance_id}",
        ),
        ("GET", SERVICES, SERVICES),
        ("GET", "/health", "/health"),
        ("GET", "/some/random/path-123", "unknown"),
        ("GET", f"{SERVICES}/a/b/c", "unknown"),
    ],
)
def test_route_is_a_template_so_metric_labels_stay_bounded(
    method: str, path: str, route: str
) -> None:
    core = _core()
    result = core.handle(method, path)
    assert isinstance(result, HttpResponse)
    assert result.route == route
