"""How the CLI writes: relative times, the change lines of `watch`, colour only for a person."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cli_support import Ran

from service_discovery import InstanceStatus, ServiceInstance
from service_discovery.cli import build_parser, instance_changes, relative_time, run, use_colour
from service_discovery.models import Maintenance

Cli = Callable[..., Ran]
NOW = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)


class Terminal(io.StringIO):
    """Captured output that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s ago"),
        (59.9, "59s ago"),
        (60, "1m ago"),
        (3599, "59m ago"),
        (7200, "2h ago"),
        (3 * 86400 + 5, "3d ago"),
        (-5, "0s ago"),
    ],
)
def test_relative_time(seconds: float, expected: str) -> None:
    assert relative_time(NOW - timedelta(seconds=seconds), NOW) == expected


def test_relative_time_of_never() -> None:
    assert relative_time(None, NOW) == "-"


def instance(instance_id: str, **fields: Any) -> ServiceInstance:
    base: dict[str, Any] = {
        "service_name": "game",
        "instance_id": instance_id,
        "host": "10.0.0.1",
        "port": 8080,
        "last_heartbeat": NOW,
    }
    return ServiceInstance.model_validate(base | fields)


def summary(before: list[ServiceInstance], after: list[ServiceInstance]) -> list[tuple[Any, ...]]:
    return [(c.event, c.instance_id, dict(c.changes)) for c in instance_changes(before, after)]


def test_the_first_answer_is_what_is_present() -> None:
    changes = instance_changes([], [instance("b"), instance("a")], initial=True)
    assert [(c.event, c.instance_id) for c in changes] == [("present", "a"), ("present", "b")]


def test_added_removed_status_and_changed() -> None:
    before = [instance("a"), instance("b"), instance("c", load_percentage=0.1)]
    after = [
        instance("b", status="healthy", port=9090),
        instance("c", load_percentage=0.5, metadata={"v": "2"}),
        instance("d"),
    ]
    assert summary(before, after) == [
        ("removed", "a", {}),
        (
            "status",
            "b",
            {"status": (InstanceStatus.UNKNOWN, InstanceStatus.HEALTHY), "port": (8080, 9090)},
        ),
        ("changed", "c", {"metadata": ({}, {"v": "2"}), "load_percentage": (0.1, 0.5)}),
        ("added", "d", {}),
    ]


def test_heartbeat_and_probe_times_alone_are_not_changes() -> None:
    later = NOW + timedelta(seconds=30)
    assert (
        summary([instance("a")], [instance("a", last_heartbeat=later, last_health_check=later)])
        == []
    )


def test_colour_only_at_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Terminal())
    assert not use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "")  # no-color.org: only a non-empty value counts
    assert use_colour(Terminal())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Terminal())


def test_the_status_column_is_painted_for_a_terminal(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, refused_port: int
) -> None:
    name = f"painted-{refused_port}"
    assert cli("register", name, "p1", "--host", "127.0.0.1", "--port", str(refused_port)).code == 0
    args = build_parser().parse_args(["instances", name])

    terminal = Terminal()
    assert run(args, stdout=terminal) == 0
    header, row = terminal.getvalue().splitlines()
    assert "\x1b[" not in header
    # The refusing port turns p1 unhealthy within a few probes: either colour is right.
    assert "\x1b[33munknown\x1b[0m" in row or "\x1b[31munhealthy\x1b[0m" in row

    monkeypatch.setenv("NO_COLOR", "1")
    plain = Terminal()
    assert run(args, stdout=plain) == 0
    assert "\x1b[" not in plain.getvalue()

    as_json = Terminal()
    assert run(build_parser().parse_args(["instances", name, "--json"]), stdout=as_json) == 0
    assert "\x1b[" not in as_json.getvalue()


def test_a_drain_its_reason_and_its_end_are_maintenance_changes() -> None:
    drained = {"reason": "deploy", "since": NOW}
    assert summary([instance("a")], [instance("a", maintenance=drained)]) == [
        ("maintenance", "a", {"maintenance": (None, Maintenance(reason="deploy", since=NOW))})
    ]
    moved = summary(
        [instance("a", maintenance=drained)],
        [instance("a", maintenance=drained | {"reason": "rollback"})],
    )
    assert [(event, list(changes)) for event, _, changes in moved] == [
        ("maintenance", ["maintenance"])
    ]
    ended = summary([instance("a", maintenance=drained)], [instance("a", status="healthy")])
    assert [(event, list(changes)) for event, _, changes in ended] == [
        ("status", ["status", "maintenance"])
    ]
