"""Every exit code a script can test, each reached through a real registry or argparse.

0 ok, 1 not found, 2 usage, 3 registry unreachable, 4 auth. A failure is one
line on stderr (argparse's usage text aside) and nothing on stdout.
"""

from __future__ import annotations

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
        ["drain", "game", "g1"],
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
        "no-drain-yet",
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


def test_no_token_at_all_is_4(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVICE_DISCOVERY_SECRET")
    ran = cli("services")
    assert ran.code == EXIT_AUTH
    assert "401" in ran.err.splitlines()[-1]


def test_the_read_only_token_reads_but_may_not_write(cli: Cli) -> None:
    assert cli("services", "--token", READ_TOKEN).code == EXIT_OK
    line = one_line_failure(cli(*REGISTER, "--token", READ_TOKEN), EXIT_AUTH)
    assert "403" in line
