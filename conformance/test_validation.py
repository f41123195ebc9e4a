"""The bad-input matrix: every malformed write gets its status, in the one error
shape, and leaves the registry byte-for-byte unchanged.

Each bad request is a variant of a *valid update* of an existing instance (a
different port, metadata and load), so a server that applied the valid parts
of a rejected request would show a changed registry. "Unchanged" is the body
of ``GET /v1/discovery/services`` together with its ``X-Discovery-Index``,
read on the quiet server where nothing else moves.

A second group checks the boundaries from the accepting side (128-char names,
253-char hosts, 64 metadata entries...), so the limits are exactly where
docs/api.md puts them and not one off.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from conformance.client import Api, api_for, assert_error, assert_validation_error
from conformance.common import SECRET, unique_name
from conformance.fixture_types import Names
from conformance.server_process import ServerProcess

VICTIM_SERVICE = unique_name("victim")
VICTIM_ID = "victim-1"
REGISTER = "/v1/discovery/register"
HEARTBEAT = "/v1/discovery/heartbeat"
MAX_BODY = 65536

#: What the victim is registered with before every test.
ORIGINAL = {
    "service_name": VICTIM_SERVICE,
    "instance_id": VICTIM_ID,
    "host": "127.0.0.1",
    "port": 7001,
    "health_endpoint": "/health",
    "metadata": {"v": "1"},
    "load_percentage": 0.1,
}

#: A valid update of the victim: any part of it showing up means a leak.
UPDATE = {**ORIGINAL, "port": 7002, "metadata": {"v": "2"}, "load_percentage": 0.9}

_MISSING = object()


def _register_body(**changes: Any) -> bytes:
    body = {**UPDATE, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not _MISSING}).encode()


def _heartbeat_body(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "service_name": VICTIM_SERVICE,
        "instance_id": VICTIM_ID,
        "load_percentage": 0.9,
        **changes,
    }
    return json.dumps({k: v for k, v in body.items() if v is not _MISSING}).encode()


def _hostname(length: int) -> str:
    """A syntactically valid hostname of exactly ``length`` chars, under .invalid."""
    suffix = ".invalid"
    left = length - len(suffix)  # label characters plus the dots between them
    labels: list[str] = []
    while left > 0:
        # A full label, unless that would leave a dot with no label after it.
        size = left if left <= 63 else (63 if left - 64 > 0 else 62)
        labels.append("h" * size)
        left -= size + 1
    name = ".".join(labels) + suffix
    assert len(name) == length, (len(name), length)
    return name


@dataclass(frozen=True)
class Bad:
    """One malformed write and what it must be answered with."""

    id: str
    content: bytes
    status: int
    error: str
    field: str | None = None
    path: str = REGISTER
    content_type: str | None = "application/json"
    also_ok_status: int | None = None


BAD_REQUESTS = [
    # -- not JSON, or not a JSON object: 400 ----------------------------------
    Bad("empty-body", b"", 400, "invalid_json"),
    Bad("not-json", b"{not json", 400, "invalid_json"),
    Bad("truncated-json", _register_body()[:-1], 400, "invalid_json"),
    Bad("trailing-garbage", _register_body() + b" x", 400, "invalid_json"),
    Bad("json-array", b"[]", 400, "invalid_json"),
    Bad("json-array-of-valid-body", b"[" + _register_body() + b"]", 400, "invalid_json"),
    Bad("json-string", b'"register me"', 400, "invalid_json"),
    Bad("json-null", b"null", 400, "invalid_json"),
    Bad("json-number", b"42", 400, "invalid_json"),
    Bad(
        "invalid-utf8",
        _register_body(metadata={"v": "XX"}).replace(b"XX", b"\xff\xfe"),
        400,
        "invalid_json",
    ),
    Bad(
        "latin1-encoded",
        _register_body(metadata={"v": "\xe9"}).replace(b"\\u00e9", b"\xe9"),
        400,
        "invalid_json",
    ),
    Bad("utf16-encoded", json.dumps(UPDATE).encode("utf-16"), 400, "invalid_json"),
    # NaN is not JSON; a Python parser lets it through to validation. Either
    # rejection is acceptable, storing it is not.
    Bad(
        "nan-load",
        _register_body(load_percentage=0.5).replace(b"0.5", b"NaN"),
        400,
        "invalid_json",
        also_ok_status=422,
    ),
    Bad(
        "infinity-port",
        _register_body(port=1).replace(b'"port": 1', b'"port": Infinity'),
        400,
        "invalid_json",
        also_ok_status=422,
    ),
    # -- not declared as JSON: 415 --------------------------------------------
    Bad("text-plain", _register_body(), 415, "unsupported_media_type", content_type="text/plain"),
    Bad("no-content-type", _register_body(), 415, "unsupported_media_type", content_type=None),
    Bad(
        "form-urlencoded",
        b"service_name=x&instance_id=y",
        415,
        "unsupported_media_type",
        content_type="application/x-www-form-urlencoded",
    ),
    Bad("text-json", _register_body(), 415, "unsupported_media_type", content_type="text/json"),
    # -- port -------------------------------------------------------------------
    Bad("port-string", _register_body(port="8080"), 422, "validation_error", "port"),
    Bad("port-float", _register_body(port=8080.0), 422, "validation_error", "port"),
    Bad("port-bool", _register_body(port=True), 422, "validation_error", "port"),
    Bad("port-zero", _register_body(port=0), 422, "validation_error", "port"),
    Bad("port-65536", _register_body(port=65536), 422, "validation_error", "port"),
    Bad("port-negative", _register_body(port=-1), 422, "validation_error", "port"),
    Bad("port-null", _register_body(port=None), 422, "validation_error", "port"),
    Bad("port-missing", _register_body(port=_MISSING), 422, "validation_error", "port"),
    # -- service_name / instance_id -------------------------------------------
    Bad("name-slash", _register_body(service_name="a/b"), 422, "validation_error", "service_name"),
    Bad(
        "name-dot-first", _register_body(service_name=".x"), 422, "validation_error", "service_name"
    ),
    Bad(
        "name-dash-first",
        _register_body(service_name="-x"),
        422,
        "validation_error",
        "service_name",
    ),
    Bad(
        "name-underscore-first",
        _register_body(service_name="_x"),
        422,
        "validation_error",
        "service_name",
    ),
    Bad("name-empty", _register_body(service_name=""), 422, "validation_error", "service_name"),
    Bad(
        "name-129", _register_body(service_name="s" * 129), 422, "validation_error", "service_name"
    ),
    Bad("name-nul", _register_body(service_name="a\x00b"), 422, "validation_error", "service_name"),
    Bad(
        "name-non-ascii",
        _register_body(service_name="caf\xe9"),
        422,
        "validation_error",
        "service_name",
    ),
    Bad("name-space", _register_body(service_name="a b"), 422, "validation_error", "service_name"),
    Bad("name-colon", _register_body(service_name="a:b"), 422, "validation_error", "service_name"),
    Bad("name-int", _register_body(service_name=5), 422, "validation_error", "service_name"),
    Bad(
        "name-missing",
        _register_body(service_name=_MISSING),
        422,
        "validation_error",
        "service_name",
    ),
    Bad("id-slash", _register_body(instance_id="a/b"), 422, "validation_error", "instance_id"),
    Bad("id-dot-first", _register_body(instance_id=".."), 422, "validation_error", "instance_id"),
    Bad("id-empty", _register_body(instance_id=""), 422, "validation_error", "instance_id"),
    Bad("id-129", _register_body(instance_id="i" * 129), 422, "validation_error", "instance_id"),
    Bad("id-nul", _register_body(instance_id="x\x00"), 422, "validation_error", "instance_id"),
    Bad("id-null", _register_body(instance_id=None), 422, "validation_error", "instance_id"),
    Bad("id-missing", _register_body(instance_id=_MISSING), 422, "validation_error", "instance_id"),
    # -- host -------------------------------------------------------------------
    Bad("host-empty", _register_body(host=""), 422, "validation_error", "host"),
    Bad("host-space", _register_body(host="bad host"), 422, "validation_error", "host"),
    Bad(
        "host-leading-hyphen", _register_body(host="-bad.invalid"), 422, "validation_error", "host"
    ),
    Bad(
        "host-trailing-hyphen", _register_body(host="bad-.invalid"), 422, "validation_error", "host"
    ),
    Bad("host-empty-label", _register_body(host="a..invalid"), 422, "validation_error", "host"),
    Bad("host-underscore", _register_body(host="a_b.invalid"), 422, "validation_error", "host"),
    Bad(
        "host-label-64", _register_body(host="l" * 64 + ".invalid"), 422, "validation_error", "host"
    ),
    Bad("host-254", _register_body(host=_hostname(254)), 422, "validation_error", "host"),
    Bad("host-url", _register_body(host="http://127.0.0.1"), 422, "validation_error", "host"),
    Bad("host-with-port", _register_body(host="127.0.0.1:80"), 422, "validation_error", "host"),
    Bad("host-with-path", _register_body(host="127.0.0.1/x"), 422, "validation_error", "host"),
    Bad("host-unbalanced-bracket", _register_body(host="[::1"), 422, "validation_error", "host"),
    Bad("host-bad-ipv6", _register_body(host="::g"), 422, "validation_error", "host"),
    Bad("host-nul", _register_body(host="local\x00host"), 422, "validation_error", "host"),
    Bad("host-int", _register_body(host=127001), 422, "validation_error", "host"),
    Bad("host-missing", _register_body(host=_MISSING), 422, "validation_error", "host"),
    # -- health_endpoint --------------------------------------------------------
    Bad(
        "endpoint-absolute-url",
        _register_body(health_endpoint="http://evil.invalid/health"),
        422,
        "validation_error",
        "health_endpoint",
    ),
    Bad(
        "endpoint-double-slash",
        _register_body(health_endpoint="//x"),
        422,
        "validation_error",
        "health_endpoint",
    ),
    Bad(
        "endpoint-no-slash",
        _register_body(health_endpoint="health"),
        422,
        "validation_error",
        "health_endpoint",
    ),
    Bad(
        "endpoint-empty",
        _register_body(health_endpoint=""),
        422,
        "validation_error",
        "health_endpoint",
    ),
    Bad(
        "endpoint-space",
        _register_body(health_endpoint="/he alth"),
        422,
        "validation_error",
        "health_endpoint",
    ),
    Bad(
        "endpoint-hash",
        _register_body(health_endpoint="/health#x"),
        422,
        "validation_error",
        "health_endpoint",
    ),
    Bad(
        "endpoint-tab",
        _register_body(health_endpoint="/a\tb"),
        422,
        "validation_error",
        "health_endpoint",
    ),
    Bad(
        "endpoint-newline",
        _register_body(health_endpoint="/a\r\nHost: x"),
        422,
        "validation_error",
        "health_endpoint",
    ),
    Bad(
        "endpoint-nul",
        _register_body(health_endpoint="/a\x00"),
        422,
        "validation_error",
        "health_endpoint",
    ),
    Bad(
        "endpoint-2049",
        _register_body(health_endpoint="/" + "e" * 2048),
        422,
        "validation_error",
        "health_endpoint",
    ),
    Bad(
        "endpoint-int",
        _register_body(health_endpoint=5),
        422,
        "validation_error",
        "health_endpoint",
    ),
    # -- metadata ---------------------------------------------------------------
    Bad(
        "metadata-65-entries",
        _register_body(metadata={f"k{i}": "v" for i in range(65)}),
        422,
        "validation_error",
        "metadata",
    ),
    Bad(
        "metadata-key-129",
        _register_body(metadata={"k" * 129: "v"}),
        422,
        "validation_error",
        "metadata",
    ),
    Bad(
        "metadata-value-1025",
        _register_body(metadata={"big": "v" * 1025}),
        422,
        "validation_error",
        "metadata.big",
    ),
    Bad(
        "metadata-value-int",
        _register_body(metadata={"n": 5}),
        422,
        "validation_error",
        "metadata.n",
    ),
    Bad(
        "metadata-value-null",
        _register_body(metadata={"n": None}),
        422,
        "validation_error",
        "metadata.n",
    ),
    Bad(
        "metadata-value-object",
        _register_body(metadata={"n": {"x": "y"}}),
        422,
        "validation_error",
        "metadata.n",
    ),
    Bad("metadata-list", _register_body(metadata=["a", "b"]), 422, "validation_error", "metadata"),
    Bad("metadata-string", _register_body(metadata="v=1"), 422, "validation_error", "metadata"),
    Bad(
        "metadata-empty-key",
        _register_body(metadata={"": "v"}),
        422,
        "validation_error",
        "metadata",
    ),
    Bad(
        "metadata-key-control",
        _register_body(metadata={"a\nb": "v"}),
        422,
        "validation_error",
        "metadata",
    ),
    Bad(
        "metadata-value-control",
        _register_body(metadata={"c": "x\x01y"}),
        422,
        "validation_error",
        "metadata.c",
    ),
    Bad(
        "metadata-value-nul",
        _register_body(metadata={"c": "x\x00y"}),
        422,
        "validation_error",
        "metadata.c",
    ),
    # -- load_percentage --------------------------------------------------------
    Bad(
        "load-over-1",
        _register_body(load_percentage=1.5),
        422,
        "validation_error",
        "load_percentage",
    ),
    Bad(
        "load-negative",
        _register_body(load_percentage=-0.1),
        422,
        "validation_error",
        "load_percentage",
    ),
    Bad(
        "load-string",
        _register_body(load_percentage="0.5"),
        422,
        "validation_error",
        "load_percentage",
    ),
    # -- heartbeat --------------------------------------------------------------
    Bad("hb-not-json", b"{", 400, "invalid_json", path=HEARTBEAT),
    Bad(
        "hb-json-array",
        b'["' + VICTIM_SERVICE.encode() + b'"]',
        400,
        "invalid_json",
        path=HEARTBEAT,
    ),
    Bad("hb-invalid-utf8", b'{"service_name": "\xc3\x28"}', 400, "invalid_json", path=HEARTBEAT),
    Bad(
        "hb-text-plain",
        _heartbeat_body(),
        415,
        "unsupported_media_type",
        path=HEARTBEAT,
        content_type="text/plain",
    ),
    Bad(
        "hb-missing-instance",
        _heartbeat_body(instance_id=_MISSING),
        422,
        "validation_error",
        "instance_id",
        path=HEARTBEAT,
    ),
    Bad(
        "hb-missing-service",
        _heartbeat_body(service_name=_MISSING),
        422,
        "validation_error",
        "service_name",
        path=HEARTBEAT,
    ),
    Bad(
        "hb-service-int",
        _heartbeat_body(service_name=5),
        422,
        "validation_error",
        "service_name",
        path=HEARTBEAT,
    ),
    Bad(
        "hb-load-over-1",
        _heartbeat_body(load_percentage=1.5),
        422,
        "validation_error",
        "load_percentage",
        path=HEARTBEAT,
    ),
    Bad(
        "hb-load-string",
        _heartbeat_body(load_percentage="high"),
        422,
        "validation_error",
        "load_percentage",
        path=HEARTBEAT,
    ),
    # -- size: 413 ----------------------------------------------------------------
    Bad("body-over-limit", _register_body(pad="p" * MAX_BODY), 413, "payload_too_large"),
    Bad(
        "hb-body-over-limit",
        _heartbeat_body(pad="p" * MAX_BODY),
        413,
        "payload_too_large",
        path=HEARTBEAT,
    ),
]


@pytest.fixture(autouse=True)
def victim(server: ServerProcess) -> Iterator[Api]:
    """The instance every bad request tries to change, fresh for each test."""
    with api_for(server.url, SECRET) as owner:
        owner.register_ok(ORIGINAL)
        yield owner


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[bad.id for bad in BAD_REQUESTS])
def test_bad_write_is_rejected_and_changes_nothing(api: Api, bad: Bad) -> None:
    before = api.snapshot()
    response = api.post_raw(bad.path, bad.content, bad.content_type)
    if bad.also_ok_status is not None and response.status_code == bad.also_ok_status:
        assert_error(response, bad.also_ok_status, "validation_error")
    elif bad.field is not None:
        assert_validation_error(response, bad.field)
    else:
        assert_error(response, bad.status, bad.error)
    assert api.snapshot() == before, "a rejected request changed the registry"


def test_body_over_limit_without_content_length_is_413(api: Api) -> None:
    """A chunked body is counted while it is read, not trusted by its headers."""
    before = api.snapshot()
    payload = _register_body(pad="p" * MAX_BODY)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 4096):
            yield payload[start : start + 4096]

    response = api.http.post(
        REGISTER, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "payload_too_large")
    assert api.snapshot() == before


def test_413_comes_before_authentication(server: ServerProcess) -> None:
    """docs/api.md: the body is never buffered for an unauthenticated caller."""
    with api_for(server.url, None) as anon, api_for(server.url, SECRET) as api:
        before = api.snapshot()
        response = anon.post_raw(REGISTER, _register_body(pad="p" * MAX_BODY))
        assert_error(response, 413, "payload_too_large")
        assert api.snapshot() == before


def test_body_of_exactly_the_limit_is_accepted(api: Api) -> None:
    """The limit is inclusive: 65536 bytes pass, 65537 (above) do not."""
    service = unique_name("size-limit")
    base = {"service_name": service, "instance_id": "i", "host": "127.0.0.1", "port": 1}
    empty = len(json.dumps({**base, "pad": ""}).encode())
    exact = json.dumps({**base, "pad": "p" * (MAX_BODY - empty)}).encode()
    assert len(exact) == MAX_BODY
    response = api.post_raw(REGISTER, exact)
    assert response.status_code == 200, response.text
    api.registered.add((service, "i"))
    over = json.dumps({**base, "instance_id": "j", "pad": "p" * (MAX_BODY - empty + 1)}).encode()
    assert_error(api.post_raw(REGISTER, over), 413, "payload_too_large")
    assert api.instance(service, "j") is None


def test_registry_checks_come_after_validation(api: Api) -> None:
    """A heartbeat for an unknown instance with a bad load is 422, not 404."""
    service = unique_name("order")
    response = api.heartbeat(service, "ghost", load_percentage=2)
    assert_validation_error(response, "load_percentage")


# -- the accepting side of every limit ------------------------------------------

GOOD_CHANGES: dict[str, dict[str, Any]] = {
    "name-128": {"instance_id": "n" * 128},
    "all-allowed-chars": {"instance_id": "Az09._-x"},
    "digit-first": {"instance_id": "9lives"},
    "host-localhost": {"host": "localhost"},
    "host-trailing-dot": {"host": "localhost."},
    "host-253": {"host": _hostname(253)},
    "host-label-63": {"host": "l" * 63 + ".invalid"},
    "host-ipv4": {"host": "127.0.0.1"},
    "host-ipv6": {"host": "::1"},
    "host-ipv6-bracketed": {"host": "[::1]"},
    "host-ipv6-long": {"host": "0:0:0:0:0:0:0:1"},
    "port-1": {"port": 1},
    "port-65535": {"port": 65535},
    "endpoint-root": {"health_endpoint": "/"},
    "endpoint-query": {"health_endpoint": "/health?verbose=1&x=%20"},
    "endpoint-2048": {"health_endpoint": "/" + "e" * 2047},
    "metadata-64-entries": {"metadata": {f"k{i}": "v" for i in range(64)}},
    "metadata-key-128": {"metadata": {"k" * 128: "v"}},
    "metadata-value-1024": {"metadata": {"big": "v" * 1024}},
    "metadata-empty-value": {"metadata": {"empty": ""}},
    "metadata-unicode": {"metadata": {"ünï-cödé": "✓ ok"}},
    "load-0": {"load_percentage": 0.0},
    "load-1": {"load_percentage": 1.0},
}


@pytest.mark.parametrize("changes", GOOD_CHANGES.values(), ids=GOOD_CHANGES)
def test_boundary_values_are_accepted_and_stored_as_sent(
    api: Api, unique: Names, changes: dict[str, Any]
) -> None:
    service = unique("good")
    body = {
        "service_name": service,
        "instance_id": "i",
        "host": "127.0.0.1",
        "port": 8080,
        **changes,
    }
    response = api.register(body)
    try:
        assert response.status_code == 200, response.text
        instance = api.instance(service, body["instance_id"])
        assert instance is not None
        for key, value in changes.items():
            assert instance[key] == value, (key, instance[key])
    finally:
        # Unusual hosts must not linger where a probe could ever resolve them.
        api.cleanup()


def test_service_name_of_128_chars_is_accepted(api: Api) -> None:
    base = unique_name("s128")
    service = base + "x" * (128 - len(base))
    body = {"service_name": service, "instance_id": "i", "host": "127.0.0.1", "port": 1}
    api.register_ok(body)
    assert api.service(service).status_code == 200
