"""`/openapi.json`, generated from the models the core validates with.

Generated, not hand-written, so a schema test (schemathesis) exercises exactly
what the registry accepts and returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from .models import (
    MAX_TAGS,
    NAME_PATTERN,
    ErrorResponse,
    HealthResponse,
    HealthyResponse,
    HeartbeatRequest,
    MaintenanceRequest,
    RegisterRequest,
    RegisterResponse,
    ServiceResponse,
    ServicesResponse,
    SuccessResponse,
    Tag,
    TargetGroup,
)
from .render import encode

__all__ = [
    "openapi_bytes",
    "openapi_document",
]


_MODELS: list[type[BaseModel]] = [
    RegisterRequest,
    HeartbeatRequest,
    MaintenanceRequest,
    SuccessResponse,
    RegisterResponse,
    ErrorResponse,
    ServicesResponse,
    ServiceResponse,
    HealthyResponse,
    TargetGroup,
    HealthResponse,
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


#: Any request may get it: a head is bounded before its route is known.
_HEAD_TOO_LARGE = (
    "The request line and headers take more than SERVICE_DISCOVERY_MAX_HEAD_BYTES "
    "(16384 by default); the connection is closed"
)
_INVALID = "A field or parameter is invalid (`details` names each)"


def _errors(*codes: int, invalid: str = _INVALID) -> dict[str, Any]:
    """The error answers `codes`, and 431, which every operation may answer.

    `invalid` says what the operation's 422 covers, its limits included.
    """
    described = {422: invalid, 431: _HEAD_TOO_LARGE}
    return {
        str(code): _json(_ref("ErrorResponse"), described.get(code, "Error"))
        for code in sorted({*codes, 431})
    }


_BLOCKING = [
    {
        "name": "index",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 0, "maximum": 9_999_999_999_999_999_999},
        "description": "Block until the X-Discovery-Index passes this value",
    },
    {
        "name": "wait",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,9})?(ms|s|m|h)?$"},
        "description": "How long to block (default 60s, at most 5m)",
    },
]
_FILTERS = [
    {
        "name": "status",
        "in": "query",
        "required": False,
        "schema": {"type": "array", "items": {"enum": ["healthy", "unhealthy", "unknown"]}},
        "style": "form",
        "explode": True,
        "description": "Only instances with one of these statuses (repeatable: any may match)",
    },
    {
        "name": "tag",
        "in": "query",
        "required": False,
        "schema": {
            "type": "array",
            "items": TypeAdapter[str](Tag).json_schema(),
            "maxItems": MAX_TAGS,
        },
        "style": "form",
        "explode": True,
        "description": "Only instances carrying every one of these tags (repeatable)",
    },
]
_FILTER_NOTE = (
    "Filters: `meta.<key>=<value>` (repeatable; every one must match the instance's "
    "metadata), `tag` (repeatable; the instance must carry every one) and `status` "
    "(repeatable; any may match). They combine with `index` and `wait`."
)
_NAME = {"type": "string", "pattern": NAME_PATTERN}
_ANY_NAME = {"type": "string", "minLength": 1}
_INDEX_HEADER = {
    "X-Discovery-Index": {"schema": {"type": "integer"}},
    # Cluster mode only (docs/cluster.md): which etcd, and how fresh this node's view is.
    "X-Discovery-Cluster": {
        "description": "Cluster mode: etcd's cluster id (16 hex digits)",
        "schema": {"type": "string"},
    },
    "X-Discovery-Last-Contact": {
        "description": "Cluster mode: milliseconds since this node last heard from etcd",
        "schema": {"type": "integer"},
    },
    "X-Discovery-Stale": {
        "description": "Cluster mode: `true` when the node's view may be behind the store",
        "schema": {"type": "string", "enum": ["true"]},
    },
}


_INVALID_READ = (
    "A query parameter is invalid (`index`, `wait`, `status`, `tag`, a `meta.<key>` filter), "
    "or more than SERVICE_DISCOVERY_MAX_FILTER_PAIRS (16 by default) distinct "
    "`meta.*` filters are given"
)


def _read(summary: str, schema: dict[str, Any], *, name: bool, codes: tuple[int, ...]) -> Any:
    params: list[dict[str, Any]] = list(_BLOCKING) + _FILTERS
    if name:
        # Any name may be read (an impossible one is simply never registered),
        # so the path parameter is a plain string here.
        params.insert(0, {"name": "name", "in": "path", "required": True, "schema": _ANY_NAME})
    ok = _json(schema, "OK") | {"headers": _INDEX_HEADER}
    return {
        "get": {
            "summary": summary,
            "description": _FILTER_NOTE,
            "parameters": params,
            "responses": {"200": ok} | _errors(401, *codes, 422, invalid=_INVALID_READ),
        }
    }


#: Request bodies as the contract shows them, so "try it out" starts from a valid one.
_EXAMPLES: dict[str, dict[str, Any]] = {
    "RegisterRequest": {
        "service_name": "game-service",
        "instance_id": "game-1",
        "host": "127.0.0.1",
        "port": 8080,
        "health_endpoint": "/health",
        "metadata": {"version": "1.0.0", "environment": "production"},
    },
    "HeartbeatRequest": {
        "service_name": "game-service",
        "instance_id": "game-1",
        "load_percentage": 0.42,
    },
    "MaintenanceRequest": {"reason": "deploy"},
}


_TEXT = {"schema": {"type": "string"}}


def _page(summary: str, media_type: str) -> Any:
    """A public GET that answers a fixed document for people or scrapers."""
    return {
        "get": {
            "summary": summary,
            "security": [],
            "responses": {"200": {"description": "OK", "content": {media_type: _TEXT}}}
            | _errors(405),
        }
    }


def _pages(paths: Iterable[str]) -> dict[str, Any]:
    kinds = {".js": "text/javascript", ".css": "text/css"}
    documented = {}
    for path in sorted(paths):
        kind = next((t for suffix, t in kinds.items() if path.endswith(suffix)), "text/html")
        documented[path] = _page(f"Page file {path}" if "." in path else f"The {path} page", kind)
    return documented


_INVALID_METADATA = (
    _INVALID + ", or the metadata's keys and values take more than "
    "SERVICE_DISCOVERY_MAX_METADATA_BYTES (4096 by default) bytes of UTF-8 together"
)


def _write(
    summary: str, request: str, response: str = "SuccessResponse", *, invalid: str = _INVALID
) -> Any:
    body = _json(_ref(request), request)
    body["content"]["application/json"]["example"] = _EXAMPLES[request]
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, **body},
            "responses": {"200": _json(_ref(response), "OK")}
            | _errors(400, 401, 403, 404, 413, 415, 422, 503, invalid=invalid),
        }
    }


_INSTANCE_PATH = [
    {"name": "service_name", "in": "path", "required": True, "schema": _NAME},
    {"name": "instance_id", "in": "path", "required": True, "schema": _NAME},
]


def _maintenance() -> Any:
    body = _json(_ref("MaintenanceRequest"), "MaintenanceRequest")
    body["content"]["application/json"]["example"] = _EXAMPLES["MaintenanceRequest"]
    ok = {"200": _json(_ref("SuccessResponse"), "OK (also when nothing changed)")}
    return {
        "put": {
            "summary": "Put an instance in maintenance (out of healthy reads)",
            "parameters": _INSTANCE_PATH,
            "requestBody": {"required": False, **body},
            "responses": ok | _errors(400, 401, 403, 404, 413, 415, 422, 503),
        },
        "delete": {
            "summary": "End an instance's maintenance",
            "parameters": _INSTANCE_PATH,
            "responses": ok | _errors(401, 403, 404, 503),
        },
    }


_WATCH = {
    "get": {
        "summary": "Watch services as a Server-Sent Events stream (see docs/api.md)",
        "parameters": [
            {
                "name": "service",
                "in": "query",
                "required": True,
                "style": "form",
                "explode": True,
                "schema": {
                    "type": "array",
                    "items": {"anyOf": [_NAME, {"const": "*"}]},
                    "minItems": 1,
                },
                "description": "A service to follow (repeat for several, at most "
                "SERVICE_DISCOVERY_WATCH_MAX_SERVICES distinct ones); * follows every one",
            },
            {
                "name": "index",
                "in": "query",
                "required": False,
                "schema": _BLOCKING[0]["schema"],
                "description": "Resume after this event id (Last-Event-ID wins)",
            },
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "The id of the last event received, to resume from",
            },
        ],
        "responses": {
            "200": {
                "description": "event: service / id: <index> / data: the service's body plus index",
                "content": {"text/event-stream": _TEXT},
            }
        }
        | _errors(
            401,
            422,
            503,
            invalid="A `service` is neither a service name nor `*`, more than "
            "SERVICE_DISCOVERY_WATCH_MAX_SERVICES (256 by default) distinct services are "
            "named, or `index` or `Last-Event-ID` is not a non-negative integer",
        ),
    }
}


_TOKEN_ACCESS = {
    "get": {
        "summary": "What the token sent may do (a read; changes nothing)",
        "responses": {
            "200": _json(
                {
                    "type": "object",
                    "properties": {"access": {"enum": ["read-write", "read-only"]}},
                    "required": ["access"],
                    "additionalProperties": False,
                },
                "The access of the token: read-write (the secret) or read-only",
            )
        }
        | _errors(401),
    }
}


_CONSUL_BLOCKING = [
    {
        "name": "index",
        "in": "query",
        "required": False,
        "schema": _BLOCKING[0]["schema"],
        "description": "Block until X-Consul-Index passes this value",
    },
    {
        "name": "wait",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": r"^([0-9]{1,12}(\.[0-9]{1,9})?(ns|us|ms|s|m|h))+$"},
        "description": "How long to block, a Go duration (default 5m, at most 10m)",
    },
    {
        "name": "stale",
        "in": "query",
        "required": False,
        "allowEmptyValue": True,
        "schema": {"type": "string", "maxLength": 0},
        "description": "Accepted; every read is answered from this node's view",
    },
]
_CONSUL_FILTERS = [
    {
        "name": "tag",
        "in": "query",
        "required": False,
        "schema": {"type": "array", "items": {"type": "string"}},
        "style": "form",
        "explode": True,
        "description": "Only instances with every one of these tags",
    },
]
_CONSUL_PASSING = {
    "name": "passing",
    "in": "query",
    "required": False,
    "allowEmptyValue": True,
    "schema": {"enum": ["", "1", "true", "0", "false"]},
    "description": "Only instances whose every check passes",
}
_CONSUL_HEADERS = {
    "X-Consul-Index": {"schema": {"type": "integer", "minimum": 1}},
    "X-Consul-KnownLeader": {"schema": {"type": "string", "enum": ["true"]}},
    "X-Consul-LastContact": {"schema": {"type": "integer", "minimum": 0}},
}
_CONSUL_INVALID = (
    "A query parameter is invalid (`index`, `wait`, `passing`), or the path's state is "
    "not any, passing, warning or critical"
)


def _consul_read(summary: str, path_name: str | None, extra: list[dict[str, Any]]) -> Any:
    """A Consul-compatible read (docs/integrations.md); its body is Consul's, untyped here."""
    params: list[dict[str, Any]] = [*_CONSUL_BLOCKING, *extra]
    if path_name is not None:
        params.insert(0, {"name": path_name, "in": "path", "required": True, "schema": _ANY_NAME})
    ok = _json({"type": ["array", "object"]}, "OK (Consul's shape)")
    ok["headers"] = _CONSUL_HEADERS
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "responses": {"200": ok} | _errors(400, 401, 422, invalid=_CONSUL_INVALID),
        }
    }


def _consul_paths() -> dict[str, Any]:
    agent_self = _json({"type": "object", "required": ["Config", "Member"]}, "OK")
    return {
        "/v1/agent/self": {
            "get": {
                "summary": "Consul: this node (Config.Datacenter, Config.NodeName)",
                "security": [],
                "responses": {"200": agent_self} | _errors(),
            }
        },
        "/v1/catalog/services": _consul_read("Consul: every service and its tags", None, []),
        "/v1/catalog/service/{name}": _consul_read(
            "Consul: a service's instances (catalog)", "name", _CONSUL_FILTERS
        ),
        "/v1/health/service/{name}": _consul_read(
            "Consul: a service's instances with their checks",
            "name",
            [*_CONSUL_FILTERS, _CONSUL_PASSING],
        ),
        "/v1/health/state/{state}": _consul_read(
            "Consul: every check in a state (any, passing, warning, critical)", "state", []
        ),
        "/v1/kv/{key}": _consul_kv(),
    }


def _consul_kv() -> Any:
    """Consul's KV store, served empty: every key is a 404 (blocking at index 1)."""
    params = [
        {"name": "key", "in": "path", "required": True, "schema": _ANY_NAME},
        *_CONSUL_BLOCKING,
    ]
    absent = _json(_ref("ErrorResponse"), "Every key is absent")
    absent["headers"] = _CONSUL_HEADERS
    return {
        "get": {
            "summary": "Consul: the KV store, always empty",
            "parameters": params,
            "responses": {"404": absent} | _errors(400, 401, 422, invalid=_CONSUL_INVALID),
        }
    }


def openapi_document(version: str, pages: Iterable[str] = ()) -> dict[str, Any]:
    """The whole document; `pages` are the page paths this registry serves (`/ui`, `/docs`...)."""
    _, definitions = models_json_schema(
        [(model, "validation") for model in _MODELS],
        ref_template="#/components/schemas/{model}",
    )
    targets = {"type": "array", "items": _ref("TargetGroup")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "service-discovery", "version": version},
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/discovery/register": _write(
                "Register or update an instance",
                "RegisterRequest",
                "RegisterResponse",
                invalid=_INVALID_METADATA,
            ),
            "/v1/discovery/heartbeat": _write("Renew an instance's lease", "HeartbeatRequest"),
            "/v1/discovery/unregister/{service_name}/{instance_id}": {
                "delete": {
                    "summary": "Remove an instance",
                    "parameters": _INSTANCE_PATH,
                    "responses": {"200": _json(_ref("SuccessResponse"), "OK")}
                    | _errors(401, 403, 404, 503),
                }
            },
            "/v1/discovery/maintenance/{service_name}/{instance_id}": _maintenance(),
            "/v1/discovery/services": _read(
                "Every service", _ref("ServicesResponse"), name=False, codes=()
            ),
            "/v1/discovery/services/{name}": _read(
                "One service", _ref("ServiceResponse"), name=True, codes=(404,)
            ),
            "/v1/discovery/services/{name}/healthy": _read(
                "A service's healthy instances", _ref("HealthyResponse"), name=True, codes=()
            ),
            "/v1/discovery/services/{name}/instances": _read(
                "A service as Prometheus HTTP SD", targets, name=True, codes=()
            ),
            "/v1/discovery/prometheus": _read(
                "Every instance as Prometheus HTTP SD", targets, name=False, codes=()
            ),
            "/v1/discovery/watch": _WATCH,
            "/v1/discovery/token": _TOKEN_ACCESS,
            "/health": {
                "get": {
                    "summary": "The registry's own health",
                    "security": [],
                    "responses": {"200": _json(_ref("HealthResponse"), "OK")} | _errors(),
                }
            },
            "/metrics": _page("The registry's own metrics (Prometheus text format)", "text/plain"),
            "/openapi.json": _page("This document", "application/json"),
        }
        | _consul_paths()
        | _pages(pages),
    }


def openapi_bytes(version: str, pages: Iterable[str] = ()) -> bytes:
    return encode(openapi_document(version, pages))
