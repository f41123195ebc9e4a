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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from conformance.client import ROUTED, Api, api_for, make_client
from conformance.cluster_process import CLUSTER, stop_shared_etcd
from conformance.common import (
    FRONTENDS,
    PROBE_ENV,
    QUIET_INTERVAL,
    READ_TOKEN,
    SECRET,
    base_env,
    unique_name,
)
from conformance.dedicated_servers import StateFileServer, server_fixture
from conformance.fake_instances import FakeInstance
from conformance.fixture_types import Clients, Launcher, MakeFake, Names
from conformance.server_process import ServerProcess, start_server
from frontends.runtime.pages import load_pages
from sd_core import openapi_document

#: Tests skipped on the `cluster` kind: "file" or "file::test" -> why. Only tests of one
#: process: what last_heartbeat, a small load move and last_health_check show is the
#: same as one process's (the soft state, docs/cluster.md). Everything else runs on the
#: cluster unchanged.
CLUSTER_SKIPS = {
    "test_lifecycle.py": "the lifecycle of one process (signals, drain, restart, exit codes)",
    "test_maintenance.py::test_maintenance_survives_a_restart": (
        "a state file is refused in cluster mode; the store keeps maintenance"
    ),
    "test_check_types.py::test_check_types_survive_a_restart": (
        "a state file is refused in cluster mode; the store keeps check types"
    ),
    "test_registration.py::test_last_heartbeat_survives_a_restart": (
        "a state file is refused in cluster mode; the store keeps heartbeat times"
    ),
    "test_routing.py::test_health_needs_no_token_and_has_the_documented_fields": (
        "each node's /health names its own frontend (quart or trio), not `cluster`"
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of `CLUSTER_SKIPS` skipped on the cluster kind, with their reason."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("frontend") != CLUSTER:
            continue
        module = item.path.name
        test = f"{module}::{getattr(item, 'originalname', item.name)}"
        reason = CLUSTER_SKIPS.get(test) or CLUSTER_SKIPS.get(module)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"cluster kind: {reason}"))


@pytest.fixture(scope="session", autouse=True)
def shared_etcd_is_stopped() -> Iterator[None]:
    """The cluster kind's one etcd (started on first use) goes at the end of the run."""
    yield
    stop_shared_etcd()


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


#: The shared quiet server: tokens set, probes a day away.
server = server_fixture({"HEALTH_CHECK_INTERVAL_SECONDS": QUIET_INTERVAL}, scope="session")

#: The shared probing server: every 0.5 s, success and failure thresholds 2.
probe_server = server_fixture(PROBE_ENV, scope="session")


@pytest.fixture
def clients() -> Iterator[Clients]:
    """Opens `Api` clients of any server; at teardown each unregisters what it registered."""
    with ExitStack() as opened:

        def open_client(server: ServerProcess, token: str | None = SECRET) -> Api:
            return opened.enter_context(api_for(server.url, token))

        yield open_client


@pytest.fixture
def api(server: ServerProcess, clients: Clients) -> Api:
    """Read-write client of the quiet server; unregisters what it registered."""
    return clients(server)


@pytest.fixture
def read_api(server: ServerProcess, clients: Clients) -> Api:
    """Client of the quiet server holding the read-only token."""
    return clients(server, READ_TOKEN)


@pytest.fixture
def anon(server: ServerProcess) -> Iterator[httpx.Client]:
    """Client of the quiet server without any Authorization header."""
    with make_client(server.url) as client:
        yield client


@pytest.fixture
def probe_api(probe_server: ServerProcess, clients: Clients) -> Api:
    """Read-write client of the probing server."""
    return clients(probe_server)


@pytest.fixture
def unique() -> Names:
    """Factory of unique names, so tests on a shared server never collide."""
    return unique_name


@pytest.fixture
def fake() -> Iterator[MakeFake]:
    """Factory of started fake instances, all stopped at teardown."""
    with ExitStack() as started:

        def make(host: str = "127.0.0.1") -> FakeInstance:
            return started.enter_context(FakeInstance(host))

        yield make


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


@pytest.fixture
def state_server(launch: Launcher, clients: Clients, tmp_path: Path) -> StateFileServer:
    """A dedicated server with a state file, for the tests of what survives a restart."""
    return StateFileServer(launch, clients, tmp_path)
