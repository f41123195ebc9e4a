"""A drained instance as the CLI shows it: in `instances`, out of `--healthy`, apart in `services`.

"Healthy" means in the CLI what the registry's healthy read means (healthy
and not in maintenance), so each check below compares with the API's own
`/healthy` answer rather than restating the rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cli_support import Ran

from tests.sdk.registry_process import SECRET, HealthEndpoint, RegistryProcess, eventually

Cli = Callable[..., Ran]


def ok(ran: Ran) -> Ran:
    assert ran.code == 0, ran.err
    return ran


@pytest.fixture
def drained(cli: Cli) -> Iterator[str]:
    """A service of two healthy instances, `d1` drained for `deploy`; its name."""
    name = f"drained-{time.monotonic_ns() % 10_000_000}"
    endpoint = HealthEndpoint()
    try:
        for instance in ("d1", "d2"):
            port = str(endpoint.port)
            ok(cli("register", name, instance, "--host", "127.0.0.1", "--port", port))

        def both_healthy() -> bool:
            listed = ok(cli("instances", name, "--json")).json()
            return [i["status"] for i in listed] == ["healthy", "healthy"]

        eventually(both_healthy, "both instances healthy")
        ok(cli("drain", name, "d1", "--reason", "deploy"))
        yield name
    finally:
        endpoint.close()


def api_healthy_ids(registry: RegistryProcess, name: str) -> list[str]:
    response = httpx.get(
        f"{registry.url}/v1/discovery/services/{name}/healthy",
        headers={"Authorization": f"Bearer {SECRET}"},
    )
    return sorted(i["instance_id"] for i in response.json()["healthy_instances"])


def ids(listed: list[dict[str, Any]]) -> list[str]:
    return sorted(i["instance_id"] for i in listed)


def test_healthy_leaves_out_a_drained_instance_as_the_api_does(
    cli: Cli, registry: RegistryProcess, drained: str
) -> None:
    assert api_healthy_ids(registry, drained) == ["d2"]
    assert ids(ok(cli("instances", drained, "--healthy", "--json")).json()) == ["d2"]
    table = ok(cli("instances", drained, "--healthy")).out.splitlines()
    assert [line.split()[0] for line in table[1:]] == ["d2"]


def test_instances_shows_the_maintenance_and_its_reason(cli: Cli, drained: str) -> None:
    lines = ok(cli("instances", drained)).out.splitlines()
    header, rows = lines[0], {line.split()[0]: line for line in lines[1:]}
    column = header.index("MAINTENANCE")
    assert rows["d1"][column:].startswith("deploy (")
    assert rows["d2"][column:].startswith("- ")
    [shown] = [
        i for i in ok(cli("instances", drained, "--json")).json() if i["instance_id"] == "d1"
    ]
    assert shown["maintenance"]["reason"] == "deploy"


def test_services_counts_a_drained_instance_apart_from_the_healthy(
    cli: Cli, registry: RegistryProcess, drained: str
) -> None:
    [row] = [r for r in ok(cli("services", "--json")).json() if r["service_name"] == drained]
    assert row == {
        "service_name": drained,
        "instances": 2,
        "healthy": len(api_healthy_ids(registry, drained)),
        "unhealthy": 0,
        "unknown": 0,
        "maintenance": 1,
    }
    [line] = [line for line in ok(cli("services")).out.splitlines() if line.startswith(drained)]
    assert line.split() == [drained, "2", "1", "0", "0", "1"]


def test_status_filters_on_the_status_shown_as_the_api_does(cli: Cli, drained: str) -> None:
    """`?status=` filters on `status` whether or not the instance is drained (docs/api.md)."""
    assert ids(ok(cli("instances", drained, "--status", "healthy", "--json")).json()) == [
        "d1",
        "d2",
    ]
    assert ok(cli("instances", drained, "--status", "unhealthy", "--json")).json() == []
    both = ["--status", "unhealthy", "--status", "unknown", "--json"]
    assert ok(cli("instances", drained, *both)).json() == []
    assert ids(
        ok(cli("instances", drained, "--healthy", "--status", "healthy", "--json")).json()
    ) == ["d2"]
    nothing = ok(cli("instances", drained, "--status", "unknown"))
    assert (nothing.out, "no instance" in nothing.err) == ("", True)
    refused = cli("instances", drained, "--status", "Healthy")
    assert refused.code == 2 and "usage:" in refused.err
