"""The client against the fake registry: registration styles, discovery, cache, pick."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from service_discovery import (
    AuthenticationError,
    InstanceStatus,
    NoHealthyInstancesError,
    RegistryUnavailableError,
    ServiceDiscoveryClient,
    ServiceInstanceList,
    ServiceRegistrationRequest,
)

from .conftest import URL, MakeClient
from .fakes import SECRET, FakeClock, FakeRegistry


@asynccontextmanager
async def read_once(
    make_client: MakeClient, registry: FakeRegistry, **options: Any
) -> AsyncIterator[ServiceDiscoveryClient]:
    """A client that has read ``svc`` (one instance, ``a``) once: the state every cache
    test starts from before it moves the clock or breaks the registry."""
    registry.add("svc", "a")
    async with make_client(**options) as client:
        await client.discover_services("svc")
        yield client


async def test_register_with_a_request_object(
    make_client: MakeClient, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    async with make_client() as client:
        assert await client.register_service(request_a) is True
        assert client.registration == request_a
    assert registry.bodies[-1] == {
        "service_name": "my-service",
        "instance_id": "instance-1",
        "host": "localhost",
        "port": 8080,
        "health_endpoint": "/health",
        "metadata": {"version": "1.0.0"},
    }


async def test_register_with_keywords(make_client: MakeClient, registry: FakeRegistry) -> None:
    async with make_client() as client:
        assert await client.register_service(
            service_name="kw-service", instance_id="kw-1", host="10.0.0.1", port=81
        )
        assert await client.send_heartbeat(load_percentage=0.25)
    assert ("kw-service", "kw-1") in registry.instances
    assert registry.bodies[0]["health_endpoint"] == "/health"
    assert registry.bodies[1] == {
        "service_name": "kw-service",
        "instance_id": "kw-1",
        "load_percentage": 0.25,
    }


async def test_register_rejects_both_styles_at_once(
    make_client: MakeClient, request_a: ServiceRegistrationRequest
) -> None:
    async with make_client() as client:
        with pytest.raises(TypeError):
            await client.register_service(request_a, port=1)  # type: ignore[call-overload]
        with pytest.raises(TypeError):
            await client.register_service()  # type: ignore[call-overload]


async def test_heartbeat_and_unregister_need_a_registration(make_client: MakeClient) -> None:
    async with make_client() as client:
        with pytest.raises(RuntimeError, match="register_service"):
            await client.send_heartbeat()
        with pytest.raises(RuntimeError, match="register_service"):
            await client.unregister_service()
        with pytest.raises(RuntimeError, match="register_service"):
            await client.run_heartbeat_loop()


async def test_unregister_defaults_to_own_instance(
    make_client: MakeClient, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    async with make_client() as client:
        await client.register_service(request_a)
        assert await client.unregister_service()
    assert registry.instances == {}
    assert registry.paths("DELETE") == ["/v1/discovery/unregister/my-service/instance-1"]


async def test_discover_returns_typed_healthy_instances(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    registry.add("game-service", "g1", load=0.1)
    registry.add("game-service", "g2", status="unhealthy")
    async with make_client() as client:
        healthy = await client.discover_services("game-service", healthy_only=True)
        every = await client.discover_services("game-service", healthy_only=False)
    assert isinstance(healthy, ServiceInstanceList)
    assert [i.instance_id for i in healthy] == ["g1"]
    assert healthy[0].status is InstanceStatus.HEALTHY
    assert healthy[0].load_percentage == 0.1
    assert [i.instance_id for i in every] == ["g1", "g2"]
    assert healthy.discovery_index == every.discovery_index == registry.index
    assert not healthy.stale


async def test_discover_unknown_service_is_empty(make_client: MakeClient) -> None:
    async with make_client(cache=False) as client:
        assert await client.discover_services("nobody") == []
        assert await client.discover_services("nobody", healthy_only=False) == []


async def test_discover_caches_for_the_ttl(
    make_client: MakeClient, registry: FakeRegistry, clock: FakeClock
) -> None:
    async with read_once(make_client, registry, cache_ttl=5) as client:
        await client.discover_services("svc")
        assert len(registry.paths("GET")) == 1
        clock.now += 5
        await client.discover_services("svc")
        assert len(registry.paths("GET")) == 2


async def test_registry_down_serves_stale_answer_and_says_so(
    make_client: MakeClient,
    registry: FakeRegistry,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.add("svc", "a")
    async with make_client(cache_ttl=5) as client:
        fresh = await client.discover_services("svc")
        registry.down = True
        clock.now += 30
        with caplog.at_level(logging.WARNING, logger="service_discovery"):
            stale = await client.discover_services("svc")
            # Within the ttl the stale answer is reused without another attempt.
            attempts = len(registry.log)
            again = await client.discover_services("svc")
            assert len(registry.log) == attempts
        assert stale == fresh
        assert stale.stale and again.stale
        assert stale.age_seconds == 30
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "serving the last known instances of 'svc'" in warnings[0].getMessage()
        # Back up: fresh again.
        registry.down = False
        clock.now += 5
        back = await client.discover_services("svc")
        assert not back.stale


def _go_down(registry: FakeRegistry) -> None:
    registry.down = True


def _rotate_the_secret(registry: FakeRegistry) -> None:
    registry.secret = "rotated"


@pytest.mark.parametrize(
    ("options", "break_registry", "error"),
    [
        pytest.param({"cache": False}, _go_down, RegistryUnavailableError, id="down-no-cache"),
        pytest.param({}, _rotate_the_secret, AuthenticationError, id="auth-error-with-cache"),
    ],
)
async def test_a_failure_with_nothing_to_serve_is_raised(
    make_client: MakeClient,
    registry: FakeRegistry,
    clock: FakeClock,
    options: dict[str, Any],
    break_registry: Callable[[FakeRegistry], None],
    error: type[Exception],
) -> None:
    """After a good read, a failure the cache may not (or cannot) serve over is raised:
    a down registry with the cache off, and an auth error whatever the cache holds."""
    async with read_once(make_client, registry, **options) as client:
        break_registry(registry)
        clock.now += 10  # past the cache TTL
        with pytest.raises(error):
            await client.discover_services("svc")


async def test_registry_down_with_nothing_cached_raises(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    registry.down = True
    async with make_client() as client:
        with pytest.raises(RegistryUnavailableError):
            await client.discover_services("svc")


async def test_malformed_answer_counts_as_unavailable(
    make_client: MakeClient, registry: FakeRegistry, clock: FakeClock
) -> None:
    async with read_once(make_client, registry) as client:
        clock.now += 10
        registry.canned.append(httpx.Response(200, json={"healthy_instances": [{"port": "x"}]}))
        stale = await client.discover_services("svc")
    assert stale.stale


async def test_own_registration_invalidates_the_cache(
    make_client: MakeClient, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    async with make_client() as client:
        assert await client.discover_services("my-service") == []
        await client.register_service(request_a)
        assert len(await client.discover_services("my-service")) == 1


async def test_get_all_services(make_client: MakeClient, registry: FakeRegistry) -> None:
    registry.add("a", "a1")
    registry.add("b", "b1")
    registry.add("b", "b2")
    async with make_client() as client:
        services = await client.get_all_services()
    assert {name: [i.instance_id for i in items] for name, items in services.items()} == {
        "a": ["a1"],
        "b": ["b1", "b2"],
    }


async def test_pick_prefers_lower_load(make_client: MakeClient, registry: FakeRegistry) -> None:
    registry.add("svc", "busy", load=0.9)
    registry.add("svc", "idle", load=0.1)
    async with make_client(rng=random.Random(3)) as client:
        picks = Counter([(await client.pick("svc")).instance_id for _ in range(400)])
    # The busy one wins only when both draws hit it (1/4), never the majority.
    assert picks["idle"] > 2 * picks["busy"] > 0


async def test_pick_without_healthy_instances_raises(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    registry.add("svc", "sick", status="unhealthy")
    async with make_client() as client:
        with pytest.raises(NoHealthyInstancesError) as caught:
            await client.pick("svc")
    assert caught.value.service_name == "svc"


async def test_http_client_argument_is_used_and_not_closed(registry: FakeRegistry) -> None:
    async with httpx.AsyncClient(transport=registry.transport()) as http:
        client = ServiceDiscoveryClient(URL, SECRET, http_client=http)
        await client.register_service(service_name="svc", instance_id="i", host="h", port=1)
        await client.aclose()
        assert not http.is_closed
    assert ("svc", "i") in registry.instances


async def test_asgi_transport_plugs_in() -> None:
    """Any httpx transport works, e.g. an ASGI app served in-process."""
    seen: list[str] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        assert scope["type"] == "http"
        seen.append(str(scope["path"]))
        body = b'{"service_name":"svc","healthy_instances":[]}'
        await send(  # type: ignore[operator]
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"x-discovery-index", b"4")],
            }
        )
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    async with ServiceDiscoveryClient(
        "http://registry",
        "s",
        transport=httpx.ASGITransport(app),  # type: ignore[arg-type]
    ) as client:
        listed = await client.discover_services("svc")
    assert listed == [] and listed.discovery_index == 4
    assert seen == ["/v1/discovery/services/svc/healthy"]
