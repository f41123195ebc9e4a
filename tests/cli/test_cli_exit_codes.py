"""Every exit code a script can test, each reached through a real registry or argparse.

0 ok, 1 not found, 2 usage, 3 registry unreachable, 4 auth. A failure is one
line on stderr (argparse's usage text aside) and nothing on stdout.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from cli_support import READ_TOKEN, Ran

from service_discovery.cli import (
    EXIT_AUTH,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from tests.project_python import run_python
from tests.sdk.registry_process import RegistryProcess

Cli = Callable[..., Ran]
REGISTER = ["register", "cli-codes", "c1", "--host", "127.0.0.1", "--port", "8080"]


def one_line_failure(ran: Ran, code: int) -> str:
    assert ran.code == code, (ran.out, ran.err)
    assert ran.out == ""
    lines = ran.err.splitlines()
    assert len(lines) == 1, ran.err
    assert lines[0].startswith("service-discovery: ")
    return lines[0]


def test_exit_codes_are_distinct_and_documented() -> None:
    assert [EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "argv",
    [
        ["instances", "cli-no-such-service"],
        ["unregister", "cli-no-such-service", "x"],
        ["heartbeat", "cli-no-such-service", "x"],
    ],
    ids=["instances", "unregister", "heartbeat"],
)
def test_unknown_service_or_instance_is_1(cli: Cli, argv: list[str]) -> None:
    line = one_line_failure(cli(*argv), EXIT_NOT_FOUND)
    assert "cli-no-such-service" in line


def test_unknown_instance_of_a_known_service_is_1(cli: Cli) -> None:
    assert cli(*REGISTER).code == EXIT_OK
    one_line_failure(cli("unregister", "cli-codes", "nobody"), EXIT_NOT_FOUND)
    one_line_failure(cli("heartbeat", "cli-codes", "nobody"), EXIT_NOT_FOUND)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["instances"],
        ["instances", "game", "--meta", "no-equals-sign"],
        ["instances", "game", "--meta", "=value"],
        ["register", "game", "g1", "--host", "h"],
        ["register", "game", "g1", "--host", "h", "--port", "70000"],
        ["heartbeat", "game", "g1", "--load", "2"],
        ["services", "--url", "ftp://127.0.0.1:3004"],
        ["drain", "game"],
    ],
    ids=[
        "no-command",
        "unknown-command",
        "missing-name",
        "meta-without-equals",
        "meta-without-key",
        "missing-port",
        "port-out-of-range",
        "load-above-1",
        "not-http-url",
        "drain-without-id",
    ],
)
def test_usage_errors_are_2(cli: Cli, argv: list[str]) -> None:
    ran = cli(*argv)
    assert ran.code == EXIT_USAGE
    assert ran.out == ""
    assert "usage: service-discovery" in ran.err


def test_a_bad_url_in_the_environment_is_2(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_DISCOVERY_URL", "registry:3004")
    assert "SERVICE_DISCOVERY_URL" in one_line_failure(cli("services"), EXIT_USAGE)


def test_a_request_the_registry_refuses_as_invalid_is_2(cli: Cli) -> None:
    line = one_line_failure(
        cli("register", "not a name", "x", "--host", "127.0.0.1", "--port", "80"), EXIT_USAGE
    )
    assert "validation_error" in line
    assert "service_name" in line


@pytest.mark.parametrize(
    "argv", [["services"], ["instances", "game"], ["health"], ["heartbeat", "game", "g1"]]
)
def test_an_unreachable_registry_is_3(cli: Cli, refused_port: int, argv: list[str]) -> None:
    url = f"http://127.0.0.1:{refused_port}"
    line = one_line_failure(cli(*argv, "--url", url), EXIT_UNREACHABLE)
    assert url in line


def test_an_unreachable_registry_ends_watch_with_3(cli: Cli, refused_port: int) -> None:
    one_line_failure(
        cli("watch", "game", "--url", f"http://127.0.0.1:{refused_port}"), EXIT_UNREACHABLE
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["services"],
        ["instances", "game"],
        ["watch", "game"],
        ["unregister", "game", "g1"],
        REGISTER,
    ],
    ids=["services", "instances", "watch", "unregister", "register"],
)
def test_a_wrong_token_is_4(cli: Cli, argv: list[str]) -> None:
    line = one_line_failure(cli(*argv, "--token", "not-the-secret"), EXIT_AUTH)
    assert "401" in line
    assert "SERVICE_DISCOVERY_SECRET" in line


@pytest.mark.parametrize(
    "argv",
    [["services"], ["instances", "game"], ["watch", "game"], REGISTER, ["drain", "game", "g1"]],
    ids=["services", "instances", "watch", "register", "drain"],
)
def test_no_token_at_all_is_4_in_one_line(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    """One line naming the variable (the SDK's own warning about a missing secret is not
    printed besides it), and no request sent: the registry would only answer 401."""
    monkeypatch.delenv("SERVICE_DISCOVERY_SECRET")
    line = one_line_failure(cli(*argv), EXIT_AUTH)
    assert "SERVICE_DISCOVERY_SECRET" in line and "--token" in line


def test_no_token_is_one_line_from_the_console_script(registry: RegistryProcess) -> None:
    """As an operator runs it: in a process of its own, where nothing captures the logs
    (the SDK's warning about a missing secret used to be a second line)."""
    env = {k: v for k, v in os.environ.items() if k != "SERVICE_DISCOVERY_SECRET"}
    finished = run_python("-m", "frontends", "services", "--url", registry.url, env=env)
    assert finished.returncode == EXIT_AUTH
    assert finished.stdout == ""
    assert finished.stderr.splitlines() == [
        "service-discovery: no token: set $SERVICE_DISCOVERY_SECRET (or pass --token)"
    ]


def test_the_read_only_token_reads_but_may_not_write(cli: Cli) -> None:
    assert cli("services", "--token", READ_TOKEN).code == EXIT_OK
    line = one_line_failure(cli(*REGISTER, "--token", READ_TOKEN), EXIT_AUTH)
    assert "403" in line
