"""The SDK against the real registry core in-process, on one fake clock.

`service_discovery.testing.InProcessRegistry` is public API: these tests are
also its tests. The heartbeat loop's sleep moves the registry's clock, so TTLs
of minutes pass in microseconds and every expiry happens exactly on time.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import anyio
import pytest

from sd_core import RegistryConfig
from service_discovery import ServiceDiscoveryClient, ServiceRegistrationRequest, ValidationError
from service_discovery.testing import InProcessRegistry

REQUEST = ServiceRegistrationRequest(
    service_name="my-service", instance_id="instance-1", host="10.0.0.1", port=8080
)


class Rounds:
    """A client `sleep` that moves the registry's clock and stops the loop after `rounds`."""

    def __init__(self, registry: InProcessRegistry, rounds: int) -> None:
        self.registry = registry
        self.rounds = rounds
        self.slept: list[float] = []
        self.scope = anyio.CancelScope()
        self.restart_at: int | None = None

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await self.registry.sleep(seconds)
        if len(self.slept) == self.restart_at:
            self.registry.restart()
        if len(self.slept) >= self.rounds:
            self.scope.cancel()


def client_for(registry: InProcessRegistry, rounds: Rounds | None = None) -> ServiceDiscoveryClient:
    options = {"rng": random.Random(0)}
    if rounds is not None:
        options["sleep"] = rounds.sleep
    return registry.client(**options)


def ids(registry: InProcessRegistry, healthy_only: bool = False) -> list[str]:
    found = registry.simulation.discover("my-service", healthy_only=healthy_only)
    return [i["instance_id"] for i in found]


async def test_heartbeats_keep_an_instance_alive_for_an_hour() -> None:
    registry = InProcessRegistry(RegistryConfig(registration_ttl=180))
    rounds = Rounds(registry, 61)
    async with client_for(registry, rounds) as client:
        await client.register_service(REQUEST)
        registry.simulation.register("my-service", "silent", port=9)  # never heartbeats
        with rounds.scope:
            await client.run_heartbeat_loop(60)
    assert registry.now() == 61 * 60
    assert ids(registry) == ["instance-1"]


async def test_without_heartbeats_it_expires_at_the_ttl() -> None:
    """The control for the test above: the TTL really applies to this client's instance."""
    registry = InProcessRegistry(RegistryConfig(registration_ttl=180))
    async with client_for(registry) as client:
        await client.register_service(REQUEST)
    registry.advance(179.9)
    assert ids(registry) == ["instance-1"]
    registry.advance(0.2)
    assert ids(registry) == []


async def test_a_restarted_registry_gets_us_back_at_the_next_heartbeat() -> None:
    registry = InProcessRegistry()
    rounds = Rounds(registry, 3)
    rounds.restart_at = 2  # the registry restarts during the second interval
    async with client_for(registry, rounds) as client:
        await client.register_service(REQUEST)
        with rounds.scope:
            await client.run_heartbeat_loop(60)
    assert rounds.slept == [60, 60, 60]  # no backoff: the 404 re-registered at once
    assert ids(registry) == ["instance-1"]


async def test_discovery_and_pick_see_probes_and_load() -> None:
    registry = InProcessRegistry()
    for n, load in enumerate([0.9, 0.1, 0.5]):
        registry.simulation.register("game", f"game-{n}", port=8000 + n, load_percentage=load)
    registry.set_probe("game", "game-2", healthy=False)
    async with client_for(registry) as client:
        assert await client.discover_services("game") == []  # not probed yet
        registry.advance(60)
        healthy = await client.discover_services("game")  # the 5 s cache has aged out
        assert [i.instance_id for i in healthy] == ["game-0", "game-1"]
        assert healthy.discovery_index is not None
        picks = Counter([(await client.pick("game")).instance_id for _ in range(40)])
        assert picks["game-1"] > picks["game-0"]  # less loaded, picked more; game-2 never
        every = await client.discover_services("game", healthy_only=False)
        assert [i.status.value for i in every] == ["healthy", "healthy", "unhealthy"]


async def test_validation_errors_of_the_real_core_come_through() -> None:
    async with client_for(InProcessRegistry()) as client:
        with pytest.raises(ValidationError) as caught:
            await client.register_service(
                service_name="-bad", instance_id="i", host="h", port=1, metadata={"k": "v"}
            )
    assert [d.field for d in caught.value.details] == ["service_name"]


async def test_auth_is_the_real_registry_s() -> None:
    from service_discovery import AuthenticationError

    registry = InProcessRegistry()
    async with registry.client(service_discovery_secret="wrong") as wrong:
        with pytest.raises(AuthenticationError) as caught:
            await wrong.register_service(REQUEST)
    assert caught.value.code == "unauthorized"
    assert ids(registry) == []


async def test_watch_wakes_on_a_change_made_through_the_registry() -> None:
    registry = InProcessRegistry()
    registry.simulation.register("game", "game-0", port=8000)
    seen: list[list[str]] = []
    async with client_for(registry) as client:
        watch = client.watch_service("game", healthy_only=False)
        first = await watch.__anext__()
        seen.append([i.instance_id for i in first])
        registry.simulation.register("game", "game-1", port=8001)
        second = await watch.__anext__()
        seen.append([i.instance_id for i in second])
    assert seen == [["game-0"], ["game-0", "game-1"]]


def test_the_docstring_example_runs_on_asyncio() -> None:
    async def example() -> None:
        registry = InProcessRegistry()
        async with registry.client() as client:
            await client.register_service(
                service_name="game", instance_id="g1", host="10.0.0.1", port=8080
            )
            registry.advance(30)  # probed once: healthy
            assert [i.instance_id for i in await client.discover_services("game")] == ["g1"]
            registry.advance(181)  # no heartbeat: expired
            assert await client.discover_services("game", healthy_only=False) == []

    asyncio.run(example())
