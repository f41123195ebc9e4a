"""Shared fixtures of the SDK tests: a fake registry, a fake clock, a client on both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from service_discovery import ServiceDiscoveryClient, ServiceRegistrationRequest

from .fakes import SECRET, FakeClock, FakeRegistry

URL = "http://registry.test"
Registered = Callable[..., AbstractAsyncContextManager[ServiceDiscoveryClient]]
MakeClient = Callable[..., ServiceDiscoveryClient]

#: The (service, instance) key `request_a` registers under.
KEY_A = ("my-service", "instance-1")


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(registry: FakeRegistry, clock: FakeClock) -> MakeClient:
    """A client wired to the fake registry and the fake clock (override any argument)."""

    def make(**overrides: Any) -> ServiceDiscoveryClient:
        options: dict[str, Any] = {
            "service_discovery_url": URL,
            "service_discovery_secret": SECRET,
            "transport": registry.transport(),
            "sleep": clock.sleep,
            "clock": clock,
        }
        options.update(overrides)
        return ServiceDiscoveryClient(**options)

    return make


@pytest.fixture
def registered(make_client: MakeClient, request_a: ServiceRegistrationRequest) -> Registered:
    """`make_client(**overrides)`, opened and with `request_a` registered: where most
    heartbeat tests start."""

    @asynccontextmanager
    async def open_registered(**overrides: Any) -> AsyncIterator[ServiceDiscoveryClient]:
        async with make_client(**overrides) as client:
            await client.register_service(request_a)
            yield client

    return open_registered


@pytest.fixture
def request_a() -> ServiceRegistrationRequest:
    return ServiceRegistrationRequest(
        service_name=KEY_A[0],
        instance_id=KEY_A[1],
        host="localhost",
        port=8080,
        health_endpoint="/health",
        metadata={"version": "1.0.0"},
    )
