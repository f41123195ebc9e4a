"""A Quart user's routes beside the registry's, served by `serve --app` on a real server.

Both uses of the README: the registry's app extended (`--app ...:extended`)
and the registry mounted into the user's app (`--app ...:app`), on hypercorn
and on uvicorn. Each serves the user's route, blueprint and hook through
Quart, the registry's routes and watch streams as before, the API's JSON 404
and 405 for what neither serves, and refuses the HTTP/2 preface.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import cast

import httpx
import pytest
from frontend_kit import http_client
from quart import Quart
from quart_user_app import add_user_routes

from conformance.server_process import ServerProcess, kept_socket, serving
from frontends.quart_app import create_app, mount
from frontends.quart_app.app import PARTS
from frontends.runtime.asgi_api import ASGIApp
from frontends.runtime.runtime import Runtime
from frontends.runtime.settings import load_settings
from sd_core import HttpApi
from sd_core.http_api import Endpoint
from sd_core.watch_stream import WATCH_ROUTE

SECRET = "quart-user-app-secret-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {SECRET}"}
USES = {
    "mounted": "tests.frontends.quart_user_app:app",
    "extended": "tests.frontends.quart_user_app:extended",
}


@pytest.fixture(
    scope="module",
    params=[(use, kind) for use in USES for kind in ("quart", "quart-uvicorn")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, ServerProcess, str]]:
    use, kind = request.param
    env = {
        "SERVICE_DISCOVERY_SECRET": SECRET,
        "SERVICE_DISCOVERY_STATE_FILE": "",
        "HEALTH_CHECK_INTERVAL_SECONDS": "3600",
    }
    with kept_socket() as sock, serving(kind, env, ("--app", USES[use]), sock=sock) as srv:
        yield use, srv, f"http://127.0.0.1:{sock.getsockname()[1]}"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_user_route_blueprint_and_hook(server: tuple[str, ServerProcess, str]) -> None:
    use, _, url = server
    hello = httpx.get(f"{url}/hello")
    assert hello.status_code == 200 and hello.json() == {"hello": use, "hooked": True}
    assert httpx.get(f"{url}/pages/ping").json() == {"pong": "blueprint"}


def test_registry_routes_answer_as_ever(server: tuple[str, ServerProcess, str]) -> None:
    _, _, url = server
    instance = {"service_name": "quart-user", "instance_id": "a", "host": "127.0.0.1", "port": 9}
    registered = httpx.post(f"{url}/v1/discovery/register", json=instance, headers=AUTH)
    assert registered.status_code == 200, registered.text
    read = httpx.get(f"{url}/v1/discovery/services/quart-user", headers=AUTH)
    assert read.status_code == 200 and read.json()["instances"][0]["instance_id"] == "a"
    assert httpx.get(f"{url}/v1/discovery/services", headers={}).status_code == 401


def test_a_path_nobody_serves_gets_the_json_404(server: tuple[str, ServerProcess, str]) -> None:
    _, _, url = server
    answer = httpx.get(f"{url}/no/such/page")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "success": False,
        "error": "not_found",
        "message": "No such endpoint: /no/such/page",
    }


def test_a_wrong_method_gets_the_json_405(server: tuple[str, ServerProcess, str]) -> None:
    _, _, url = server
    for path in ("/hello", "/health"):  # the user's route, the registry's
        answer = httpx.delete(f"{url}{path}")
        assert answer.status_code == 405, path
        assert answer.json()["error"] == "method_not_allowed", path
        assert "GET" in answer.headers["allow"], path


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    """What `sock` delivers until `marker` is in it, or the server closes."""
    received = b""
    while marker not in received:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def _stream_head(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    head = _read_until(sock, b"\r\n\r\n")
    assert b"\r\n\r\n" in head, head
    return head


@pytest.mark.parametrize("after_a_request", [False, True], ids=["direct", "in-app"])
def test_watch_streams_open(server: tuple[str, ServerProcess, str], after_a_request: bool) -> None:
    """A watch on a fresh connection is served below the server, one after another
    request by the app's `WatchRoute`: both open as streams."""
    _, _, url = server
    watch = (
        f"GET {WATCH_ROUTE}?service=quart-user HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {SECRET}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as sock:
        if after_a_request:
            first = _stream_head(sock, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert first.startswith(b"HTTP/1.1 200"), first
            length = int(first.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            rest = first.split(b"\r\n\r\n", 1)[1]
            while len(rest) < length:
                rest += sock.recv(4096)
        head = _stream_head(sock, watch)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"text/event-stream" in head.lower(), head


def test_the_http2_preface_is_refused(server: tuple[str, ServerProcess, str]) -> None:
    _, _, url = server
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        received = _read_until(sock, b"}")
    assert received.startswith(b"HTTP/1.1 400"), received
    # The preface's second line then follows as a malformed request (another 400).
    assert b'"error":"http_version_not_supported"' in received, received


def _runtime() -> Runtime:
    settings = load_settings(
        {"SERVICE_DISCOVERY_SECRET": SECRET, "SERVICE_DISCOVERY_STATE_FILE": ""}
    )
    return Runtime(settings, PARTS, clock=lambda: 0.0)


def test_create_app_is_a_quart_app_and_mounts_once() -> None:
    runtime = _runtime()
    app = create_app(runtime)
    assert isinstance(app, Quart) and app.extensions["service_discovery"] is runtime
    with pytest.raises(RuntimeError, match="already mounted"):
        mount(app, runtime)


def test_a_user_404_handler_is_kept() -> None:
    app = Quart("mine")

    @app.errorhandler(404)
    async def mine(error: Exception) -> tuple[str, int]:
        return "mine", 404

    mount(app, _runtime())
    assert app.error_handler_spec[None][404][next(iter(app.error_handler_spec[None][404]))] is mine


def test_each_path_is_matched_once_whoever_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core's head routes a request once: its answer, or Quart's router when it has no
    route for the path (a registry path is never matched again after a first look)."""
    matched: list[str] = []
    dynamic_route = HttpApi._dynamic_route

    def counted(api: HttpApi, path: str) -> tuple[dict[str, Endpoint] | None, str, tuple[str, ...]]:
        matched.append(path)
        return dynamic_route(api, path)

    monkeypatch.setattr(HttpApi, "_dynamic_route", counted)
    app = add_user_routes(create_app(_runtime()), "extended")

    async def get(path: str) -> httpx.Response:
        async with http_client(cast(ASGIApp, app)) as client:
            return await client.get(path, headers=AUTH)

    read = asyncio.run(get("/v1/discovery/services/nobody"))
    assert read.status_code == 404 and read.json()["error"] == "service_not_found"
    assert matched == ["/v1/discovery/services/nobody"]
    matched.clear()
    hello = asyncio.run(get("/hello"))
    assert hello.status_code == 200 and hello.json() == {"hello": "extended", "hooked": True}
    assert matched == ["/hello"]
