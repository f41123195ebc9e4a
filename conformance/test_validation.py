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


def _invalid(case: str, detail: str | None = None, **change: Any) -> Bad:
    """A registration whose one ``change`` is refused: 422 naming the field (or ``detail``)."""
    [field] = change
    return Bad(case, _register_body(**change), 422, "validation_error", detail or field)


def _non_json_number(case: str, content: bytes) -> Bad:
    """A body with NaN or Infinity. They are not JSON, but a Python parser lets them through
    to validation: either rejection (400 or 422) is acceptable, storing them is not."""
    return Bad(case, content, 400, "invalid_json", also_ok_status=422)


def _each_invalid(field: str, values: dict[str, Any]) -> list[Bad]:
    """Registrations that each set ``field`` to one refused value (keyed by the case's id)."""
    return [_invalid(case, **{field: value}) for case, value in values.items()]


def _invalid_heartbeat(case: str, **change: Any) -> Bad:
    """A heartbeat whose one ``change`` is refused: 422 naming that field."""
    [field] = change
    return Bad(case, _heartbeat_body(**change), 422, "validation_error", field, path=HEARTBEAT)


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
    _non_json_number("nan-load", _register_body(load_percentage=0.5).replace(b"0.5", b"NaN")),
    _non_json_number(
        "infinity-port", _register_body(port=1).replace(b'"port": 1', b'"port": Infinity')
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
    *_each_invalid(
        "port",
        {
            "port-string": "8080",
            "port-float": 8080.0,
            "port-bool": True,
            "port-zero": 0,
            "port-65536": 65536,
            "port-negative": -1,
            "port-null": None,
            "port-missing": _MISSING,
        },
    ),
    # -- service_name / instance_id -------------------------------------------
    *_each_invalid(
        "service_name",
        {
            "name-slash": "a/b",
            "name-dot-first": ".x",
            "name-dash-first": "-x",
            "name-underscore-first": "_x",
            "name-empty": "",
            "name-129": "s" * 129,
            "name-nul": "a\x00b",
            "name-non-ascii": "caf\xe9",
            "name-space": "a b",
            "name-colon": "a:b",
            "name-int": 5,
            "name-missing": _MISSING,
        },
    ),
    *_each_invalid(
        "instance_id",
        {
            "id-slash": "a/b",
            "id-dot-first": "..",
            "id-empty": "",
            "id-129": "i" * 129,
            "id-nul": "x\x00",
            "id-null": None,
            "id-missing": _MISSING,
        },
    ),
    # -- host -------------------------------------------------------------------
    *_each_invalid(
        "host",
        {
            "host-empty": "",
            "host-space": "bad host",
            "host-leading-hyphen": "-bad.invalid",
            "host-trailing-hyphen": "bad-.invalid",
            "host-empty-label": "a..invalid",
            "host-underscore": "a_b.invalid",
            "host-label-64": "l" * 64 + ".invalid",
            "host-254": _hostname(254),
            "host-url": "http://127.0.0.1",
            "host-with-port": "127.0.0.1:80",
            "host-with-path": "127.0.0.1/x",
            "host-unbalanced-bracket": "[::1",
            "host-bad-ipv6": "::g",
            "host-nul": "local\x00host",
            "host-int": 127001,
            "host-missing": _MISSING,
        },
    ),
    # -- health_endpoint --------------------------------------------------------
    *_each_invalid(
        "health_endpoint",
        {
            "endpoint-absolute-url": "http://evil.invalid/health",
            "endpoint-double-slash": "//x",
            "endpoint-no-slash": "health",
            "endpoint-empty": "",
            "endpoint-space": "/he alth",
            "endpoint-hash": "/health#x",
            "endpoint-tab": "/a\tb",
            "endpoint-newline": "/a\r\nHost: x",
            "endpoint-nul": "/a\x00",
            "endpoint-2049": "/" + "e" * 2048,
            "endpoint-int": 5,
        },
    ),
    # -- metadata ---------------------------------------------------------------
    *_each_invalid(
        "metadata",
        {
            "metadata-65-entries": {f"k{i}": "v" for i in range(65)},
            "metadata-key-129": {"k" * 129: "v"},
        },
    ),
    _invalid("metadata-value-1025", "metadata.big", metadata={"big": "v" * 1025}),
    _invalid("metadata-over-4096-bytes", metadata={f"k{i}": "v" * 1000 for i in range(5)}),
    _invalid("metadata-value-int", "metadata.n", metadata={"n": 5}),
    _invalid("metadata-value-null", "metadata.n", metadata={"n": None}),
    _invalid("metadata-value-object", "metadata.n", metadata={"n": {"x": "y"}}),
    *_each_invalid(
        "metadata",
        {
            "metadata-list": ["a", "b"],
            "metadata-string": "v=1",
            "metadata-empty-key": {"": "v"},
            "metadata-key-control": {"a\nb": "v"},
        },
    ),
    _invalid("metadata-value-control", "metadata.c", metadata={"c": "x\x01y"}),
    _invalid("metadata-value-nul", "metadata.c", metadata={"c": "x\x00y"}),
    # -- load_percentage --------------------------------------------------------
    *_each_invalid(
        "load_percentage",
        {
            "load-over-1": 1.5,
            "load-negative": -0.1,
            "load-string": "0.5",
        },
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
    _invalid_heartbeat("hb-missing-instance", instance_id=_MISSING),
    _invalid_heartbeat("hb-missing-service", service_name=_MISSING),
    _invalid_heartbeat("hb-service-int", service_name=5),
    _invalid_heartbeat("hb-load-over-1", load_percentage=1.5),
    _invalid_heartbeat("hb-load-string", load_percentage="high"),
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
