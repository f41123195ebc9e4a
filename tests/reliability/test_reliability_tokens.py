"""Token handling: never logged, echoed or labelled; read-only scope; near misses; dev mode.

Constant-time comparison cannot be timed reliably on a shared machine, so
`test_tokens_are_compared_with_compare_digest` checks instead, in-process on
`sd_core.testing.SimulatedRegistry`, that `sd_core.http_api` hands both
tokens to `hmac.compare_digest`.
"""

from __future__ import annotations

import hmac
import re
import string
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from reliability_support import READ_TOKEN, SECRET, base_env, raw_exchange, status_of

import sd_core.http_api
from conformance.client import tls_context
from conformance.server_process import ServerProcess, serving
from sd_core.testing import SimulatedRegistry


def _swap_last(token: str) -> str:
    last = token[-1]
    return token[:-1] + ("0" if last != "0" else "1")


def _swap_first(token: str) -> str:
    return ("X" if token[0] != "X" else "Y") + token[1:]


#: Tokens a client might send by mistake or an attacker might try.
NEAR_MISSES = {
    "last-char": _swap_last(SECRET),
    "first-char": _swap_first(SECRET),
    "truncated": SECRET[:-1],
    "extended": SECRET + "0",
    "upper-case": SECRET.upper(),
    "read-token-last-char": _swap_last(READ_TOKEN),
    "both-joined": SECRET + READ_TOKEN,
}

#: Authorization headers that are not `Bearer <token>` nor a bare token (which Prometheus
#: 2.42 sends, and is accepted): a bare wrong token stays refused.
MALFORMED_HEADERS = {
    "basic-scheme": f"Basic {SECRET}",
    "no-scheme-wrong-token": f"{SECRET}x",
    "scheme-only": "Bearer",
    "empty": "",
    "token-twice": f"Bearer {SECRET} {SECRET}",
    "comma-joined": f"Bearer {_swap_last(SECRET)}, Bearer {SECRET}",
}

READ_ENDPOINTS = [
    "/v1/discovery/services",
    "/v1/discovery/services/tok-svc/healthy",
    "/v1/discovery/services/tok-svc/instances",
    "/v1/discovery/prometheus",
]
INSTANCE = {"service_name": "tok-svc", "instance_id": "tok-1", "host": "127.0.0.1", "port": 8080}


@pytest.fixture(scope="module")
def token_server(frontend: str) -> Iterator[ServerProcess]:
    """Both tokens set, logging at DEBUG: the most a log could ever say."""
    with serving(frontend, base_env(LOG_LEVEL="DEBUG")) as server:
        yield server


def _client(server: ServerProcess, authorization: str | None = None) -> httpx.Client:
    headers = {} if authorization is None else {"Authorization": authorization}
    return httpx.Client(base_url=server.url, headers=headers, timeout=10, verify=tls_context())


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, f"{response.status_code}: {response.text}"
    assert response.headers.get("www-authenticate") == "Bearer", response.headers
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "success": False,
        "error": "unauthorized",
        "message": "A valid bearer token is required",
    }


def assert_forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, f"{response.status_code}: {response.text}"
    body = response.json()
    assert set(body) == {"success", "error", "message"}, body
    assert body["success"] is False and body["error"] == "forbidden", body


# ------------------------------------------------------------------ leaks


def test_no_token_in_logs_bodies_headers_or_metrics(token_server: ServerProcess) -> None:
    responses: list[httpx.Response] = []
    tried = [SECRET, READ_TOKEN, *NEAR_MISSES.values(), "x" * 8000]
    with _client(token_server, f"Bearer {SECRET}") as rw, _client(token_server) as anon:
        # good requests
        responses.append(rw.post("/v1/discovery/register", json=INSTANCE))
        responses.append(rw.post("/v1/discovery/heartbeat", json=INSTANCE))
        responses += [rw.get(path) for path in READ_ENDPOINTS]
        responses += [
            anon.get(path, headers={"Authorization": f"Bearer {READ_TOKEN}"})
            for path in READ_ENDPOINTS
        ]
        # bad requests, each with every wrong token and every malformed header
        for token in tried[2:]:
            bad = {"Authorization": f"Bearer {token}"}
            responses.append(anon.get("/v1/discovery/services", headers=bad))
            responses.append(anon.post("/v1/discovery/register", json=INSTANCE, headers=bad))
        for header in MALFORMED_HEADERS.values():
            responses.append(anon.get("/v1/discovery/services", headers={"Authorization": header}))
        read_only = {"Authorization": f"Bearer {READ_TOKEN}"}
        responses.append(anon.post("/v1/discovery/register", json=INSTANCE, headers=read_only))
        responses.append(anon.delete("/v1/discovery/unregister/tok-svc/tok-1", headers=read_only))
        # other errors a token holder can cause, with the token on them
        responses.append(
            rw.post(
                "/v1/discovery/register", content=b"{", headers={"Content-Type": "application/json"}
            )
        )
        responses.append(rw.post("/v1/discovery/register", json={**INSTANCE, "port": 0}))
        responses.append(rw.get("/no/such/path"))
        responses.append(rw.put("/v1/discovery/register"))
        responses.append(rw.get("/v1/discovery/services", params={"index": "x"}))
        # public endpoints ignore a token, right or wrong
        responses.append(rw.get("/health"))
        responses.append(anon.get("/health", headers={"Authorization": f"Bearer {tried[2]}"}))
        responses.append(rw.delete("/v1/discovery/unregister/tok-svc/tok-1"))
        metrics = anon.get("/metrics").text

    for response in responses:
        assert response.status_code < 500, response.text
        shown = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        for token in tried:
            assert token not in shown, (
                f"{response.request.method} {response.request.url} echoes a token"
            )
    log = token_server.stderr() + token_server.stdout()
    assert "event=registered" in log  # the log did record what happened
    for token in tried:
        assert token not in metrics, "a token in /metrics"
        assert token not in log, "a token in the server log"
    for line in log.splitlines():  # nothing token-shaped slipped in, in part or whole
        assert "Bearer" not in line and "authorization" not in line.lower(), line


# ---------------------------------------------------------------- scope


def test_read_token_reads_but_cannot_write(token_server: ServerProcess) -> None:
    with (
        _client(token_server, f"Bearer {SECRET}") as rw,
        _client(token_server, f"Bearer {READ_TOKEN}") as ro,
    ):
        assert rw.post("/v1/discovery/register", json=INSTANCE).status_code == 200
        try:
            for path in [*READ_ENDPOINTS, "/v1/discovery/services/tok-svc"]:
                response = ro.get(path)
                assert response.status_code == 200, f"GET {path}: {response.text}"
            blocking = ro.get(
                "/v1/discovery/services/tok-svc/healthy", params={"index": "1", "wait": "10ms"}
            )
            assert blocking.status_code == 200, blocking.text
            before = rw.get("/v1/discovery/services/tok-svc").json()
            other = {**INSTANCE, "instance_id": "tok-2"}
            assert_forbidden(ro.post("/v1/discovery/register", json=other))
            assert_forbidden(ro.post("/v1/discovery/heartbeat", json=INSTANCE))
            assert_forbidden(ro.delete("/v1/discovery/unregister/tok-svc/tok-1"))
            # A refused write is refused before validation and changes nothing.
            assert_forbidden(
                ro.post(
                    "/v1/discovery/register",
                    content=b"{",
                    headers={"Content-Type": "application/json"},
                )
            )
            assert rw.get("/v1/discovery/services/tok-svc").json() == before
        finally:
            rw.delete("/v1/discovery/unregister/tok-svc/tok-1")


@pytest.mark.parametrize("token", list(NEAR_MISSES.values()), ids=list(NEAR_MISSES))
def test_near_miss_token_is_refused(token_server: ServerProcess, token: str) -> None:
    with _client(token_server, f"Bearer {token}") as client:
        assert_unauthorized(client.get("/v1/discovery/services"))
        assert_unauthorized(client.post("/v1/discovery/register", json=INSTANCE))
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize("header", list(MALFORMED_HEADERS.values()), ids=list(MALFORMED_HEADERS))
def test_malformed_authorization_is_refused(token_server: ServerProcess, header: str) -> None:
    with _client(token_server, header) as client:
        assert_unauthorized(client.get("/v1/discovery/services"))


@pytest.mark.parametrize("length", [1024, 8 * 1024, 15 * 1024])
def test_long_token_is_refused_cleanly(token_server: ServerProcess, length: int) -> None:
    token = (SECRET * (length // len(SECRET) + 1))[:length]  # starts with the real secret
    with _client(token_server, f"Bearer {token}") as client:
        assert_unauthorized(client.get("/v1/discovery/services"))
        assert_unauthorized(client.post("/v1/discovery/register", json=INSTANCE))


def test_token_beyond_the_header_limit_is_refused(token_server: ServerProcess) -> None:
    request = (
        b"GET /v1/discovery/services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + SECRET.encode() * 4000
        + b"\r\n\r\n"
    )
    raw, _ = raw_exchange(token_server.port, request, timeout=5)
    status = status_of(raw)
    assert status is None or 400 <= status < 500, raw[:300]
    assert SECRET.encode() not in raw


@pytest.mark.parametrize(
    "raw_token",
    [b"\xe9\xe8" + SECRET.encode(), SECRET.encode() + b"\xff", b"\x00" * 40],
    ids=["latin1-prefix", "latin1-suffix", "nul-bytes"],
)
def test_non_ascii_token_is_refused(token_server: ServerProcess, raw_token: bytes) -> None:
    request = b"GET /v1/discovery/services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
    raw, _ = raw_exchange(token_server.port, request + raw_token + b"\r\n\r\n", timeout=1)
    status = status_of(raw)
    assert status in {400, 401}, raw[:300]
    if status == 401:
        assert b'"error":"unauthorized"' in raw, raw[:300]


# ------------------------------------------------------------- dev mode


def test_generated_token_is_printed_once(frontend: str) -> None:
    env = base_env()
    del env["SERVICE_DISCOVERY_SECRET"]  # scrubbed from the inherited environment too
    with serving(frontend, env) as server:
        log = server.stderr()
        assert "DEVELOPMENT SETTING" in log, log
        match = re.search(r"Generated token for this run only: (\S+)", log)
        assert match is not None, log
        token = match.group(1)
        assert len(token) >= 32 and set(token) <= set(string.ascii_letters + string.digits + "-_")
        with _client(server, f"Bearer {token}") as client:
            assert client.post("/v1/discovery/register", json=INSTANCE).status_code == 200
            assert client.get("/v1/discovery/services/tok-svc").status_code == 200
            assert client.delete("/v1/discovery/unregister/tok-svc/tok-1").status_code == 200
        with _client(server, f"Bearer {_swap_last(token)}") as client:
            assert_unauthorized(client.get("/v1/discovery/services"))
        with _client(server, f"Bearer {READ_TOKEN}") as client:  # the read token still reads
            assert client.get("/v1/discovery/services").status_code == 200
        everything = server.stderr() + server.stdout()
        assert everything.count(token) == 1, "the generated token must be printed exactly once"
        assert everything.count("DEVELOPMENT SETTING") == 1


# ------------------------------------------------------- constant time


def test_tokens_are_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    real = hmac.compare_digest
    calls: list[tuple[Any, Any]] = []

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # what `hmac.compare_digest(...)` finds
    if hasattr(sd_core.http_api, "compare_digest"):  # `from hmac import compare_digest`
        monkeypatch.setattr(sd_core.http_api, "compare_digest", spy)
    secret, read_token = "sim-" + SECRET, "sim-" + READ_TOKEN
    sim = SimulatedRegistry(secret=secret, read_token=read_token)

    def compared_with(expected: str) -> bool:
        wanted = expected.encode()
        return any(wanted in (a, b) or b"Bearer " + wanted in (a, b) for a, b in calls)

    wrong = _swap_last(secret)
    assert sim.request("GET", "/v1/discovery/services", token=wrong).status == 401
    assert compared_with(secret), f"the secret was not compared with compare_digest: {calls}"
    assert compared_with(read_token), (
        f"the read token was not compared with compare_digest: {calls}"
    )
    assert any(wrong.encode() in (a, b) for a, b in calls), calls

    for token, status in ((secret, 200), (read_token, 200)):
        calls.clear()
        assert sim.request("GET", "/v1/discovery/services", token=token).status == status
        assert compared_with(token), f"accepted without compare_digest: {calls}"
    calls.clear()
    assert (
        sim.request("POST", "/v1/discovery/heartbeat", token=read_token, json_body={}).status == 403
    )
    assert compared_with(read_token), calls
