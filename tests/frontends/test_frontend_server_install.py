"""Each server's `install()` refuses an untested release of what it patches or subclasses,
unless `SERVICE_DISCOVERY_ALLOW_UNTESTED_SERVER=1`; `serve` turns the refusal into one
line and exit 2, like any other bad setting (frontends/servers/tested.py says why)."""

from __future__ import annotations

import re
import socket
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from frontends import cli
from frontends.servers.hypercorn import install as hypercorn_install
from frontends.servers.tested import (
    ALLOW_UNTESTED,
    QUART,
    ReleaseRange,
    UntestedServer,
    allows_untested,
    require_tested,
)
from frontends.servers.uvicorn import install as uvicorn_install
from sd_core import ConfigError

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def versions_with(**versions: str) -> Callable[[str], str]:
    """A version lookup answering each tested package's lower bound, except `versions`."""
    every = (*hypercorn_install.TESTED, *uvicorn_install.TESTED)
    known = {pin.package: f"{pin.at_least}.0" for pin in every}
    known.update(versions)
    return known.__getitem__


@pytest.fixture
def no_patches(monkeypatch: pytest.MonkeyPatch) -> None:
    """hypercorn's install applies no patch here (they are global to the test process)."""
    monkeypatch.setattr(hypercorn_install, "PATCHES", ())


@pytest.mark.parametrize(("package", "version"), [("hypercorn", "0.19.0"), ("h11", "0.15.9")])
def test_hypercorn_install_refuses_an_untested_release(
    no_patches: None, package: str, version: str
) -> None:
    with pytest.raises(UntestedServer) as refused:
        hypercorn_install.install(None, environ={}, version=versions_with(**{package: version}))
    message = refused.value.message
    assert f"{package} {version} is untested" in message
    assert f"{package}>=" in message and ",<" in message
    assert f"{ALLOW_UNTESTED}=1" in message
    assert "\n" not in message


def test_hypercorn_install_on_asyncio_checks_quart_too(no_patches: None) -> None:
    worker = hypercorn_install.AsyncioWorker(2048, lambda connected: NotImplemented)
    with pytest.raises(UntestedServer, match=re.escape("quart 0.23.0")):
        hypercorn_install.install(worker, environ={}, version=versions_with(quart="0.23.0"))


def test_hypercorn_install_accepts_an_untested_release_when_allowed(no_patches: None) -> None:
    lookup = versions_with(hypercorn="0.19.0", h11="0.17.1")
    hypercorn_install.install(None, environ={ALLOW_UNTESTED: "1"}, version=lookup)


def test_hypercorn_install_accepts_the_tested_releases(no_patches: None) -> None:
    hypercorn_install.install(None, environ={}, version=versions_with(hypercorn="0.18.9"))


def test_uvicorn_install_refuses_an_untested_release_and_accepts_when_allowed() -> None:
    lookup = versions_with(uvicorn="0.56.0")
    with pytest.raises(UntestedServer, match=re.escape("uvicorn 0.56.0 is untested")):
        uvicorn_install.install(environ={}, version=lookup)
    uvicorn_install.install(environ={ALLOW_UNTESTED: "1"}, version=lookup)
    uvicorn_install.install(environ={}, version=versions_with())


def test_the_installed_releases_are_the_tested_ones() -> None:
    """The environment this suite runs in passes the check as it is."""
    hypercorn_pins = (*hypercorn_install.TESTED, QUART)
    require_tested((*hypercorn_pins, *uvicorn_install.TESTED), environ={})


@pytest.mark.parametrize(
    ("version", "admitted"),
    [("0.18.0", True), ("0.18.12", True), ("0.18.2rc1", True), ("0.19.0", False),
     ("0.17.9", False), ("1.0", False)],
)  # fmt: skip
def test_a_tested_range_admits_its_minor_release_only(version: str, admitted: bool) -> None:
    assert ReleaseRange("hypercorn", "0.18", "0.19").admits(version) is admitted


@pytest.mark.parametrize("raw", ["yes", "2", "true"])
def test_the_setting_takes_0_or_1_only(raw: str) -> None:
    with pytest.raises(ConfigError, match=ALLOW_UNTESTED):
        allows_untested({ALLOW_UNTESTED: raw})
    assert allows_untested({}) is False
    assert allows_untested({ALLOW_UNTESTED: "0"}) is False


def test_the_tested_ranges_are_pyprojects_pins() -> None:
    """One range per package: the code's check and the install's pin agree."""
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    pinned = {requirement.replace(" ", "") for group in extras.values() for requirement in group}
    for pin in (*hypercorn_install.TESTED, *uvicorn_install.TESTED):
        assert f"{pin.package}{pin.pin}" in pinned, pin


def test_serve_refuses_an_untested_release_in_one_line_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SERVICE_DISCOVERY_SECRET", "cli-secret")
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)

    def untested(settings: object) -> None:
        raise UntestedServer("hypercorn", "0.19.0", hypercorn_install.TESTED[0])

    monkeypatch.setattr("frontends.servers.hypercorn.trio_server.serve", untested)
    with socket.socket() as probe:  # a port free now, for the address check
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    assert cli.main(["serve", "--frontend", "trio", "--host", "127.0.0.1", "--port", port]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("service-discovery:")]
    assert lines == [
        "service-discovery: hypercorn 0.19.0 is untested (tested: hypercorn>=0.18,<0.19); "
        f"set {ALLOW_UNTESTED}=1 to start on it anyway"
    ]
    assert "Traceback" not in captured.err
