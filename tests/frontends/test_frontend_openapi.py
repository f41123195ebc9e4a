"""Every route the HTTP mapping answers is in /openapi.json, and nothing else is.

The routes come from the mapping's own table (`HttpApi.routes()`), with the
pages a server loads (`/ui`, and `/docs` when Swagger UI is installed), so an
endpoint added by any later change fails here until the document has it.
`conformance/conftest.py` checks the other side on real servers: every
request the conformance suite sends matches a documented route.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import jsonschema_rs
import pytest

from frontends.runtime.pages import load_pages
from sd_core import HttpApi, Registry, RegistryConfig, RequestError, openapi_document
from sd_core.watch_stream import WatchSpec, parse_watch


def _parse_watch(name: str) -> WatchSpec | RequestError:
    try:
        return parse_watch(b"service=" + quote(name, safe="*").encode(), None, 256)
    except RequestError as error:
        return error


def test_document_has_exactly_the_routes_the_mapping_answers() -> None:
    pages = load_pages()
    api = HttpApi(
        Registry(RegistryConfig(), now=0.0, wall_offset=0.0),
        secret="s",
        frontend="test",
        version="0",
        pages=pages,
    )
    document = openapi_document("0", pages)
    documented = sorted(
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    )
    assert documented == api.routes()


def test_request_bodies_carry_the_contracts_examples() -> None:
    paths = openapi_document("0")["paths"]
    for path in ("/v1/discovery/register", "/v1/discovery/heartbeat"):
        content = paths[path]["post"]["requestBody"]["content"]["application/json"]
        assert content["example"]["service_name"] == "game-service"


def test_the_register_answer_documents_ttl_seconds() -> None:
    document = openapi_document("0")
    answer = document["paths"]["/v1/discovery/register"]["post"]["responses"]["200"]
    reference = answer["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][reference.rsplit("/", 1)[1]]
    assert "ttl_seconds" in schema["properties"]
    assert {"success", "message", "ttl_seconds"} <= set(schema["required"])


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    paths = openapi_document("0", load_pages())["paths"]
    return [(method, path, op) for path, ops in paths.items() for method, op in ops.items()]


def test_every_operation_lists_431_for_a_head_over_the_limit() -> None:
    """A head is bounded before its route is known: any operation may answer 431."""
    for method, path, operation in _operations():
        answer = operation["responses"].get("431")
        assert answer is not None, (method, path)
        assert "SERVICE_DISCOVERY_MAX_HEAD_BYTES" in answer["description"], (method, path)


def test_each_422_names_the_limits_behind_it() -> None:
    paths = openapi_document("0")["paths"]

    def invalid(path: str, method: str) -> str:
        description: str = paths[path][method]["responses"]["422"]["description"]
        return description

    assert "SERVICE_DISCOVERY_MAX_METADATA_BYTES" in invalid("/v1/discovery/register", "post")
    for path in ("/v1/discovery/services", "/v1/discovery/prometheus"):
        assert "SERVICE_DISCOVERY_MAX_FILTER_PAIRS" in invalid(path, "get")
    assert "SERVICE_DISCOVERY_WATCH_MAX_SERVICES" in invalid("/v1/discovery/watch", "get")


@pytest.mark.parametrize(
    ("name", "valid"),
    [("game-service", True), ("*", True), ("\x00", False), ("../..", False), ("", False)],
)
def test_the_watch_takes_service_names_or_star_as_the_server_does(name: str, valid: bool) -> None:
    watch = openapi_document("0")["paths"]["/v1/discovery/watch"]["get"]
    schema = next(p["schema"] for p in watch["parameters"] if p["name"] == "service")
    assert jsonschema_rs.is_valid(schema, [name]) is valid
    spec_or_error = _parse_watch(name)
    assert (not isinstance(spec_or_error, RequestError)) is valid
