"""Each operator command end to end, as a function, against a real registry."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cli_support import Ran

from frontends import cli as frontends_cli
from tests.sdk.registry_process import SECRET, HealthEndpoint, RegistryProcess, eventually

Cli = Callable[..., Ran]
_numbers = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_numbers)}-{time.monotonic_ns() % 100000}"


def ok(ran: Ran) -> Ran:
    assert ran.code == 0, ran.err
    return ran


@pytest.fixture
def endpoint() -> Iterator[HealthEndpoint]:
    server = HealthEndpoint(load=0.25)
    try:
        yield server
    finally:
        server.close()


def by_id(instances: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["instance_id"]: i for i in instances}


def test_register_shows_in_services_and_instances(cli: Cli, refused_port: int) -> None:
    name = unique("game")
    port = str(refused_port)
    registered = ok(
        cli(
            "register",
            name,
            "g1",
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--health-endpoint",
            "/ready",
            "--meta",
            "zone=a",
            "--meta",
            "v=1=x",
        )
    )
    assert registered.out.strip() == f"registered {name}/g1 at 127.0.0.1:{port}"
    ok(cli("register", name, "g2", "--host", "127.0.0.1", "--port", port))

    [row] = [r for r in ok(cli("services", "--json")).json() if r["service_name"] == name]
    assert row["instances"] == 2
    assert row["healthy"] + row["unhealthy"] + row["unknown"] == 2

    table = ok(cli("services")).out.splitlines()
    assert table[0].split() == ["SERVICE", "INSTANCES", "HEALTHY", "UNHEALTHY", "UNKNOWN"]
    assert [line.split()[:2] for line in table if line.startswith(name)] == [[name, "2"]]

    instances = by_id(ok(cli("instances", name, "--json")).json())
    assert sorted(instances) == ["g1", "g2"]
    assert instances["g1"]["health_endpoint"] == "/ready"
    assert instances["g1"]["metadata"] == {"zone": "a", "v": "1=x"}
    assert instances["g1"]["port"] == refused_port

    lines = ok(cli("instances", name)).out.splitlines()
    assert lines[0].split()[:4] == ["INSTANCE", "ADDRESS", "STATUS", "LOAD"]
    g1 = next(line for line in lines if line.startswith("g1 "))
    assert f"127.0.0.1:{port}" in g1
    assert "zone=a" in g1
    assert "ago" in g1
    assert "\x1b[" not in "\n".join(lines)  # captured stdout is not a terminal


def test_instances_filters_on_health_and_every_meta_pair(
    cli: Cli, endpoint: HealthEndpoint, refused_port: int
) -> None:
    name = unique("shop")
    ok(
        cli(
            "register",
            name,
            "up",
            "--host",
            "127.0.0.1",
            "--port",
            str(endpoint.port),
            "--meta",
            "zone=a",
            "--meta",
            "v=2",
        )
    )
    ok(
        cli(
            "register",
            name,
            "down",
            "--host",
            "127.0.0.1",
            "--port",
            str(refused_port),
            "--meta",
            "zone=a",
            "--meta",
            "v=1",
        )
    )

    def settled() -> bool:
        statuses = {i["instance_id"]: i["status"] for i in cli("instances", name, "--json").json()}
        return statuses == {"up": "healthy", "down": "unhealthy"}

    eventually(settled, "one healthy and one unhealthy instance")

    def ids(*flags: str) -> list[str]:
        return sorted(by_id(ok(cli("instances", name, "--json", *flags)).json()))

    assert ids("--healthy") == ["up"]
    assert ids("--meta", "zone=a") == ["down", "up"]
    assert ids("--meta", "zone=a", "--meta", "v=1") == ["down"]
    assert ids("--meta", "zone=b") == []
    assert ids("--healthy", "--meta", "v=1") == []
    assert by_id(ok(cli("instances", name, "--json")).json())["up"]["load_percentage"] == 0.25

    nothing = ok(cli("instances", name, "--meta", "zone=b"))
    assert nothing.out == ""
    assert "no instance" in nothing.err


def test_heartbeat_renews_and_reports_load(cli: Cli, refused_port: int) -> None:
    name = unique("chat")
    ok(cli("register", name, "c1", "--host", "127.0.0.1", "--port", str(refused_port)))
    before = by_id(cli("instances", name, "--json").json())["c1"]["last_heartbeat"]
    beat = ok(cli("heartbeat", name, "c1", "--load", "0.3"))
    assert beat.out.strip() == f"heartbeat sent for {name}/c1"
    after = by_id(cli("instances", name, "--json").json())["c1"]
    assert after["load_percentage"] == 0.3
    assert after["last_heartbeat"] > before


def test_unregister_removes_the_instance(cli: Cli, refused_port: int) -> None:
    name = unique("auth")
    ok(cli("register", name, "a1", "--host", "127.0.0.1", "--port", str(refused_port)))
    ok(cli("register", name, "a2", "--host", "127.0.0.1", "--port", str(refused_port)))
    assert ok(cli("unregister", name, "a1")).out.strip() == f"unregistered {name}/a1"
    assert sorted(by_id(ok(cli("instances", name, "--json")).json())) == ["a2"]


def test_drain_takes_an_instance_out_of_healthy_reads_and_back(cli: Cli) -> None:
    name = unique("drain")
    ok(cli("register", name, "d1", "--host", "127.0.0.1", "--port", "9"))
    drained = cli("drain", name, "d1", "--reason", "deploy")
    assert ok(drained).out.strip() == f"{name}/d1 is in maintenance: deploy"
    [shown] = ok(cli("instances", name, "--json")).json()
    assert shown["maintenance"]["reason"] == "deploy"
    back = ok(cli("drain", name, "d1", "--clear"))
    assert back.out.strip() == f"{name}/d1 is back in rotation"
    [shown] = ok(cli("instances", name, "--json")).json()
    assert shown["maintenance"] is None
    missing = cli("drain", name, "no-such")
    assert missing.code == 1 and len(missing.err.splitlines()) == 1, missing.err


def test_health_as_json_and_as_a_table(cli: Cli) -> None:
    document = ok(cli("health", "--json")).json()
    assert document["status"] == "healthy"
    assert document["frontend"] == "trio"
    rows = dict(line.split(None, 1) for line in ok(cli("health")).out.splitlines())
    assert rows["status"] == "healthy"
    assert rows["self_preservation"] == "no"


def test_health_needs_no_token(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVICE_DISCOVERY_SECRET")
    assert ok(cli("health", "--json")).json()["status"] == "healthy"


def test_flags_win_over_the_environment(
    cli: Cli, registry: RegistryProcess, monkeypatch: pytest.MonkeyPatch, refused_port: int
) -> None:
    monkeypatch.setenv("SERVICE_DISCOVERY_URL", f"http://127.0.0.1:{refused_port}")
    monkeypatch.setenv("SERVICE_DISCOVERY_SECRET", "wrong")
    assert cli("services").code == 3
    ran = cli("services", "--json", "--url", registry.url, "--token", SECRET)
    assert ran.code == 0, ran.err
    assert isinstance(ran.json(), list)


def test_python_m_frontends_dispatches_to_the_operator_cli(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    assert frontends_cli.main(["health", "--json"]) == 0
    assert '"status": "healthy"' in capsys.readouterr().out
