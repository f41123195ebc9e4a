"""`service-discovery serve` runs the plugin the server registers, found by name.

The console script looks ``serve`` up in the entry-point group
``service_discovery.commands``. Most tests here hand it stand-in entry points,
so they hold whatever is installed; the last two check the real one: what
pyproject registers, and that the installed metadata says the same.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from importlib.metadata import EntryPoint, EntryPoints, entry_points

import pytest

from service_discovery import cli
from tests.project_python import ROOT

ran: list[list[str]] = []


def stand_in(arguments: list[str]) -> int:
    """A `serve` plugin that records its arguments and exits 7."""
    ran.append(list(arguments))
    return 7


def registered(*values: str) -> Callable[..., EntryPoints]:
    """A lookup of the commands group that finds a `serve` entry point per value."""

    def lookup(*, group: str, name: str) -> EntryPoints:
        assert (group, name) == (cli.COMMAND_PLUGINS, "serve")
        return EntryPoints(EntryPoint(name=name, value=value, group=group) for value in values)

    return lookup


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    return line


def test_serve_runs_the_plugin_with_the_arguments_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran.clear()
    monkeypatch.setattr(cli, "entry_points", registered(f"{__name__}:stand_in"))
    assert cli.main(["serve", "--frontend", "trio", "--port", "1"]) == 7
    assert ran == [["--frontend", "trio", "--port", "1"]]


def test_a_plugin_that_cannot_load_names_the_missing_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "entry_points", registered("sd_no_such_server_extra:serve"))
    assert cli.main(["serve"]) == cli.EXIT_USAGE
    assert one_line(capsys) == (
        "service-discovery: serve needs the server extras (sd_no_such_server_extra is missing): "
        "pip install 'service-discovery[server]'"
    )


def test_without_a_plugin_serve_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "entry_points", registered())
    assert cli.main(["serve"]) == cli.EXIT_USAGE
    assert one_line(capsys) == (
        "service-discovery: serve is not installed: pip install 'service-discovery[server]'"
    )


def _pyproject_commands() -> dict[str, str]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        commands: dict[str, str] = tomllib.load(file)["project"]["entry-points"][
            cli.COMMAND_PLUGINS
        ]
    return commands


def test_the_server_registers_its_serve_in_pyproject() -> None:
    from frontends.cli import serve

    value = _pyproject_commands()["serve"]
    assert EntryPoint(name="serve", value=value, group=cli.COMMAND_PLUGINS).load() is serve


def test_the_installed_metadata_registers_what_pyproject_does() -> None:
    installed = {entry.name: entry.value for entry in entry_points(group=cli.COMMAND_PLUGINS)}
    assert installed == _pyproject_commands(), (
        "the installed metadata is older than pyproject.toml: pip install -e ."
    )
