"""Every route the HTTP mapping answers is in /openapi.json, and nothing else is.

The routes come from the mapping's own table (`HttpApi.routes()`), with the
pages a server loads (`/ui`, and `/docs` when Swagger UI is installed), so an
endpoint added by any later change fails here until the document has it.
`conformance/conftest.py` checks the other side on real servers: every
request the conformance suite sends matches a documented route.
"""

from __future__ import annotations

from frontends.runtime.pages import load_pages
from sd_core import HttpApi, Registry, RegistryConfig, openapi_document


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
