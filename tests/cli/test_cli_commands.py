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
    assert row["maintenance"] == 0

    table = ok(cli("services")).out.splitlines()
    assert table[0].split() == [
        "SERVICE",
        "INSTANCES",
        "HEALTHY",
        "UNHEALTHY",
        "UNKNOWN",
        "MAINTENANCE",
    ]
    assert [line.split()[:2] for line in table if line.startswith(name)] == [[name, "2"]]

    instances = by_id(ok(cli("instances", name, "--json")).json())
    assert sorted(instances) == ["g1", "g2"]
    assert instances["g1"]["health_endpoint"] == "/ready"
    assert instances["g1"]["metadata"] == {"zone": "a", "v": "1=x"}
    assert instances["g1"]["port"] == refused_port

    lines = ok(cli("instances", name)).out.splitlines()
    assert lines[0].split()[:5] == ["INSTANCE", "ADDRESS", "STATUS", "MAINTENANCE", "LOAD"]
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


@pytest.mark.parametrize("check", ["http", "tcp", "ttl"])
def test_register_with_each_check_kind(cli: Cli, endpoint: HealthEndpoint, check: str) -> None:
    name = unique("checked")
    port = str(endpoint.port)
    ran = ok(cli("register", name, "c1", "--host", "127.0.0.1", "--port", port, "--check", check))
    assert ran.out.strip() == f"registered {name}/c1 at 127.0.0.1:{port} ({check} check)"

    def shown() -> dict[str, Any]:
        [instance] = ok(cli("instances", name, "--json")).json()
        return instance  # type: ignore[no-any-return]

    assert shown()["check"] == {"type": check}
    # A listening port passes an http and a tcp probe; a ttl instance is healthy at once.
    eventually(lambda: shown()["status"] == "healthy", f"a {check}-checked instance healthy")


def test_register_refuses_an_unknown_check_kind(cli: Cli) -> None:
    ran = cli("register", "game", "g1", "--host", "h", "--port", "80", "--check", "grpc")
    assert ran.code == 2 and "usage:" in ran.err


def test_several_urls_in_the_environment_fail_over_as_in_the_sdk(
    cli: Cli, registry: RegistryProcess, monkeypatch: pytest.MonkeyPatch, refused_port: int
) -> None:
    down = f"http://127.0.0.1:{refused_port}"
    monkeypatch.setenv("SERVICE_DISCOVERY_URL", f"{down}, {registry.url}/")
    name = unique("failover")
    ok(cli("register", name, "f1", "--host", "127.0.0.1", "--port", str(refused_port)))
    assert sorted(by_id(ok(cli("instances", name, "--json")).json())) == ["f1"]
    assert ok(cli("health", "--json")).json()["status"] == "healthy"
    ran = ok(cli("services", "--json", "--url", f"{down},{registry.url}"))
    assert name in [row["service_name"] for row in ran.json()]

    monkeypatch.setenv("SERVICE_DISCOVERY_URL", f"{down},{down}")
    failed = cli("services")
    assert failed.code == 3 and len(failed.err.splitlines()) == 1, failed.err
    monkeypatch.setenv("SERVICE_DISCOVERY_URL", f"{registry.url},")
    bad = cli("services")
    assert bad.code == 2 and len(bad.err.splitlines()) == 1, bad.err
    assert "SERVICE_DISCOVERY_URL" in bad.err


def test_connection_flags_before_the_command(
    cli: Cli, registry: RegistryProcess, monkeypatch: pytest.MonkeyPatch, refused_port: int
) -> None:
    down = f"http://127.0.0.1:{refused_port}"
    monkeypatch.setenv("SERVICE_DISCOVERY_URL", down)
    monkeypatch.setenv("SERVICE_DISCOVERY_SECRET", "wrong")
    ran = ok(cli("--url", registry.url, "--token", SECRET, "services", "--json"))
    assert isinstance(ran.json(), list)
    assert cli("--url", registry.url, "services").code == 4  # the wrong token from the variable
    # After the command wins over before it, as the later flag always does.
    ok(cli("--url", down, "--token", "wrong", "services", "--url", registry.url, "--token", SECRET))
    assert cli("--url", "ftp://x", "services").code == 2
