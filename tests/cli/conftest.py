"""One real registry for the CLI tests, and a way to run a command as a function.

The registry is the SDK tests' `RegistryProcess` (a subprocess serving a
socket bound to 127.0.0.1 port 0, stopped with SIGTERM), imported rather than
copied (tests/conftest.py puts the project root on `sys.path`, so `tests.sdk`
imports). Its TTL is long so that no step of a slow run expires an
instance under a test; probes stay fast so statuses settle in a second.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from cli_support import READ_TOKEN, Ran

from service_discovery.cli import main
from tests.sdk.registry_process import SECRET, RegistryProcess, running_registry


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryProcess]:
    env = {"SERVICE_REGISTRATION_TTL_SECONDS": "600", "SERVICE_DISCOVERY_READ_TOKEN": READ_TOKEN}
    with running_registry("trio", env) as server:
        yield server


@pytest.fixture
def cli(
    registry: RegistryProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Callable[..., Ran]:
    """``cli("instances", "game")`` runs the console script's `main` against the registry."""
    monkeypatch.setenv("SERVICE_DISCOVERY_URL", registry.url)
    monkeypatch.setenv("SERVICE_DISCOVERY_SECRET", SECRET)
    monkeypatch.delenv("NO_COLOR", raising=False)
    capsys.readouterr()

    def run(*argv: str) -> Ran:
        try:
            code = main(list(argv))
        except SystemExit as exited:  # argparse: usage errors, --help, --version
            code = exited.code if isinstance(exited.code, int) else 1
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
