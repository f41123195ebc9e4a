"""The SDK against a real registry started from the project, on loopback.

Every scenario runs on trio (``trio.run``) and on asyncio (``asyncio.run``),
against each frontend. The registry runs with a 2 s TTL and 0.2 s probes so
the timing scenarios take seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
import trio
from quart import Quart

from service_discovery import (
    ServiceDiscoveryClient,
    ServiceRegistrationRequest,
    setup_service_health_checks,
)

from .fakes import ids
from .registry_process import SECRET, HealthEndpoint, RegistryProcess, running_registry

FRONTENDS = ["quart", "trio"]
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}-{time.monotonic_ns() % 100000}"


async def listed(client: ServiceDiscoveryClient, name: str) -> list[str]:
    """The ids of every instance of `name` the registry lists, healthy or not."""
    return ids(await client.discover_services(name, healthy_only=False))


async def eventually(condition: Callable[[], Awaitable[bool]], limit: float, what: str) -> float:
    """Poll ``condition`` every 50 ms; return how long it took, fail after ``limit`` s."""
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > limit:
            pytest.fail(f"{what}: not true after {limit} s")
        await anyio.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module", params=FRONTENDS)
def frontend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def registry_server(frontend: str) -> Iterator[RegistryProcess]:
    """One registry shared by the scenarios that do not stop it."""
    with running_registry(frontend) as server:
        yield server


@pytest.fixture
def own_registry(frontend: str) -> Iterator[RegistryProcess]:
    """A registry of the test's own, for the scenarios that restart or kill it."""
    with running_registry(frontend) as server:
        yield server


@pytest.fixture(scope="module")
def health_endpoint() -> Iterator[HealthEndpoint]:
    endpoint = HealthEndpoint()
    yield endpoint
    endpoint.close()


class FakeDB:
    async def ping(self) -> bool:
        return True


def test_seed_snippet_verbatim(
    registry_server: RegistryProcess, health_endpoint: HealthEndpoint
) -> None:
    """The code services already write, unchanged but for the URL and the secret."""
    registry_url = registry_server.url
    app = Quart(__name__)
    db_client = FakeDB()

    async def main() -> None:
        # A game-service instance the registry can probe, registered by someone else.
        async with ServiceDiscoveryClient(registry_url, SECRET, cache=False) as other:
            await other.register_service(
                service_name="game-service",
                instance_id="game-1",
                host="127.0.0.1",
                port=health_endpoint.port,
            )

            async def game_is_healthy() -> bool:
                return len(await other.discover_services("game-service")) == 1

            await eventually(game_is_healthy, 5, "game-service probed healthy")

            # --- seed code ---
            from service_discovery import ServiceDiscoveryClient as Client
            from service_discovery import ServiceRegistrationRequest as Request

            client = Client(service_discovery_url=registry_url, service_discovery_secret=SECRET)
            await client.register_service(
                Request(
                    service_name="my-service",
                    instance_id="instance-1",
                    host="localhost",
                    port=8080,
                    health_endpoint="/health",
                    metadata={"version": "1.0.0"},
                )
            )
            await client.start_heartbeat_loop(interval_seconds=60)
            game_services = await client.discover_services("game-service", healthy_only=True)

            from service_discovery import HealthChecker, setup_service_health_checks

            health_checker = setup_service_health_checks(
                app=app,
                service_name="my-service",
                db_client=db_client,
                external_services={"payment-api": "https://payment.example.com"},
            )
            # --- end of seed code ---

            assert client.heartbeat_running
            assert ids(game_services) == ["game-1"]
            assert game_services[0].port == health_endpoint.port
            assert game_services[0].load_percentage == pytest.approx(0.2)
            mine = await client.discover_services("my-service", healthy_only=False)
            assert ids(mine) == ["instance-1"]
            assert mine[0].metadata == {"version": "1.0.0"}
            assert isinstance(health_checker, HealthChecker)
            assert health_checker.check_names == ["database", "payment-api"]
            response = await app.test_client().get("/health")
            body = await response.get_json()
            assert body["service"] == "my-service"
            assert body["custom_checks"]["database"]["status"] == "pass"

            await client.stop_heartbeat_loop()
            assert await client.unregister_service()
            await other.unregister_service("game-service", "game-1")
            await client.aclose()

    asyncio.run(main())


async def _heartbeat_keeps_instance_alive(
    server: RegistryProcess, endpoint: HealthEndpoint
) -> None:
    name = unique("alive")
    async with ServiceDiscoveryClient(server.url, SECRET, cache=False) as client:
        async with ServiceDiscoveryClient(server.url, SECRET) as silent:
            await silent.register_service(**endpoint.instance(name, "silent"))
        async with client.registered(
            interval_seconds=server.ttl / 4, **endpoint.instance(name, "beating")
        ):
            registered_at = time.monotonic()

            async def silent_expired() -> bool:
                listed = await client.discover_services(name, healthy_only=False)
                return "silent" not in ids(listed)

            await eventually(silent_expired, server.ttl * 3, "the silent instance expired")
            await anyio.sleep(max(0.0, registered_at + server.ttl * 1.5 - time.monotonic()))
            assert await listed(client, name) == ["beating"]
        assert await listed(client, name) == []


async def _registered_unregisters_on_exit_and_cancel(
    server: RegistryProcess, endpoint: HealthEndpoint
) -> None:
    name = unique("scoped")
    async with ServiceDiscoveryClient(server.url, SECRET, cache=False) as client:
        async with client.registered(**endpoint.instance(name, "a")):
            assert await listed(client, name) == ["a"]
        assert await listed(client, name) == []

        with anyio.move_on_after(0.5) as scope:
            async with client.registered(**endpoint.instance(name, "b")):
                assert await listed(client, name) == ["b"]
                await anyio.sleep_forever()
        assert scope.cancelled_caught
        assert await listed(client, name) == []


async def _watch_sees_other_clients(server: RegistryProcess, endpoint: HealthEndpoint) -> None:
    name = unique("watched")
    async with (
        ServiceDiscoveryClient(server.url, SECRET) as watcher_client,
        ServiceDiscoveryClient(server.url, SECRET) as other,
    ):
        watcher = watcher_client.watch_service(name, healthy_only=False, wait_seconds=10)
        with anyio.fail_after(10):
            assert await watcher.__anext__() == []
            await other.register_service(**endpoint.instance(name, "w1"))
            started = time.monotonic()
            assert ids(await watcher.__anext__()) == ["w1"]
            assert time.monotonic() - started < 5  # woken by the change, not the wait
            await other.unregister_service()
            # A status change (the first probe runs at once) may come before the removal.
            while (seen := await watcher.__anext__()) != []:
                assert ids(seen) == ["w1"]
        await watcher.aclose()


async def _watch_services_follows_several(
    server: RegistryProcess, endpoint: HealthEndpoint
) -> None:
    """Over the registry's watch stream: each service now, then each change, by name."""
    first, second = unique("pair-a"), unique("pair-b")
    async with (
        ServiceDiscoveryClient(server.url, SECRET) as watcher_client,
        ServiceDiscoveryClient(server.url, SECRET) as other,
    ):
        watcher = watcher_client.watch_services([first, second], healthy_only=False)
        with anyio.fail_after(10):
            now: dict[str, list[str]] = {}
            for _ in range(2):
                name, instances = await watcher.__anext__()
                now[name] = ids(instances)
            assert now == {first: [], second: []}
            await other.register_service(
                service_name=second, instance_id="s1", host="127.0.0.1", port=endpoint.port
            )
            name, instances = await watcher.__anext__()
            assert (name, ids(instances)) == (second, ["s1"])
        await watcher.aclose()
        await other.unregister_service()


async def _reregisters_after_registry_restart(
    server: RegistryProcess, endpoint: HealthEndpoint
) -> None:
    name = unique("restart")
    interval = 1.0
    client = ServiceDiscoveryClient(server.url, SECRET, cache=False)

    async def back() -> bool:
        return await listed(client, name) == ["phoenix"]

    async with (
        client,
        client.registered(interval_seconds=interval, **endpoint.instance(name, "phoenix")),
    ):
        await anyio.to_thread.run_sync(server.restart)
        # The new registry knows nothing; the heartbeat's 404 must bring us back.
        took = await eventually(back, interval * 5, "re-registered after the restart")
        assert took <= interval + 0.5, f"re-registration took {took:.2f} s"


async def _registry_down_serves_stale(server: RegistryProcess, endpoint: HealthEndpoint) -> None:
    name = unique("stale")
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.WARNING)
    logging.getLogger("service_discovery").addHandler(handler)
    try:
        async with ServiceDiscoveryClient(server.url, SECRET, cache_ttl=0.2, timeout=3) as client:
            await client.register_service(**endpoint.instance(name, "s1"))

            async def healthy() -> bool:
                return ids(await client.discover_services(name)) == ["s1"]

            await eventually(healthy, 5, "probed healthy")
            fresh = await client.discover_services(name)
            assert not fresh.stale
            await anyio.to_thread.run_sync(server.close)  # down: connections refused
            await anyio.sleep(0.3)  # past the cache ttl
            stale = await client.discover_services(name)
            assert stale.stale
            assert ids(stale) == ["s1"]
            assert stale.age_seconds >= 0.3
    finally:
        logging.getLogger("service_discovery").removeHandler(handler)
    assert any("serving the last known instances" in r.getMessage() for r in records)


Scenario = Callable[[RegistryProcess, HealthEndpoint], Coroutine[Any, Any, None]]
SHARED: list[Scenario] = [
    _heartbeat_keeps_instance_alive,
    _registered_unregisters_on_exit_and_cancel,
    _watch_sees_other_clients,
    _watch_services_follows_several,
]
OWN: list[Scenario] = [_reregisters_after_registry_restart, _registry_down_serves_stale]


def _name(scenario: Scenario) -> str:
    return scenario.__name__.strip("_")


#: Each scenario with the fixture naming its registry: the shared one, or one of its
#: own for the scenarios that restart or kill it.
PLACES = [
    pytest.param(scenario, fixture, id=_name(scenario))
    for scenarios, fixture in ((SHARED, "registry_server"), (OWN, "own_registry"))
    for scenario in scenarios
]


@pytest.mark.parametrize("loop", ["trio", "asyncio"])
@pytest.mark.parametrize(("scenario", "registry_fixture"), PLACES)
def test_scenario(
    loop: str,
    scenario: Scenario,
    registry_fixture: str,
    frontend: str,
    health_endpoint: HealthEndpoint,
    request: pytest.FixtureRequest,
) -> None:
    """Every scenario on each event loop; ``frontend`` is named so the registry follows it."""
    registry: RegistryProcess = request.getfixturevalue(registry_fixture)
    assert registry.frontend == frontend
    if loop == "trio":
        trio.run(scenario, registry, health_endpoint)
    else:
        asyncio.run(scenario(registry, health_endpoint))


def test_registration_request_round_trips(
    registry_server: RegistryProcess, health_endpoint: HealthEndpoint
) -> None:
    """What the SDK sends is what the registry stores and the SDK reads back."""
    name = unique("roundtrip")
    request = ServiceRegistrationRequest(
        service_name=name,
        instance_id="r1",
        host="127.0.0.1",
        port=health_endpoint.port,
        health_endpoint="/health?deep=1",
        metadata={"version": "2.0.0", "zone": "eu-1"},
    )

    async def main() -> None:
        async with ServiceDiscoveryClient(registry_server.url, SECRET, cache=False) as client:
            await client.register_service(request)
            (instance,) = await client.discover_services(name, healthy_only=False)
            assert instance.model_dump(include=set(request.to_payload())) == request.to_payload()
            assert instance.registered_at is not None and instance.last_heartbeat is not None
            await client.unregister_service()

    asyncio.run(main())


@pytest.mark.parametrize("framework", ["quart", "fastapi"])
def test_registry_probes_a_mounted_health_endpoint(
    registry_server: RegistryProcess, framework: str
) -> None:
    """The registry's probe follows what setup_service_health_checks answers."""
    from fastapi import FastAPI
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    name = unique(f"probed-{framework}")
    app: Any = Quart(__name__) if framework == "quart" else FastAPI()
    dependency = {"up": True}
    setup_service_health_checks(
        app=app,
        service_name=name,
        checks={"dependency": lambda: dependency["up"]},
        load_percentage=lambda: 0.3,
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) it now
    config.accesslog = None

    async def main() -> None:
        stop = asyncio.Event()
        server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
        client = ServiceDiscoveryClient(registry_server.url, SECRET, cache=False)

        async def status_is(expected: str) -> bool:
            found = await client.discover_services(name, healthy_only=False)
            return bool(found) and found[0].status.value == expected

        try:
            async with (
                client,
                client.registered(service_name=name, instance_id="p1", host="127.0.0.1", port=port),
            ):
                await eventually(lambda: status_is("healthy"), 5, "probed healthy")
                (instance,) = await client.discover_services(name)
                assert instance.load_percentage == pytest.approx(0.3)

                dependency["up"] = False
                await eventually(lambda: status_is("unhealthy"), 5, "probed unhealthy")
                async with httpx.AsyncClient() as http:
                    response = await http.get(f"http://127.0.0.1:{port}/health")
                assert response.status_code == 503
                body = response.json()
                assert body["status"] == "unhealthy"
                assert body["custom_checks"]["dependency"]["status"] == "fail"
                assert await client.discover_services(name) == []

                dependency["up"] = True
                await eventually(lambda: status_is("healthy"), 5, "healthy again")
        finally:
            stop.set()
            await server

    asyncio.run(main())
