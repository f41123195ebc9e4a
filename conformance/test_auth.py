"""Authentication: Bearer tokens on every /v1 request, read-only token on GETs.

A registry tells callers where to send traffic, so an unauthenticated write
is a traffic hijack: every rejected write below is also checked to have left
the registry exactly as it was.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from conformance.client import Api, api_for, assert_error, index_of, instance_body, make_client
from conformance.common import READ_TOKEN, SECRET, unique_name
from conformance.server_process import ServerProcess

#: A service that exists on the quiet server for the whole module.
AUTH_SERVICE = unique_name("auth-svc")
AUTH_INSTANCE = "auth-1"

READ_PATHS = [
    "/v1/discovery/services",
    f"/v1/discovery/services/{AUTH_SERVICE}",
    f"/v1/discovery/services/{AUTH_SERVICE}/healthy",
    f"/v1/discovery/services/{AUTH_SERVICE}/instances",
    "/v1/discovery/prometheus",
]

#: (method, path, JSON body) of every write; all would succeed with the secret.
WRITES: list[tuple[str, str, dict[str, object] | None]] = [
    (
        "POST",
        "/v1/discovery/register",
        instance_body(AUTH_SERVICE, "intruder", port=6666),
    ),
    (
        "POST",
        "/v1/discovery/heartbeat",
        {"service_name": AUTH_SERVICE, "instance_id": AUTH_INSTANCE, "load_percentage": 0.9},
    ),
    ("DELETE", f"/v1/discovery/unregister/{AUTH_SERVICE}/{AUTH_INSTANCE}", None),
]

WRITE_IDS = ["register", "heartbeat", "unregister"]

BAD_AUTHORIZATION = {
    "none": None,
    "wrong-token": "Bearer not-the-secret",
    "basic": "Basic x",
    "basic-with-secret": "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode(),
    "bearer-alone": "Bearer",
    "other-scheme": f"Token {SECRET}",
    "secret-plus-suffix": f"Bearer {SECRET}x",
    "secret-prefix": f"Bearer {SECRET[:-1]}",
    "read-token-plus-suffix": f"Bearer {READ_TOKEN}x",
}


@pytest.fixture(autouse=True)
def auth_service(server: ServerProcess) -> Iterator[None]:
    """(Re-)register the module's instance before each test, remove it after."""
    with api_for(server.url, SECRET) as owner:
        owner.register_ok(
            instance_body(AUTH_SERVICE, AUTH_INSTANCE, port=7000, metadata={"owner": "auth-tests"})
        )
        yield


def _client(server: ServerProcess, authorization: str | None) -> httpx.Client:
    client = make_client(server.url)
    if authorization is not None:
        client.headers["Authorization"] = authorization
    return client


def _assert_401(response: httpx.Response) -> None:
    assert_error(response, 401, "unauthorized")
    challenge = response.headers.get("www-authenticate")
    assert challenge is not None, "401 without WWW-Authenticate"
    assert challenge.split()[0] == "Bearer", f"WWW-Authenticate: {challenge!r}"


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION.values(), ids=BAD_AUTHORIZATION)
@pytest.mark.parametrize("path", READ_PATHS)
def test_reads_reject_missing_or_bad_credentials(
    server: ServerProcess, path: str, authorization: str | None
) -> None:
    with _client(server, authorization) as client:
        _assert_401(client.get(path))


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION.values(), ids=BAD_AUTHORIZATION)
@pytest.mark.parametrize(
    ("method", "path", "body"), WRITES, ids=["register", "heartbeat", "unregister"]
)
def test_writes_reject_missing_or_bad_credentials_and_change_nothing(
    server: ServerProcess,
    api: Api,
    method: str,
    path: str,
    body: dict[str, object] | None,
    authorization: str | None,
) -> None:
    before = api.snapshot()
    with _client(server, authorization) as client:
        _assert_401(client.request(method, path, json=body))
    assert api.snapshot() == before


@pytest.mark.parametrize("path", READ_PATHS)
@pytest.mark.parametrize("token", [SECRET, READ_TOKEN], ids=["secret", "read-token"])
def test_reads_accept_both_tokens(server: ServerProcess, path: str, token: str) -> None:
    with make_client(server.url, token) as client:
        response = client.get(path)
    assert response.status_code == 200, response.text
    index_of(response)


@pytest.mark.parametrize("path", READ_PATHS)
def test_bare_tokens_without_a_scheme_are_accepted(server: ServerProcess, path: str) -> None:
    """Debian 12's Prometheus 2.42 sends `Authorization: <token>` when no `type` is set."""
    for token in (SECRET, READ_TOKEN):
        with _client(server, token) as client:
            response = client.get(path)
        assert response.status_code == 200, response.text
        index_of(response)
    with _client(server, "not-the-secret") as client:
        _assert_401(client.get(path))


def test_a_bare_secret_writes_and_a_bare_read_token_does_not(
    server: ServerProcess, api: Api
) -> None:
    _method, path, body = WRITES[1]  # the heartbeat: harmless when it succeeds
    with _client(server, SECRET) as client:
        assert client.post(path, json=body).status_code == 200
    before = api.snapshot()
    with _client(server, READ_TOKEN) as client:
        assert_error(client.post(path, json=body), 403, "forbidden")
    with _client(server, f"{SECRET}x") as client:
        _assert_401(client.post(path, json=body))
    assert api.snapshot() == before


@pytest.mark.parametrize(
    ("method", "path", "body"), WRITES, ids=["register", "heartbeat", "unregister"]
)
def test_read_token_on_writes_is_403_and_changes_nothing(
    read_api: Api, api: Api, method: str, path: str, body: dict[str, object] | None
) -> None:
    before = api.snapshot()
    assert_error(read_api.http.request(method, path, json=body), 403, "forbidden")
    assert api.snapshot() == before


@pytest.mark.parametrize(
    ("method", "path", "body"), WRITES, ids=["register", "heartbeat", "unregister"]
)
def test_secret_is_accepted_on_writes(
    api: Api, method: str, path: str, body: dict[str, object] | None
) -> None:
    """The positive control for the two tests above: same requests, right token."""
    response = api.http.request(method, path, json=body)
    assert response.status_code == 200, response.text
    if path.endswith("register"):
        api.registered.add((AUTH_SERVICE, "intruder"))


def test_401_comes_before_media_type_and_json_checks(anon: httpx.Client) -> None:
    """Order of checks: authentication precedes 415, 400 and 422."""
    response = anon.post(
        "/v1/discovery/register", content=b"not json", headers={"Content-Type": "text/plain"}
    )
    _assert_401(response)
    _assert_401(
        anon.post(
            "/v1/discovery/register",
            content=b"{broken",
            headers={"Content-Type": "application/json"},
        )
    )
    _assert_401(anon.post("/v1/discovery/register", json={"port": "x"}))


def test_403_comes_before_media_type_and_json_checks(read_api: Api) -> None:
    assert_error(
        read_api.post_raw("/v1/discovery/register", b"not json", "text/plain"), 403, "forbidden"
    )
    assert_error(read_api.post_raw("/v1/discovery/register", b"{broken"), 403, "forbidden")
    assert_error(read_api.http.post("/v1/discovery/heartbeat", json=[]), 403, "forbidden")


def test_wrong_token_on_unknown_instance_is_401_not_404(anon: httpx.Client) -> None:
    """An unauthenticated caller must not learn which instances exist."""
    anon.headers["Authorization"] = "Bearer wrong"
    _assert_401(anon.delete("/v1/discovery/unregister/nobody/none"))
    _assert_401(anon.get("/v1/discovery/services/nobody"))


def test_public_endpoints_ignore_bad_credentials(server: ServerProcess) -> None:
    """A stale token in a health checker's config must not break /health."""
    with _client(server, "Bearer wrong") as client:
        for path in ("/health", "/metrics", "/openapi.json"):
            assert client.get(path).status_code == 200, path
