"""Public endpoints, unknown paths and wrong methods.

``/health``, ``/metrics`` and ``/openapi.json`` are what orchestrators,
scrapers and humans hit without credentials; unknown paths and wrong methods
must still answer in the one JSON error shape (a framework's default HTML page
would break every client that parses errors), and path/method are checked
before authentication (docs/api.md, order of checks, step 1).
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conformance.client import Api, assert_error, instance_body, media_type
from conformance.common import list_endpoints
from conformance.fixture_types import Names
from conformance.server_process import ServerProcess


def test_health_needs_no_token_and_has_the_documented_fields(
    anon: httpx.Client, frontend: str
) -> None:
    response = anon.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "healthy"
    assert body["service"] == "service-discovery"
    assert body["frontend"] == frontend
    assert isinstance(body["load_percentage"], float) and 0.0 <= body["load_percentage"] <= 1.0
    assert isinstance(body["version"], str) and body["version"]
    assert isinstance(body["uptime_seconds"], (int, float)) and body["uptime_seconds"] >= 0
    assert isinstance(body["instances"], int) and body["instances"] >= 0
    assert isinstance(body["services"], int) and body["services"] >= 0
    assert body["self_preservation"] is False
    assert body["self_preservation_reason"] is None


def test_health_counts_instances_and_services(api: Api, anon: httpx.Client, unique: Names) -> None:
    """The counts move with the registry (other tests may run, so compare deltas)."""
    before = anon.get("/health").json()
    service = unique("health-count")
    api.register_ok(instance_body(service, "a", port=1))
    api.register_ok(instance_body(service, "b", port=2))
    after = anon.get("/health").json()
    assert after["instances"] == before["instances"] + 2
    assert after["services"] == before["services"] + 1


def test_metrics_is_prometheus_text_without_token(anon: httpx.Client) -> None:
    response = anon.get("/metrics")
    assert response.status_code == 200, response.text
    assert media_type(response) == "text/plain", response.headers
    families = list(text_string_to_metric_families(response.text))
    assert families, "no metric families in /metrics"


def test_openapi_json_without_token(anon: httpx.Client) -> None:
    response = anon.get("/openapi.json")
    assert response.status_code == 200, response.text
    document = response.json()
    assert str(document["openapi"]).startswith("3."), document.get("openapi")
    for path in (
        "/v1/discovery/register",
        "/v1/discovery/heartbeat",
        "/v1/discovery/services",
        "/v1/discovery/prometheus",
    ):
        assert path in document["paths"], f"{path} missing from openapi.json paths"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/nope",
        "/v1",
        "/v1/discovery",
        "/v1/discovery/unknown",
        "/v1/discovery/services/",
        "/v1/discovery/services/svc/instances/extra",
        "/v1/discovery/services/svc/unhealthy",
        "/v1/discovery/unregister/only-service",
        "/health/",
        "/metrics.txt",
    ],
)
def test_unknown_path_is_json_404_even_without_token(anon: httpx.Client, path: str) -> None:
    assert_error(anon.get(path), 404, "not_found")


def test_unknown_path_with_post_is_404_not_405(anon: httpx.Client) -> None:
    assert_error(anon.post("/v1/discovery/nope", json={}), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/discovery/register", {"POST"}),
        ("PUT", "/v1/discovery/register", {"POST"}),
        ("DELETE", "/v1/discovery/heartbeat", {"POST"}),
        ("POST", "/v1/discovery/services", {"GET"}),
        ("PATCH", "/v1/discovery/services/svc", {"GET"}),
        ("POST", "/v1/discovery/services/svc/healthy", {"GET"}),
        ("DELETE", "/v1/discovery/services/svc/instances", {"GET"}),
        ("PUT", "/v1/discovery/prometheus", {"GET"}),
        ("GET", "/v1/discovery/unregister/svc/inst", {"DELETE"}),
        ("POST", "/v1/discovery/unregister/svc/inst", {"DELETE"}),
        ("POST", "/health", {"GET"}),
        ("DELETE", "/metrics", {"GET"}),
        ("POST", "/openapi.json", {"GET"}),
        ("OPTIONS", "/v1/discovery/services", {"GET"}),
        ("OPTIONS", "/v1/discovery/register", {"POST"}),
    ],
)
def test_wrong_method_is_405_with_allow_even_without_token(
    anon: httpx.Client, method: str, path: str, allowed: set[str]
) -> None:
    response = anon.request(method, path)
    if path == "/metrics":
        # /metrics is text; its 405 is still the JSON error.
        assert media_type(response) == "application/json", response.headers
    assert_error(response, 405, "method_not_allowed")
    allow = {part.strip().upper() for part in response.headers.get("allow", "").split(",")}
    assert allow == allowed, f"Allow: {response.headers.get('allow')!r}"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/discovery/services", {"GET"}),
        ("/health", {"GET"}),
        ("/v1/discovery/register", {"POST"}),
    ],
)
def test_head_is_not_served(anon: httpx.Client, path: str, allowed: set[str]) -> None:
    """HEAD is not an alias of GET here (docs/api.md decision): 405 with Allow."""
    response = anon.head(path)
    assert response.status_code == 405, response.headers
    allow = {part.strip().upper() for part in response.headers.get("allow", "").split(",")}
    assert allow == allowed, f"Allow: {response.headers.get('allow')!r}"


def test_every_read_endpoint_is_json_with_index(api: Api, unique: Names) -> None:
    service = unique("ctype")
    api.register_ok(instance_body(service, "i", port=9))
    for path in list_endpoints(service):
        response = api.http.get(path)
        assert response.status_code == 200, (path, response.text)
        assert media_type(response) == "application/json", (path, response.headers)
        assert response.headers.get("x-discovery-index", "").isdigit(), (path, response.headers)


def test_server_fixture_is_alive(server: ServerProcess) -> None:
    """Guards the fixture itself: a crashed shared server must show up by name."""
    assert server.proc.poll() is None, server.describe()
