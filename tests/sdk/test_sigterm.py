"""SIGTERM inside ``SyncServiceDiscoveryClient.registered()``: unregister, then die by it.

Docker, Kubernetes and systemd stop a service with SIGTERM. The real path is
tested end to end: a small WSGI service (wsgiref serving ``health_wsgi_app``,
the sync client's ``registered()`` around ``serve_forever()``) runs in a
subprocess against a real registry, is probed healthy, and gets SIGTERM. The
cases where SIGTERM must be left alone are checked in this process.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import httpx
import pytest

from service_discovery import ServiceRegistrationRequest, SyncServiceDiscoveryClient, sigterm
from service_discovery.sigterm import Terminated

from .fakes import FakeRegistry
from .registry_process import ROOT, SECRET, RegistryProcess, eventually, running_registry

SERVICE = """
import os
from wsgiref.simple_server import WSGIRequestHandler, make_server

from service_discovery import HealthChecker, SyncServiceDiscoveryClient, health_wsgi_app


class Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


name = os.environ["TEST_SERVICE"]
server = make_server("127.0.0.1", 0, health_wsgi_app(HealthChecker(name)), handler_class=Quiet)
client = SyncServiceDiscoveryClient(cache=False)
with client.registered(
    service_name=name,
    instance_id="w1",
    host="127.0.0.1",
    port=server.server_port,
    handle_sigterm=os.environ["TEST_HANDLE_SIGTERM"] == "1",
):
    print("serving", flush=True)
    server.serve_forever()
"""


@pytest.fixture(scope="module")
def real_registry() -> Iterator[RegistryProcess]:
    with running_registry("quart") as server:
        yield server


def _service(registry: RegistryProcess, name: str, handle_sigterm: bool) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SERVICE_DISCOVERY_URL": registry.url,
        "SERVICE_DISCOVERY_SECRET": SECRET,
        "TEST_SERVICE": name,
        "TEST_HANDLE_SIGTERM": "1" if handle_sigterm else "0",
    }
    return subprocess.Popen(
        [sys.executable, "-c", SERVICE], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


def _run_and_terminate(registry: RegistryProcess, name: str, handle_sigterm: bool) -> int:
    """Start the service, wait until the registry probed it healthy, SIGTERM it."""
    proc = _service(registry, name, handle_sigterm)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "serving\n"
        with SyncServiceDiscoveryClient(registry.url, SECRET, cache=False) as reader:
            eventually(lambda: len(reader.discover_services(name)) == 1, "probed healthy", 10)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _listed(registry: RegistryProcess, name: str) -> list[str]:
    with SyncServiceDiscoveryClient(registry.url, SECRET, cache=False) as reader:
        return [i.instance_id for i in reader.discover_services(name, healthy_only=False)]


def test_sigterm_unregisters_then_the_process_dies_by_sigterm(
    real_registry: RegistryProcess,
) -> None:
    assert _run_and_terminate(real_registry, "wsgi-term", handle_sigterm=True) == -signal.SIGTERM
    assert _listed(real_registry, "wsgi-term") == []  # gone before the process died


def test_opted_out_sigterm_kills_without_unregistering(real_registry: RegistryProcess) -> None:
    assert _run_and_terminate(real_registry, "wsgi-kept", handle_sigterm=False) == -signal.SIGTERM
    assert _listed(real_registry, "wsgi-kept") == ["w1"]


SWALLOWING_SERVER = """
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from service_discovery.sigterm import sigterm_leaves_block


class Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def app(environ, start_response):
    print("handling", flush=True)
    threading.Event().wait(60)  # SIGTERM lands here, inside wsgiref's bare except
    start_response("200 OK", [])
    return [b"late"]


server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
print(server.server_port, flush=True)
with sigterm_leaves_block():
    try:
        server.serve_forever()
    finally:
        print("left", flush=True)  # the block is left (then the process dies by SIGTERM)
"""


def test_a_sigterm_the_server_swallowed_mid_request_is_delivered_again() -> None:
    """wsgiref answers an exception raised while it handles a request with a 500 and
    serves on: the first Terminated is lost there, and only a resent SIGTERM, landing
    while it waits for the next request, leaves the block (CI once hung here: the
    registry's probe was being answered when SIGTERM came)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SWALLOWING_SERVER],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    client: threading.Thread | None = None
    try:
        port = int(proc.stdout.readline())
        client = threading.Thread(target=_get, args=(port,), daemon=True)
        client.start()
        assert proc.stdout.readline() == "handling\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == -signal.SIGTERM
        assert proc.stdout.read() == "left\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if client is not None:
            client.join(10)


def _get(port: int) -> None:
    """One request that the server answers (a 500) or drops as it dies."""
    with contextlib.suppress(OSError, http.client.HTTPException):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/")
        connection.getresponse().read()
        connection.close()


# -- when SIGTERM is left alone ---------------------------------------------------------


@pytest.fixture
def default_sigterm() -> Iterator[None]:
    """SIGTERM with its default action during the test, whatever the runner set."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


Inside = Callable[..., object]


@pytest.fixture
def sigterm_inside(
    default_sigterm: None, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> Inside:
    """The SIGTERM handler seen inside a ``registered(request_a, **options)`` block."""

    def inside(**options: Any) -> object:
        with (
            SyncServiceDiscoveryClient(
                "http://r", registry.secret, transport=registry.sync_transport()
            ) as client,
            client.registered(request_a, interval_seconds=3600, **options),
        ):
            return signal.getsignal(signal.SIGTERM)

    return inside


def test_installed_on_the_main_thread_and_restored_after(
    sigterm_inside: Inside, registry: FakeRegistry
) -> None:
    handler = sigterm_inside()
    assert callable(handler) and handler is not signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert registry.instances == {}  # the block unregistered


def test_opting_out_leaves_the_default_action(sigterm_inside: Inside) -> None:
    assert sigterm_inside(handle_sigterm=False) is signal.SIG_DFL


def test_someone_elses_handler_is_left_in_place(sigterm_inside: Inside) -> None:
    def theirs(signum: int, frame: FrameType | None) -> None:
        pass

    signal.signal(signal.SIGTERM, theirs)
    assert sigterm_inside() is theirs
    assert signal.getsignal(signal.SIGTERM) is theirs


def test_off_the_main_thread_sigterm_is_left_alone(sigterm_inside: Inside) -> None:
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(sigterm_inside()))
    thread.start()
    thread.join(10)
    assert seen == [signal.SIG_DFL]


# -- the handler's effect, in this process (dying replaced by a note) --------------------


def _deliver_sigterm() -> None:
    """Run the installed SIGTERM handler here, as the interpreter would on delivery."""
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    handler(signal.SIGTERM, None)


@pytest.fixture
def deaths(default_sigterm: None, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    died: list[bool] = []
    monkeypatch.setattr(sigterm, "_die_by_sigterm", lambda: died.append(True))
    return died


def test_sigterm_in_the_block_unregisters_ignores_a_repeat_then_dies(
    deaths: list[bool], registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            _deliver_sigterm()  # a second SIGTERM while leaving: ignored
        return registry.answer(request)

    transport = httpx.MockTransport(answer)
    with (
        SyncServiceDiscoveryClient("http://r", registry.secret, transport=transport) as client,
        pytest.raises(Terminated),
        client.registered(request_a, interval_seconds=3600),
    ):
        _deliver_sigterm()
        pytest.fail("SIGTERM must leave the block")
    assert registry.instances == {}
    assert deaths == [True]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sigterm_while_registering_unregisters_before_dying(
    deaths: list[bool], registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        response = registry.answer(request)
        if request.url.path == "/v1/discovery/register":
            _deliver_sigterm()  # the registry has it; the answer never arrives
        return response

    transport = httpx.MockTransport(answer)
    with (
        SyncServiceDiscoveryClient("http://r", registry.secret, transport=transport) as client,
        pytest.raises(Terminated),
        client.registered(request_a),
    ):
        pytest.fail("the block must not run")
    assert registry.instances == {}
    assert deaths == [True]
