"""A thin, checking HTTP client for the registry, plus assertion helpers.

The client is deliberately dumb (it returns raw ``httpx.Response`` objects) so
that tests state every expectation themselves. Two rules of the contract hold
for *every* response, so they are checked on every response by an event hook
instead of being repeated in each test: no request may produce a 500, and
every response but ``/metrics`` is ``application/json``.
"""

from __future__ import annotations

import functools
import json
import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

#: The contract the suite checks; the suite reads the instance's keys from it.
API_DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"

#: The sentence that introduces docs/api.md's example of a rendered instance.
INSTANCE_EXAMPLE_INTRO = "An instance is always rendered in full, keys in this order:"


def documented_instance_keys(doc: str) -> list[str]:
    """The keys of the example instance in ``doc`` (docs/api.md's text), in its order.

    The suite takes the order from the document rather than stating it again,
    so what it checks is exactly what docs/api.md promises.
    """
    _, found, after = doc.partition(INSTANCE_EXAMPLE_INTRO)
    assert found, f"docs/api.md no longer says {INSTANCE_EXAMPLE_INTRO!r}"
    _, fence, example = after.partition("```json\n")
    assert fence, "docs/api.md's instance example is not a ```json block"
    return list(json.loads(example.partition("```")[0]))


#: Keys of a rendered instance, in the order docs/api.md fixes.
INSTANCE_KEYS = documented_instance_keys(API_DOC.read_text(encoding="utf-8"))

#: ISO 8601 UTC with microseconds and a Z suffix, as docs/api.md renders them.
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")

ERROR_KEYS = {"success", "error", "message"}

#: Pages for people (HTML, scripts, styles): their 200s are not JSON; their errors are.
PAGE_PREFIXES = ("/ui", "/docs")

JsonBody = Any
T = TypeVar("T")


def media_type(response: httpx.Response) -> str:
    """The Content-Type without parameters, lower-cased ('' when absent)."""
    raw: str = response.headers.get("content-type", "")
    return raw.split(";")[0].strip().lower()


#: (method, path) of every request the suite sent that the registry routed
#: (anything but 404 not_found and 405): `conftest.py` checks each is documented.
ROUTED: set[tuple[str, str]] = set()


def _check_every_response(response: httpx.Response) -> None:
    """Contract rules that hold for every single response the suite sees."""
    request = response.request
    if response.status_code == 404:
        routed = b'"error":"not_found"' not in response.read()
    else:
        routed = response.status_code != 405
    if routed:
        ROUTED.add((request.method, request.url.path))
    if response.status_code >= 500 and response.status_code != 503:
        response.read()
        raise AssertionError(
            f"{request.method} {request.url} answered {response.status_code}: {response.text!r}"
        )
    path = request.url.path
    page = response.status_code == 200 and path.startswith(PAGE_PREFIXES)
    if request.method != "HEAD" and path != "/metrics" and not page:
        kind = media_type(response)
        if kind != "application/json":
            response.read()
            raise AssertionError(
                f"{request.method} {request.url} answered {response.status_code} with "
                f"Content-Type {response.headers.get('content-type')!r}, not application/json: "
                f"{response.text[:300]!r}"
            )


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client.

    The suite only speaks plain HTTP, but httpx builds a context (loading the
    CA bundle, ~0.15 s) for every client it creates unless it is given one;
    with a few clients per test that alone would double the suite's runtime.
    """
    return ssl.create_default_context()


def make_client(base_url: str, token: str | None = None, timeout: float = 10.0) -> httpx.Client:
    """An httpx client for ``base_url``, sending ``Bearer token`` if given.

    ``base_url`` may list several node URLs of one cluster, comma-separated (as the
    SDK takes them): requests then go round-robin over the nodes, with the
    read-your-writes rule of `conformance.cluster_client`.
    """
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    urls = base_url.split(",")
    transport = None
    if len(urls) > 1:
        from conformance.cluster_client import RoundRobinTransport

        transport = RoundRobinTransport(urls, tls_context())
    return httpx.Client(
        base_url=urls[0],
        headers=headers,
        timeout=timeout,
        verify=tls_context(),
        transport=transport,
        event_hooks={"response": [_check_every_response]},
    )


def index_of(response: httpx.Response) -> int:
    """The X-Discovery-Index header as an integer; fails if missing or malformed."""
    raw = response.headers.get("x-discovery-index")
    assert raw is not None, (
        f"{response.request.method} {response.request.url} has no X-Discovery-Index header"
    )
    assert raw.isdigit(), f"X-Discovery-Index is not a non-negative integer: {raw!r}"
    return int(raw)


def assert_error(
    response: httpx.Response,
    status: int,
    error: str,
    message: str | None = None,
) -> dict[str, Any]:
    """Check the one error shape: exact keys, ``success`` false, the code and status."""
    assert response.status_code == status, (
        f"expected {status} {error}, got {response.status_code}: {response.text}"
    )
    assert media_type(response) == "application/json", response.headers
    body = response.json()
    assert isinstance(body, dict), body
    expected_keys = ERROR_KEYS | ({"details"} if status == 422 else set())
    assert set(body) == expected_keys, f"error body keys {sorted(body)} != {sorted(expected_keys)}"
    assert body["success"] is False, body
    assert body["error"] == error, body
    assert isinstance(body["message"], str) and body["message"], body
    if message is not None:
        assert body["message"] == message, body
    return body


def assert_not_registered(response: httpx.Response, service: str, instance: str) -> None:
    """The exact 404 every call naming an instance that is not registered gets."""
    assert_error(
        response, 404, "instance_not_found", f"Instance {service}:{instance} is not registered"
    )


def assert_validation_error(response: httpx.Response, field: str) -> dict[str, Any]:
    """A 422 whose ``details`` name ``field`` (or a dotted child of it)."""
    body = assert_error(response, 422, "validation_error")
    details = body["details"]
    assert isinstance(details, list) and details, body
    for detail in details:
        assert isinstance(detail, dict) and set(detail) == {"field", "message"}, detail
        assert isinstance(detail["field"], str), detail
        assert isinstance(detail["message"], str) and detail["message"], detail
    fields = [detail["field"] for detail in details]
    assert any(name == field or name.startswith(field + ".") for name in fields), (
        f"expected a detail for field {field!r}, got {fields}"
    )
    return body


def assert_timestamp(value: Any) -> datetime:
    """A timestamp in the contract's format, not in the future (beyond clock slack)."""
    assert isinstance(value, str) and TIMESTAMP_RE.match(value), f"bad timestamp {value!r}"
    parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    now = datetime.now(UTC)
    assert (parsed - now).total_seconds() < 5, f"timestamp {value} is in the future"
    return parsed


def poll_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.02,
) -> T:
    """Call ``probe`` until it returns something other than None, or fail.

    Tests wait for the registry this way instead of sleeping a fixed time:
    fast when the server is fast, and a clear message when it never gets there.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Api:
    """The registry's endpoints as methods; remembers what it registered.

    ``cleanup()`` unregisters every instance this object registered, so tests
    sharing a session-wide server leave nothing behind for the next test.
    """

    def __init__(self, base_url: str, token: str | None) -> None:
        self.http = make_client(base_url, token)
        self.registered: set[tuple[str, str]] = set()

    def close(self) -> None:
        self.http.close()

    def cleanup(self) -> None:
        """Unregister everything this client registered (404 is fine)."""
        for service, instance in sorted(self.registered):
            try:
                self.http.delete(f"/v1/discovery/unregister/{service}/{instance}")
            except httpx.TransportError:
                break  # the server is gone (a lifecycle test stopped it)
        self.registered.clear()

    # -- writes ---------------------------------------------------------------

    def register(self, body: Mapping[str, Any]) -> httpx.Response:
        response = self.http.post("/v1/discovery/register", json=dict(body))
        if response.status_code == 200:
            self.registered.add((str(body["service_name"]), str(body["instance_id"])))
        return response

    def register_ok(self, body: Mapping[str, Any]) -> None:
        """Register and require the exact success body."""
        response = self.register(body)
        assert response.status_code == 200, response.text
        answer = response.json()
        ttl = answer.pop("ttl_seconds", None)
        assert isinstance(ttl, int | float) and ttl > 0, response.text
        assert answer == {
            "success": True,
            "message": f"Service {body['service_name']}:{body['instance_id']} "
            "registered successfully",
        }

    def heartbeat(self, service: str, instance: str, **extra: Any) -> httpx.Response:
        return self.http.post(
            "/v1/discovery/heartbeat",
            json={"service_name": service, "instance_id": instance, **extra},
        )

    def heartbeat_ok(self, service: str, instance: str, **extra: Any) -> None:
        response = self.heartbeat(service, instance, **extra)
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True, "message": "Heartbeat updated successfully"}

    def unregister(self, service: str, instance: str) -> httpx.Response:
        return self.http.delete(f"/v1/discovery/unregister/{service}/{instance}")

    def post_raw(
        self,
        path: str,
        content: bytes,
        content_type: str | None = "application/json",
    ) -> httpx.Response:
        """POST exact bytes, with exactly the Content-Type given (None: no header)."""
        headers = {"Content-Type": content_type} if content_type is not None else {}
        return self.http.post(path, content=content, headers=headers)

    # -- reads ----------------------------------------------------------------

    def services(self) -> httpx.Response:
        return self.http.get("/v1/discovery/services")

    def service(self, name: str) -> httpx.Response:
        return self.http.get(f"/v1/discovery/services/{name}")

    def healthy(self, name: str) -> httpx.Response:
        return self.http.get(f"/v1/discovery/services/{name}/healthy")

    def sd_instances(self, name: str) -> httpx.Response:
        return self.http.get(f"/v1/discovery/services/{name}/instances")

    def prometheus(self) -> httpx.Response:
        return self.http.get("/v1/discovery/prometheus")

    def instance(self, service: str, instance: str) -> dict[str, Any] | None:
        """The rendered instance, or None if the service or instance is not listed."""
        response = self.service(service)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        for item in response.json()["instances"]:
            if item["instance_id"] == instance:
                assert isinstance(item, dict)
                return item
        return None

    def status(self, service: str, instance: str) -> str | None:
        item = self.instance(service, instance)
        return None if item is None else str(item["status"])

    def service_index(self, name: str) -> int:
        return index_of(self.healthy(name))

    def global_index(self) -> int:
        return index_of(self.services())

    def snapshot(self) -> tuple[str, int]:
        """The whole registry as canonical JSON text, and the global index."""
        response = self.services()
        assert response.status_code == 200, response.text
        return json.dumps(response.json(), sort_keys=False), index_of(response)


@contextmanager
def api_for(base_url: str, token: str | None) -> Iterator[Api]:
    """An ``Api`` that unregisters what it registered and closes on exit."""
    api = Api(base_url, token)
    try:
        yield api
    finally:
        try:
            api.cleanup()
        finally:
            api.close()


def instance_body(service: str, instance: str, port: int = 8080, **fields: Any) -> dict[str, Any]:
    """A valid registration body on loopback (probes never leave the machine)."""
    body: dict[str, Any] = {
        "service_name": service,
        "instance_id": instance,
        "host": "127.0.0.1",
        "port": port,
    }
    body.update(fields)
    return body
