"""Every validation rule and limit of docs/api.md, through `HttpApi.handle` (bytes in).

Each rejected request must also leave the registry exactly as it was.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from core_support import HEARTBEAT, REGISTER, Core, register_body, with_config

NAME_128 = "a" * 128
LABEL_63 = "a" * 63
HOST_253 = ".".join([LABEL_63] * 3 + ["b" * 61])  # 63*3 + 61 + 3 dots = 253
HOST_254 = HOST_253 + "c"
ENDPOINT_2048 = "/" + "h" * 2047


def _metadata(n: int) -> dict[str, str]:
    return {f"key{i}": f"value{i}" for i in range(n)}


# --------------------------------------------------------------- accepted

ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("name 128 chars", {"service_name": NAME_128, "instance_id": NAME_128}),
    ("name one char", {"service_name": "a", "instance_id": "9"}),
    ("name with . _ -", {"service_name": "Game.svc_v2-x", "instance_id": "9-lives._x"}),
    ("hostname", {"host": "game-1.example.com"}),
    ("hostname trailing dot", {"host": "localhost."}),
    ("hostname label 63", {"host": LABEL_63 + ".example"}),
    ("hostname 253 chars", {"host": HOST_253}),
    ("ipv4", {"host": "192.168.1.20"}),
    ("ipv6 bare", {"host": "2001:db8::1"}),
    ("ipv6 loopback", {"host": "::1"}),
    ("ipv6 bracketed", {"host": "[2001:db8::1]"}),
    ("port 1", {"port": 1}),
    ("port 65535", {"port": 65535}),
    ("health endpoint root", {"health_endpoint": "/"}),
    ("health endpoint query", {"health_endpoint": "/health?verbose=1&x=%20"}),
    ("health endpoint 2048", {"health_endpoint": ENDPOINT_2048}),
    ("metadata empty", {"metadata": {}}),
    ("metadata 64 entries", {"metadata": _metadata(64)}),
    ("metadata key 128", {"metadata": {"k" * 128: "v"}}),
    ("metadata value 1024", {"metadata": {"k": "v" * 1024}}),
    ("metadata empty value", {"metadata": {"k": ""}}),
    ("metadata unicode", {"metadata": {"région": "Zürich ✓"}}),
    ("load 0", {"load_percentage": 0}),
    ("load 1", {"load_percentage": 1}),
    ("load 0.42", {"load_percentage": 0.42}),
    ("unknown fields ignored", {"labels": ["a", 1], "weight": {"x": None}}),
]


@pytest.mark.parametrize(("fields"), [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_register_accepts(fields: dict[str, Any]) -> None:
    core = Core()
    body = register_body(**fields)
    reply = core.send("POST", REGISTER, body)
    assert reply.status == 200, reply.body
    name, iid = body["service_name"], body["instance_id"]
    assert reply.body == {
        "success": True,
        "message": f"Service {name}:{iid} registered successfully",
        "ttl_seconds": 180,
    }
    shown = core.instance(name, iid)
    assert shown["host"] == body["host"]  # stored and shown exactly as sent
    assert shown["port"] == body["port"]
    assert shown["health_endpoint"] == body.get("health_endpoint", "/health")
    assert shown["metadata"] == body.get("metadata", {})
    assert shown["load_percentage"] == float(body.get("load_percentage", 0.0))
    assert "labels" not in shown and "weight" not in shown


def test_health_endpoint_defaults_to_health() -> None:
    core = Core()
    core.register(health_endpoint=None)
    assert core.instance()["health_endpoint"] == "/health"


# --------------------------------------------------------------- rejected

#: (id, fields to override, field named in details). `None` as a value drops the key.
Rejected = tuple[str, dict[str, Any], str]


def _each_rejected(field: str, values: dict[str, Any], *, label: str = "") -> list[Rejected]:
    """`field` set to each of `values` alone, refused naming that field; each case's id is
    "<label> <key>" (the label is the field's name unless given)."""
    return [(f"{label or field} {case}", {field: value}, field) for case, value in values.items()]


REJECTED: list[Rejected] = [
    *_each_rejected(
        "service_name",
        {
            "missing": None,
            "empty": "",
            "129": "a" * 129,
            "starts -": "-game",
            "starts .": ".game",
            "starts _": "_game",
            "space": "game service",
            "slash": "game/1",
            "colon": "game:1",
            "non-ascii": "gäme",
            "newline": "game\n",
            "number": 12,
            "null": [None],
        },
    ),
    *_each_rejected(
        "instance_id",
        {
            "missing": None,
            "empty": "",
            "129": "i" * 129,
            "starts -": "-1",
            "percent": "a%2Fb",
        },
    ),
    *_each_rejected(
        "host",
        {
            "missing": None,
            "empty": "",
            "label starts -": "-game.example",
            "label ends -": "game-.example",
            "label 64": "a" * 64 + ".example",
            "254 chars": HOST_254,
            "empty label": "game..example",
            "underscore": "game_1.example",
            "space": "game 1",
            "url": "http://game",
            "with port": "game:8080",
            "ipv4 octet 256": "256.1.1.1",
            "ipv4 five parts": "1.2.3.4.5",
            "bad ipv6": "1::2::3",
            "half bracket": "[::1",
            "bracketed name": "[localhost]",
            "non-ascii": "gäme.example",
            "number": 127001,
        },
    ),
    *_each_rejected(
        "port",
        {
            "missing": None,
            "0": 0,
            "65536": 65536,
            "negative": -1,
            "string": "8080",
            "float": 8080.5,
            "true": True,
            "list": [8080],
        },
    ),
    *_each_rejected(
        "health_endpoint",
        {
            "empty": "",
            "relative": "health",
            "//": "//evil.example/x",
            "space": "/he alth",
            "tab": "/he\talth",
            "newline": "/health\n",
            "NUL": "/h\x00",
            "DEL": "/h\x7f",
            "hash": "/health#x",
            "2049": ENDPOINT_2048 + "h",
            "number": 5,
        },
    ),
    *_each_rejected(
        "metadata",
        {
            "65 entries": _metadata(65),
            "empty key": {"": "v"},
            "key 129": {"k" * 129: "v"},
        },
    ),
    ("metadata value 1025", {"metadata": {"k": "v" * 1025}}, "metadata.k"),
    ("metadata key newline", {"metadata": {"k\n": "v"}}, "metadata"),
    ("metadata value control", {"metadata": {"k": "a\x01b"}}, "metadata.k"),
    ("metadata value DEL", {"metadata": {"k": "a\x7f"}}, "metadata.k"),
    ("metadata value CR", {"metadata": {"k": "a\rb"}}, "metadata.k"),
    ("metadata value NEL (C1)", {"metadata": {"k": "a\x85b"}}, "metadata.k"),
    *_each_rejected(
        "metadata",
        {
            "key C1": {"k\x9b": "v"},
            "key DEL": {"\x7f": "v"},
            "list": ["a"],
            "string": "version=1",
            "null": [None],
        },
    ),
    ("metadata value number", {"metadata": {"version": 1}}, "metadata.version"),
    ("metadata value null", {"metadata": {"version": None}}, "metadata.version"),
    ("metadata value object", {"metadata": {"version": {}}}, "metadata.version"),
    *_each_rejected(
        "load_percentage",
        {
            "negative": -0.01,
            "above 1": 1.01,
            "string": "0.5",
            "true": True,
        },
        label="load",
    ),
]


def _build(fields: dict[str, Any]) -> dict[str, Any]:
    body = register_body(service="game-service", instance="game-1")
    for key, value in fields.items():
        if value is None:
            body.pop(key, None)
        elif isinstance(value, list) and value == [None]:
            body[key] = None  # an explicit JSON null
        else:
            body[key] = value
    return body


def _prime(core: Core) -> None:
    """A registry with some state, so 'nothing changed' is a real comparison."""
    core.register("game-service", "game-1", metadata={"version": "1"})
    core.register("chat", "chat-1", port=9000)
    core.advance(45)  # first probes handed out (left unanswered)
    core.drain()


@pytest.mark.parametrize(
    ("fields", "field"), [(c[1], c[2]) for c in REJECTED], ids=[c[0] for c in REJECTED]
)
def test_register_rejects_and_changes_nothing(fields: dict[str, Any], field: str) -> None:
    core = Core()
    _prime(core)
    before = core.snapshot("game-service", "chat")
    reply = core.send("POST", REGISTER, _build(fields))
    assert reply.status == 422, reply.body
    assert reply.error == "validation_error"
    assert field in reply.detail_fields, reply.body
    assert reply.body["success"] is False
    assert isinstance(reply.body["message"], str)
    for detail in reply.body["details"]:
        assert set(detail) == {"field", "message"}
        assert detail["message"]
    assert core.snapshot("game-service", "chat") == before


@pytest.mark.parametrize("host", ["localhost\n", "game.example\n"])
def test_register_rejects_host_with_trailing_newline(host: str) -> None:
    core = Core()
    reply = core.send("POST", REGISTER, register_body(host=host))
    assert reply.status == 422
    assert reply.detail_fields == ["host"]


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("10.0.0.5:8080", "send host '10.0.0.5' and port 8080 separately"),
        ("game.example:80", "send host 'game.example' and port 80 separately"),
        ("http://10.0.0.5", "is a URL (http://...); send only the host ('10.0.0.5')"),
        ("https://game.example:8443/health", "send only the host ('game.example')"),
    ],
)
def test_a_host_with_a_port_or_a_scheme_says_what_to_send_instead(host: str, says: str) -> None:
    core = Core()
    reply = core.send("POST", REGISTER, register_body(host=host))
    assert reply.status == 422
    [detail] = reply.body["details"]
    assert detail["field"] == "host"
    assert says in detail["message"], detail["message"]
    assert "IPv6" not in detail["message"]


def test_a_bad_metadata_key_is_not_echoed() -> None:
    core = Core()
    key = "evil\x1b[31m" + "k" * 200
    reply = core.send("POST", REGISTER, register_body(metadata={key: "v"}))
    assert reply.status == 422
    assert reply.detail_fields == ["metadata"]
    assert "evil" not in reply.raw.decode() and "k" * 129 not in reply.raw.decode()


RAW_422: list[tuple[str, bytes, str]] = [
    (
        "load NaN",
        b'{"service_name":"s","instance_id":"i","host":"h","port":1,"load_percentage":NaN}',
        "load_percentage",
    ),
    (
        "load Infinity",
        b'{"service_name":"s","instance_id":"i","host":"h","port":1,"load_percentage":Infinity}',
        "load_percentage",
    ),
    (
        "load 1e400",
        b'{"service_name":"s","instance_id":"i","host":"h","port":1,"load_percentage":1e400}',
        "load_percentage",
    ),
    (
        "port 8080.0",
        b'{"service_name":"s","instance_id":"i","host":"h","port":8080.0}',
        "port",
    ),
    (
        "port huge int",
        b'{"service_name":"s","instance_id":"i","host":"h","port":' + b"9" * 400 + b"}",
        "port",
    ),
]


@pytest.mark.parametrize(
    ("body", "field"), [(c[1], c[2]) for c in RAW_422], ids=[c[0] for c in RAW_422]
)
def test_register_rejects_raw_bodies(body: bytes, field: str) -> None:
    """NaN and Infinity are not JSON: 400, or 422 where the parser took them as numbers."""
    core = Core()
    _prime(core)
    before = core.snapshot("s")
    reply = core.send("POST", REGISTER, body=body)
    if b"NaN" in body or b"Infinity" in body:
        assert (reply.status, reply.error) in {(400, "invalid_json"), (422, "validation_error")}
    else:
        assert (reply.status, reply.error) == (422, "validation_error"), reply.body
    if reply.status == 422:
        assert field in reply.detail_fields
    assert core.snapshot("s") == before


def test_every_failing_field_is_named() -> None:
    core = Core()
    reply = core.send("POST", REGISTER, {"port": 0, "metadata": {"a": 1}})
    assert reply.status == 422
    assert set(reply.detail_fields) == {
        "service_name",
        "instance_id",
        "host",
        "port",
        "metadata.a",
    }
    assert "service_name" in reply.body["message"]


# -------------------------------------------------------------- heartbeat

HEARTBEAT_REJECTED: list[tuple[str, dict[str, Any], str]] = [
    ("service_name missing", {"instance_id": "game-1"}, "service_name"),
    ("instance_id missing", {"service_name": "game-service"}, "instance_id"),
    ("service_name bad", {"service_name": "-x", "instance_id": "game-1"}, "service_name"),
    ("instance_id number", {"service_name": "game-service", "instance_id": 1}, "instance_id"),
    (
        "load above 1",
        {"service_name": "game-service", "instance_id": "game-1", "load_percentage": 1.5},
        "load_percentage",
    ),
    (
        "load negative",
        {"service_name": "game-service", "instance_id": "game-1", "load_percentage": -1},
        "load_percentage",
    ),
    (
        "load string",
        {"service_name": "game-service", "instance_id": "game-1", "load_percentage": "0.1"},
        "load_percentage",
    ),
    (
        "load bool",
        {"service_name": "game-service", "instance_id": "game-1", "load_percentage": False},
        "load_percentage",
    ),
]


@pytest.mark.parametrize(
    ("body", "field"),
    [(c[1], c[2]) for c in HEARTBEAT_REJECTED],
    ids=[c[0] for c in HEARTBEAT_REJECTED],
)
def test_heartbeat_rejects_and_changes_nothing(body: dict[str, Any], field: str) -> None:
    core = Core()
    _prime(core)
    core.now += 10
    before = core.snapshot("game-service")
    before_heartbeat = core.instance()["last_heartbeat"]
    reply = core.send("POST", HEARTBEAT, body)
    assert (reply.status, reply.error) == (422, "validation_error")
    assert field in reply.detail_fields
    assert core.snapshot("game-service") == before
    assert core.instance()["last_heartbeat"] == before_heartbeat


def test_validation_comes_before_the_registry_lookup() -> None:
    """An invalid heartbeat for an unknown instance is 422, not 404 (fields, then registry)."""
    core = Core()
    reply = core.send(
        "POST", HEARTBEAT, {"service_name": "nope", "instance_id": "x", "load_percentage": 2}
    )
    assert reply.status == 422


# ------------------------------------------------------------ invalid JSON

INVALID_JSON: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not json", b"service_name=game"),
    ("truncated", b'{"service_name": "game-service"'),
    ("trailing garbage", json.dumps(register_body()).encode() + b"garbage"),
    ("array", b"[]"),
    ("array of object", b"[" + json.dumps(register_body()).encode() + b"]"),
    ("null", b"null"),
    ("string", b'"hello"'),
    ("number", b"42"),
    ("invalid utf-8", b"\xff\xfe\xfd"),
    ("invalid utf-8 in string", b'{"service_name":"g\xffame","instance_id":"i"}'),
    ("deeply nested", b"[" * 100_000),
    ("single quotes", b"{'service_name': 'x'}"),
]


@pytest.mark.parametrize("body", [c[1] for c in INVALID_JSON], ids=[c[0] for c in INVALID_JSON])
@pytest.mark.parametrize("path", [REGISTER, HEARTBEAT])
def test_invalid_json_is_400_and_changes_nothing(path: str, body: bytes) -> None:
    core = Core()
    _prime(core)
    before = core.snapshot("game-service")
    reply = core.send("POST", path, body=body)
    assert (reply.status, reply.error) == (400, "invalid_json"), reply.body
    assert "details" not in reply.body
    assert core.snapshot("game-service") == before


# -------------------------------------------------------------- media type


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/jsonx",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "json",
        "application/problem+json",
    ],
)
@pytest.mark.parametrize("path", [REGISTER, HEARTBEAT])
def test_post_without_json_media_type_is_415(path: str, content_type: str | None) -> None:
    core = Core()
    _prime(core)
    before = core.snapshot("game-service")
    body = json.dumps(register_body()).encode()
    reply = core.send("POST", path, body=body, content_type=content_type)
    assert (reply.status, reply.error) == (415, "unsupported_media_type")
    assert core.snapshot("game-service") == before


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/json;charset=UTF-8",
        " application/json ",
    ],
)
def test_json_media_type_with_parameters_is_accepted(content_type: str) -> None:
    core = Core()
    body = json.dumps(register_body()).encode()
    reply = core.send("POST", REGISTER, body=body, content_type=content_type)
    assert reply.status == 200


def test_media_type_is_checked_before_the_body() -> None:
    core = Core()
    reply = core.send("POST", REGISTER, body=b"not json", content_type="text/plain")
    assert reply.status == 415


def test_json_is_checked_before_fields() -> None:
    core = Core()
    reply = core.send("POST", REGISTER, body=b'{"port": 0')
    assert reply.status == 400


# ------------------------------------------------------------ registry_full


def test_registry_full_refuses_new_instances_only() -> None:
    core = Core(with_config(max_instances=3))
    for n in range(3):
        core.register("game-service", f"game-{n}")
    core.drain()
    before = core.snapshot("game-service", "other")
    for service, iid in (("game-service", "game-9"), ("other", "o-1")):
        reply = core.send("POST", REGISTER, register_body(service, iid))
        assert (reply.status, reply.error) == (503, "registry_full")
        assert "3" in reply.body["message"]
        assert core.snapshot("game-service", "other") == before
    # re-registering an existing instance still works, even with changes
    reply = core.send("POST", REGISTER, register_body("game-service", "game-1", port=9999))
    assert reply.status == 200
    assert core.instance("game-service", "game-1")["port"] == 9999
    # and a freed slot can be taken
    assert core.unregister("game-service", "game-0").status == 200
    assert core.send("POST", REGISTER, register_body("other", "o-1")).status == 200
    assert core.registry.instance_count == 3


def test_registry_full_comes_after_validation() -> None:
    core = Core(with_config(max_instances=1))
    core.register("game-service", "game-0")
    reply = core.send("POST", REGISTER, register_body("game-service", "game-1", port=0))
    assert reply.status == 422


# ------------------------------------------------------------------ 413


@pytest.mark.parametrize(("method", "path"), [("POST", REGISTER), ("POST", HEARTBEAT)])
def test_payload_too_large(method: str, path: str) -> None:
    core = Core(with_config(max_body_bytes=1000))
    assert core.api.max_body_bytes == 1000
    response = core.api.payload_too_large(method, path)
    assert response.status == 413
    assert json.loads(response.body)["error"] == "payload_too_large"
    assert "1000" in json.loads(response.body)["message"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/v1/discovery/nope", 404), ("GET", REGISTER, 405), ("PUT", HEARTBEAT, 405)],
)
def test_payload_too_large_routing_errors_come_first(method: str, path: str, status: int) -> None:
    core = Core()
    assert core.api.payload_too_large(method, path).status == status


# ------------------------------------------------------------ draining


def test_draining_refuses_writes_after_auth_and_still_serves_reads() -> None:
    core = Core()
    core.register()
    core.api.draining = True
    before = core.snapshot("game-service")
    for method, path, body in (
        ("POST", REGISTER, register_body(instance="game-2")),
        ("POST", HEARTBEAT, {"service_name": "game-service", "instance_id": "game-1"}),
        ("DELETE", "/v1/discovery/unregister/game-service/game-1", None),
    ):
        reply = core.send(method, path, body)
        assert (reply.status, reply.error) == (503, "shutting_down")
        assert core.send(method, path, body, auth=None).status == 401  # auth first
    # shutting_down comes before the media type and body checks
    reply = core.send("POST", REGISTER, body=b"nope", content_type="text/plain")
    assert reply.status == 503
    assert core.snapshot("game-service") == before
    assert core.get("/v1/discovery/services/game-service").status == 200
