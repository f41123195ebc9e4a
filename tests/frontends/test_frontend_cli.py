"""`service-discovery serve`: refusals are one line on stderr and exit code 2.

In process, the two `serve` functions are replaced by fakes, so a check that
wrongly passes fails the test instead of starting a server. Three cases also
run the real entry point (`python -m frontends serve`) in a subprocess.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from conformance.server_process import CONFIG_VARIABLES as VARIABLES
from frontends import cli
from frontends.runtime.settings import Settings
from sd_core import __version__
from tests.project_python import run_python


class Served:
    """Stands in for both `serve` functions and records what they were given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Settings, str | None]] = []

    def quart(self, settings: Settings, *, loop: str = "auto", app: object = None) -> None:
        self.calls.append(("quart", settings, loop))
        self.app = app

    def trio(self, settings: Settings) -> None:
        self.calls.append(("trio", settings, None))


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Served:
    """A clean environment with a secret; serving and logging setup replaced."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SERVICE_DISCOVERY_SECRET", "cli-secret")
    fake = Served()
    monkeypatch.setattr("frontends.servers.hypercorn.asyncio_server.serve", fake.quart)
    monkeypatch.setattr("frontends.servers.hypercorn.trio_server.serve", fake.trio)
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)
    return fake


def refusal(capsys: pytest.CaptureFixture[str]) -> str:
    """The one stderr line of a refusal (and nothing on stdout)."""
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("service-discovery: ")
    return lines[0]


BAD_ENV = [
    ("HEALTH_CHECK_INTERVAL_SECONDS", "-1"),
    ("HEALTH_CHECK_TIMEOUT_SECONDS", "45"),
    ("SERVICE_DISCOVERY_PORT", "0"),
    ("SERVICE_DISCOVERY_MAX_BODY_BYTES", "lots"),
    ("MAX_CONCURRENT_HEALTH_CHECKS", "0"),
    ("LOG_LEVEL", "bogus"),
    ("SHUTDOWN_GRACE_SECONDS", "-2"),
    ("SERVICE_DISCOVERY_READ_TOKEN", "cli-secret"),
    ("HEALTH_CHECK_ALLOWED_NETWORKS", "not-a-network"),
    ("SERVICE_DISCOVERY_STATE_FILE", "/no/such/directory/state.json"),
]


@pytest.mark.parametrize("frontend", ["quart", "trio"])
@pytest.mark.parametrize(("name", "raw"), BAD_ENV, ids=[n for n, _ in BAD_ENV])
def test_a_bad_environment_value_is_one_line_and_exit_2(
    served: Served,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    frontend: str,
    name: str,
    raw: str,
) -> None:
    monkeypatch.setenv(name, raw)
    assert cli.main(["serve", "--frontend", frontend]) == 2
    line = refusal(capsys)
    assert line.startswith(f"service-discovery: invalid {name}: ")
    assert served.calls == []


@pytest.mark.parametrize("workers", ["0", "2", "8"])
def test_more_than_one_worker_is_refused_pointing_at_cluster_mode(
    served: Served, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    assert cli.main(["serve", "--workers", workers]) == 2
    line = refusal(capsys)
    assert f"--workers {workers} refused" in line
    assert "cluster mode" in line and "SERVICE_DISCOVERY_ETCD_ENDPOINTS" in line
    assert served.calls == []


def test_cluster_mode_without_a_secret_is_refused(
    served: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SERVICE_DISCOVERY_SECRET")
    monkeypatch.setenv("SERVICE_DISCOVERY_ETCD_ENDPOINTS", "http://127.0.0.1:2379")
    assert cli.main(["serve"]) == 2
    line = refusal(capsys)
    assert line.startswith("service-discovery: invalid SERVICE_DISCOVERY_SECRET: ")
    assert "cluster mode" in line
    assert served.calls == []


def test_uvloop_with_the_trio_frontend_is_refused(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "--frontend", "trio", "--loop", "uvloop"]) == 2
    assert "uvloop" in refusal(capsys)
    assert served.calls == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--frontend", "trio", "--app", "x:y"], "--app applies to the quart frontend only"),
        (["--app", "no_such_module_here:app"], "invalid --app: no_such_module_here:app: cannot"),
        (["--app", "frontends"], "invalid --app: frontends: expected MODULE:NAME"),
        (["--app", "frontends:FRONTENDS"], "is not a Quart app nor a factory"),
    ],
)
def test_a_bad_app_is_refused_in_one_line(
    served: Served, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    assert cli.main(["serve", *argv]) == 2
    assert says in refusal(capsys)
    assert served.calls == []


def test_an_app_reaches_the_quart_server(served: Served) -> None:
    assert cli.main(["serve", "--app", "frontends.quart_app:create_app"]) == 0
    from frontends.quart_app import create_app

    assert served.app is create_app


def test_uvloop_when_not_installed_is_refused(
    served: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("frontends.quart_app.event_loop.uvloop_available", lambda: False)
    assert cli.main(["serve", "--frontend", "quart", "--loop", "uvloop"]) == 2
    assert "uvloop is not installed" in refusal(capsys)
    assert served.calls == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve"], ("quart", "auto")),
        (["serve", "--frontend", "quart", "--loop", "asyncio"], ("quart", "asyncio")),
        (["serve", "--frontend", "trio"], ("trio", None)),
    ],
)
def test_good_settings_reach_the_chosen_frontend(
    served: Served,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    expected: tuple[str, str | None],
) -> None:
    monkeypatch.setenv("SERVICE_DISCOVERY_PORT", "9000")
    monkeypatch.setenv("HEALTH_CHECK_INTERVAL_SECONDS", "7.5")
    assert cli.main([*argv, "--host", "127.0.0.1", "--port", "9100"]) == 0
    [(frontend, settings, loop)] = served.calls
    assert (frontend, loop) == expected
    assert (settings.host, settings.port) == ("127.0.0.1", 9100)
    assert settings.registry.health_check_interval == 7.5
    assert settings.secret == "cli-secret"


def test_a_generated_secret_is_printed_once_as_a_development_setting(
    served: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SERVICE_DISCOVERY_SECRET")
    assert cli.main(["serve", "--frontend", "trio"]) == 0
    [(_, settings, _)] = served.calls
    assert settings.secret_generated
    err = capsys.readouterr().err
    assert err.count(settings.secret) == 1
    assert "DEVELOPMENT SETTING" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == __version__


# ------------------------------------------------------ the real entry point


def run_module(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    clean.update({"SERVICE_DISCOVERY_SECRET": "cli-secret", **env})
    # --host 127.0.0.1: should a refusal ever fail to happen, the server stays local.
    return run_python("-m", "frontends", "serve", "--host", "127.0.0.1", *args, env=clean)


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        ([], {"HEALTH_CHECK_INTERVAL_SECONDS": "-1"}, "invalid HEALTH_CHECK_INTERVAL_SECONDS"),
        (["--workers", "2"], {}, "--workers 2 refused"),
        (["--frontend", "trio", "--loop", "uvloop"], {}, "--loop uvloop"),
    ],
    ids=["bad-env", "workers", "uvloop-trio"],
)
def test_python_m_frontends_refuses_with_one_line(
    args: list[str], env: dict[str, str], needle: str
) -> None:
    finished = run_module(args, **env)
    assert finished.returncode == 2, finished.stderr
    assert finished.stdout == ""
    assert "Traceback" not in finished.stderr
    lines = finished.stderr.splitlines()
    assert len(lines) == 1, finished.stderr
    assert needle in lines[0]


@pytest.mark.parametrize("frontend", ["quart", "trio"])
def test_a_port_already_in_use_is_one_line_and_exit_2(frontend: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        finished = run_module(["--frontend", frontend, "--port", str(port)])
    assert finished.returncode == 2, finished.stderr
    assert "Traceback" not in finished.stderr
    lines = finished.stderr.splitlines()
    assert len(lines) == 1, finished.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "already in use" in lines[0]


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM], ids=["udp", "tcp"])
def test_a_dns_port_already_in_use_is_one_line_and_exit_2(kind: socket.SocketKind) -> None:
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with socket.create_server(("127.0.0.1", 0)) as spare:  # HTTP's port: free when run
            http_port = spare.getsockname()[1]
        finished = run_module(["--port", str(http_port)], SERVICE_DISCOVERY_DNS_PORT=str(port))
    assert finished.returncode == 2, finished.stderr
    assert "Traceback" not in finished.stderr
    lines = finished.stderr.splitlines()
    assert len(lines) == 1, finished.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "SERVICE_DISCOVERY_DNS_PORT" in lines[0]


@pytest.mark.parametrize("extra", cli.SERVER_EXTRAS)
def test_loading_serve_without_a_server_extra_fails_naming_it(
    monkeypatch: pytest.MonkeyPatch, extra: str
) -> None:
    """What the console script reports when loading the `serve` entry point fails."""
    monkeypatch.setitem(sys.modules, extra, None)  # as when it is not installed
    with pytest.raises(ModuleNotFoundError) as failed:
        cli._require_server_extras()
    assert failed.value.name == extra
