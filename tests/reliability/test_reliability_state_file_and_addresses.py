"""The state file in a shared directory, and refused addresses in other spellings, per server kind.

- A link planted at the snapshot's temporary name does not redirect the
  snapshot into another user's file; the snapshot is mode 0600.
- A state file whose directory is world-writable without the sticky bit
  stops startup: one line, exit code 2.
- Registering a NAT64, SIIT or IPv4-compatible spelling of the metadata
  address, or a numeric host such as `0xa9fea9fe`, says that its health
  checks are refused.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from reliability_support import AUTH, base_env, kept_socket, serving_on

from conformance.server_process import ServerProcess


@pytest.fixture(scope="module")
def frontend(server_kind: str) -> str:
    """Every server kind: both hypercorn frontends, and Quart on uvicorn."""
    return server_kind


def _register(url: str, host: str) -> httpx.Response:
    body = {"service_name": "svc", "instance_id": "i-1", "host": host, "port": 80}
    return httpx.post(f"{url}/v1/discovery/register", json=body, headers=AUTH, timeout=10)


def test_a_link_at_the_temporary_name_does_not_redirect_the_snapshot(
    frontend: str, tmp_path: Path
) -> None:
    victim = tmp_path / "victim-secrets"
    victim.write_text("the victim's own data")
    victim.chmod(0o600)
    state = tmp_path / "registry.json"
    env = base_env(SERVICE_DISCOVERY_STATE_FILE=str(state))
    with kept_socket() as sock, serving_on(frontend, env, sock) as srv:
        planted = tmp_path / f".registry.json.{srv.pid}.tmp"
        planted.unlink(missing_ok=True)
        planted.symlink_to(victim)
        assert _register(srv.url, "127.0.0.1").status_code == 200
    # Stopped: the last snapshot is written on the way out.
    assert victim.read_text() == "the victim's own data"
    assert "i-1" in state.read_text()
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert not planted.exists() and not planted.is_symlink()


def test_a_state_file_in_an_unsafe_directory_stops_startup(frontend: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    env = base_env(SERVICE_DISCOVERY_STATE_FILE=str(shared / "registry.json"))
    server = ServerProcess(frontend, env)
    try:
        assert server.wait_exit(30) == 2, server.describe()
        lines = server.stderr().strip().splitlines()
    finally:
        server.cleanup()
    assert len(lines) == 1, lines
    assert "SERVICE_DISCOVERY_STATE_FILE" in lines[0]
    assert "world-writable without the sticky bit" in lines[0]


@pytest.fixture(scope="module")
def default_policy_server(frontend: str) -> Iterator[ServerProcess]:
    """The default probe policy: every address but link-local and metadata ones."""
    env = base_env(HEALTH_CHECK_ALLOWED_NETWORKS="")
    with kept_socket() as sock, serving_on(frontend, env, sock) as srv:
        yield srv


@pytest.mark.parametrize(
    "host",
    ["64:ff9b::a9fe:a9fe", "::ffff:0:a9fe:a9fe", "::a9fe:a9fe", "0xa9fea9fe", "0xa9.0xfe.43518"],
)
def test_other_spellings_of_the_metadata_address_are_refused_probes(
    default_policy_server: ServerProcess, host: str
) -> None:
    response = _register(default_policy_server.url, host)
    assert response.status_code == 200, response.text
    message = response.json()["message"]
    assert "health checks refused" in message and "169.254.169.254" in message, message
