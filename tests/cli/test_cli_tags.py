"""Tags from the shell: `register --tag`, a TAGS column, `--tag` on `instances` and
`services`, and a tags-only change as a `watch` line."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from cli_support import Ran

from service_discovery.cli import EXIT_USAGE, instance_changes
from service_discovery.models import ServiceInstance

Cli = Callable[..., Ran]
_numbers = itertools.count()


def _unique(prefix: str) -> str:
    return f"{prefix}-{next(_numbers)}-{time.monotonic_ns() % 100000}"


def _register(cli: Cli, name: str, instance_id: str, port: int, *tags: str) -> Ran:
    flags = [flag for tag in tags for flag in ("--tag", tag)]
    return cli("register", name, instance_id, "--host", "127.0.0.1", "--port", str(port), *flags)


def test_register_with_tags_shows_them_in_instances(cli: Cli, refused_port: int) -> None:
    name = _unique("tagged")
    registered = _register(cli, name, "t1", refused_port, "web", "traefik.enable=true", "web")
    assert registered.code == 0, registered.err
    assert registered.out.strip().endswith("tagged web,traefik.enable=true")
    assert _register(cli, name, "t2", refused_port).code == 0

    listed = {i["instance_id"]: i for i in cli("instances", name, "--json").json()}
    assert listed["t1"]["tags"] == ["web", "traefik.enable=true"]
    assert listed["t2"]["tags"] == []

    lines = cli("instances", name).out.splitlines()
    assert lines[0].split()[-2:] == ["METADATA", "TAGS"]
    t1 = next(line for line in lines if line.startswith("t1 "))
    assert t1.split()[-1] == "web,traefik.enable=true"
    t2 = next(line for line in lines if line.startswith("t2 "))
    assert t2.split()[-1] == "-"  # no tags


def test_instances_filters_on_every_tag(cli: Cli, refused_port: int) -> None:
    name = _unique("filtered")
    for instance_id, tags in (("a", ("web", "eu")), ("b", ("web",)), ("c", ())):
        assert _register(cli, name, instance_id, refused_port, *tags).code == 0

    def ids(*tags: str) -> list[str]:
        flags = [flag for tag in tags for flag in ("--tag", tag)]
        ran = cli("instances", name, "--json", *flags)
        assert ran.code == 0, ran.err
        return sorted(i["instance_id"] for i in ran.json())

    assert ids("web") == ["a", "b"]
    assert ids("web", "eu") == ["a"]
    assert ids("us") == []
    nothing = cli("instances", name, "--tag", "us")
    assert (nothing.code, nothing.out) == (0, "")
    assert "no instance" in nothing.err


def test_services_counts_only_tagged_instances(cli: Cli, refused_port: int) -> None:
    web, batch = _unique("web"), _unique("batch")
    for name, instance_id, tags in (
        (web, "a", ("web", "eu")),
        (web, "b", ("web",)),
        (batch, "c", ()),
    ):
        assert _register(cli, name, instance_id, refused_port, *tags).code == 0

    def counts(*tags: str) -> dict[str, int]:
        flags = [flag for tag in tags for flag in ("--tag", tag)]
        ran = cli("services", "--json", *flags)
        assert ran.code == 0, ran.err
        rows = {row["service_name"]: row["instances"] for row in ran.json()}
        return {name: rows[name] for name in (web, batch) if name in rows}

    assert counts() == {web: 2, batch: 1}
    assert counts("web") == {web: 2}  # a service no instance of which matches is left out
    assert counts("web", "eu") == {web: 1}
    nothing = cli("services", "--tag", _unique("none"))
    assert (nothing.code, nothing.out) == (0, "")
    assert "no services with an instance tagged" in nothing.err
    bad = cli("services", "--tag", "a,b")
    assert bad.code == EXIT_USAGE
    assert "comma" in bad.err


def test_a_tag_the_registry_refuses_is_a_usage_error(cli: Cli, refused_port: int) -> None:
    name = _unique("refused")
    refused = _register(cli, name, "x", refused_port, "a,b")
    assert refused.code == EXIT_USAGE
    assert "comma" in refused.err
    assert _register(cli, name, "x", refused_port, "ok").code == 0
    bad_filter = cli("instances", name, "--tag", "a,b")
    assert bad_filter.code == EXIT_USAGE
    assert "comma" in bad_filter.err


def _instance(**fields: Any) -> ServiceInstance:
    base = {"service_name": "s", "instance_id": "i", "host": "10.0.0.1", "port": 1}
    return ServiceInstance.model_validate(base | fields)


def test_a_tags_only_change_is_a_watch_change() -> None:
    [change] = instance_changes([_instance(tags=["a"])], [_instance(tags=["a", "b"])])
    assert (change.event, dict(change.changes)) == ("changed", {"tags": (("a",), ("a", "b"))})
