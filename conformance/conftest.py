"""Fixtures: real registry processes per frontend, clients, and fake instances.

Most tests share one session-wide server per frontend (``server``: health
checks effectively off, so the registry only changes when a test changes it)
and one probing server (``probe_server``: probes every 0.5 s, both thresholds
2). Tests keep out of each other's way with unique service names and by
unregistering what they registered. Tests that need other settings start
their own short-lived server with ``launch``; every process is stopped with
SIGTERM at teardown, and a server that does not exit 0 fails the run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence

import httpx
import pytest

from conformance.client import ROUTED, Api, api_for, make_client
from conformance.common import (
    FRONTENDS,
    PROBE_ENV,
    QUIET_INTERVAL,
    READ_TOKEN,
    SECRET,
    base_env,
    unique_name,
)
from conformance.fake_instances import FakeInstance
from conformance.server_process import ServerProcess, serving, start_server
from frontends.shared.pages import load_pages
from sd_core import openapi_document


@pytest.fixture(scope="session", autouse=True)
def every_routed_request_is_documented() -> Iterator[None]:
    """After the whole suite: each request the registry routed matches /openapi.json.

    The document is the one a server with the default pages serves; a route
    any test reaches that the document lacks fails the run here.
    """
    yield
    document = openapi_document("0", load_pages())
    templates = [
        (method.upper(), re.compile(re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(path)) + "$"))
        for path, operations in document["paths"].items()
        for method in operations
    ]
    missing = sorted(
        (method, path)
        for method, path in ROUTED
        if not any(m == method and t.match(path) for m, t in templates)
    )
    assert not missing, f"routed but not in /openapi.json: {missing}"


@pytest.fixture(scope="session", params=FRONTENDS, ids=FRONTENDS)
def frontend(request: pytest.FixtureRequest) -> str:
    """Every server-backed test runs once per frontend."""
    param: str = request.param
    return param


@pytest.fixture(scope="session")
def server(frontend: str) -> Iterator[ServerProcess]:
    """The shared quiet server: tokens set, probes a day away."""
    with serving(frontend, base_env(HEALTH_CHECK_INTERVAL_SECONDS=QUIET_INTERVAL)) as srv:
        yield srv


@pytest.fixture(scope="session")
def probe_server(frontend: str) -> Iterator[ServerProcess]:
    """The shared probing server: every 0.5 s, success and failure thresholds 2."""
    with serving(frontend, base_env(**PROBE_ENV)) as srv:
        yield srv


@pytest.fixture
def api(server: ServerProcess) -> Iterator[Api]:
    """Read-write client of the quiet server; unregisters what it registered."""
    with api_for(server.url, SECRET) as client:
        yield client


@pytest.fixture
def read_api(server: ServerProcess) -> Iterator[Api]:
    """Client of the quiet server holding the read-only token."""
    with api_for(server.url, READ_TOKEN) as client:
        yield client


@pytest.fixture
def anon(server: ServerProcess) -> Iterator[httpx.Client]:
    """Client of the quiet server without any Authorization header."""
    with make_client(server.url) as client:
        yield client


@pytest.fixture
def probe_api(probe_server: ServerProcess) -> Iterator[Api]:
    """Read-write client of the probing server."""
    with api_for(probe_server.url, SECRET) as client:
        yield client


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Factory of unique names, so tests on a shared server never collide."""
    return unique_name


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeInstance]]:
    """Factory of started fake instances, all stopped at teardown."""
    started: list[FakeInstance] = []

    def make(host: str = "127.0.0.1") -> FakeInstance:
        instance = FakeInstance(host).start()
        started.append(instance)
        return instance

    try:
        yield make
    finally:
        for instance in started:
            instance.stop()


Launcher = Callable[..., ServerProcess]


@pytest.fixture
def launch(frontend: str) -> Iterator[Launcher]:
    """Start a dedicated server for this test only.

    ``launch(env, extra_args=(), wait_ready=True, with_tokens=True)``. At
    teardown a server still running gets SIGTERM and must exit 0; whatever
    happens, no process survives the test.
    """
    started: list[ServerProcess] = []

    def start(
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        wait_ready: bool = True,
        with_tokens: bool = True,
    ) -> ServerProcess:
        full_env = base_env(**(env or {})) if with_tokens else dict(env or {})
        srv = start_server(frontend, full_env, extra_args, wait_ready=wait_ready)
        started.append(srv)
        return srv

    try:
        yield start
        for srv in started:
            if srv.proc.poll() is None:
                srv.stop()
    finally:
        for srv in started:
            srv.cleanup()
