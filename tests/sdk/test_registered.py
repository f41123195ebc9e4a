"""``async with client.registered(...)``: register, heartbeat, always unregister.

Each scenario runs on trio (pytest-trio) and on asyncio (``asyncio.run``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest

from service_discovery import (
    AuthenticationError,
    RegistryUnavailableError,
    ServiceDiscoveryClient,
    ServiceRegistrationRequest,
)

from .conftest import KEY_A
from .fakes import FakeRegistry, no_wait, until

Scenario = Callable[[FakeRegistry, ServiceRegistrationRequest], Coroutine[Any, Any, None]]


async def _heartbeats_then_unregisters(
    registry: FakeRegistry, req: ServiceRegistrationRequest
) -> None:
    client = registry.client(sleep=no_wait)
    async with client, client.registered(req, interval_seconds=1) as inside:
        assert inside is client
        assert KEY_A in registry.instances
        await until(lambda: registry.paths("POST").count("/v1/discovery/heartbeat") >= 3)
    assert KEY_A not in registry.instances
    assert registry.paths("DELETE") == ["/v1/discovery/unregister/my-service/instance-1"]


async def _unregisters_on_cancellation(
    registry: FakeRegistry, req: ServiceRegistrationRequest
) -> None:
    client = registry.client()
    entered = anyio.Event()

    async def service() -> None:
        async with client.registered(req):
            entered.set()
            await anyio.sleep_forever()

    async with client, anyio.create_task_group() as tasks:
        tasks.start_soon(service)
        await entered.wait()
        assert KEY_A in registry.instances
        tasks.cancel_scope.cancel()
    assert KEY_A not in registry.instances


async def _body_exception_comes_out_unwrapped(
    registry: FakeRegistry, req: ServiceRegistrationRequest
) -> None:
    client = registry.client()
    async with client:
        with pytest.raises(ZeroDivisionError):
            async with client.registered(req):
                1 / 0  # noqa: B018
    assert KEY_A not in registry.instances


async def _keyword_style(registry: FakeRegistry, req: ServiceRegistrationRequest) -> None:
    async with (
        registry.client() as client,
        client.registered(service_name="kw", instance_id="kw-1", host="h", port=1),
    ):
        assert ("kw", "kw-1") in registry.instances
    assert registry.instances == {}


async def _failed_registration_raises_before_the_body(
    registry: FakeRegistry, req: ServiceRegistrationRequest
) -> None:
    registry.secret = "other"
    client = ServiceDiscoveryClient("http://r", "wrong", transport=registry.transport())
    body_ran = False
    async with client:
        with pytest.raises(AuthenticationError):
            async with client.registered(req):
                body_ran = True
    assert not body_ran
    assert registry.paths("DELETE") == []


async def _unregister_failure_is_logged_not_raised(
    registry: FakeRegistry, req: ServiceRegistrationRequest
) -> None:
    async with (
        registry.client() as client,
        client.registered(req),
    ):
        registry.down = True
    assert KEY_A in registry.instances  # it will expire at its TTL


async def _already_gone_is_fine(registry: FakeRegistry, req: ServiceRegistrationRequest) -> None:
    async with (
        registry.client() as client,
        client.registered(req),
    ):
        registry.restart()
    assert registry.paths("DELETE") == ["/v1/discovery/unregister/my-service/instance-1"]


async def _registry_down_at_start(registry: FakeRegistry, req: ServiceRegistrationRequest) -> None:
    registry.down = True
    async with registry.client() as client:
        with pytest.raises(RegistryUnavailableError):
            async with client.registered(req):
                pass


async def _heartbeat_running_inside_the_block(
    registry: FakeRegistry, req: ServiceRegistrationRequest
) -> None:
    """It read False inside the block while heartbeats were being sent."""

    client = registry.client(sleep=no_wait)
    async with client:
        assert not client.heartbeat_running
        async with client.registered(req, interval_seconds=1):
            await until(lambda: registry.paths("POST").count("/v1/discovery/heartbeat") >= 2)
            assert client.heartbeat_running
            with pytest.raises(RuntimeError, match="already running"):
                await client.start_heartbeat_loop()
        assert not client.heartbeat_running


SCENARIOS = [
    _heartbeats_then_unregisters,
    _heartbeat_running_inside_the_block,
    _unregisters_on_cancellation,
    _body_exception_comes_out_unwrapped,
    _keyword_style,
    _failed_registration_raises_before_the_body,
    _unregister_failure_is_logged_not_raised,
    _already_gone_is_fine,
    _registry_down_at_start,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__.strip("_"))
async def test_on_trio(scenario: Scenario, request_a: ServiceRegistrationRequest) -> None:
    await scenario(FakeRegistry(), request_a)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__.strip("_"))
def test_on_asyncio(scenario: Scenario, request_a: ServiceRegistrationRequest) -> None:
    asyncio.run(scenario(FakeRegistry(), request_a))


def test_native_asyncio_task_cancel_unregisters(request_a: ServiceRegistrationRequest) -> None:
    """``task.cancel()`` (not an anyio scope) still leads to the unregister."""
    registry = FakeRegistry()

    async def main() -> None:
        async with registry.client() as client:
            entered = asyncio.Event()

            async def service() -> None:
                async with client.registered(request_a):
                    entered.set()
                    await asyncio.sleep(3600)

            task = asyncio.create_task(service())
            await entered.wait()
            assert KEY_A in registry.instances
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert KEY_A not in registry.instances

    asyncio.run(main())
