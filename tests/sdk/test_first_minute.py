"""Issue 15: what went wrong in a service's first minute with the SDK, each pinned down.

Failover over instances (``pick(exclude=)``, ``call_with_failover``) and over
registry URLs, no cached empty answers, a registry restart noticed from a read,
the registry's TTL and warnings in the registration answer. All on fakes; no
server, no real waiting.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import anyio
import httpx
import pytest

from service_discovery import (
    NoHealthyInstancesError,
    RegistryUnavailableError,
    ServiceDiscoveryClient,
    ServiceInstance,
    ServiceRegistrationRequest,
)
from service_discovery.testing import InProcessRegistry

from .conftest import KEY_A, MakeClient, Registered
from .fakes import SECRET, FakeClock, FakeRegistry, error, run_rounds

# -- picking and failing over between instances ------------------------------------


async def test_pick_leaves_out_excluded_instances(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    for name in ("g1", "g2", "g3"):
        registry.add("game", name)
    async with make_client(rng=random.Random(0)) as client:
        g1 = next(i for i in await client.discover_services("game") if i.instance_id == "g1")
        picks = {(await client.pick("game", exclude=[g1, "g2"])).instance_id for _ in range(50)}
        assert picks == {"g3"}
        with pytest.raises(NoHealthyInstancesError, match="besides the 3 excluded"):
            await client.pick("game", exclude=["g1", "g2", "g3"])


async def test_failover_moves_past_an_instance_killed_during_a_registry_outage(
    make_client: MakeClient, registry: FakeRegistry, clock: FakeClock
) -> None:
    """The stale list still holds the dead instance; the call moves on to a live one."""
    registry.add("game", "dead")
    registry.add("game", "alive")
    async with make_client(rng=random.Random(1)) as client:
        await client.discover_services("game")
        registry.down = True
        clock.now += 60  # the cached answer is old: only a stale copy is left
        calls: list[str] = []

        async def call(instance: ServiceInstance) -> str:
            calls.append(instance.instance_id)
            if instance.instance_id == "dead":
                raise httpx.ConnectError("connection refused")
            return f"answer from {instance.instance_id}"

        for _ in range(20):
            assert await client.call_with_failover("game", call) == "answer from alive"
            assert (await client.discover_services("game")).stale
    assert "dead" in calls  # it was picked, and each time the next call went elsewhere
    assert calls.count("alive") == 20


async def test_failover_raises_the_last_error_when_every_instance_failed(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    for name in ("a", "b"):
        registry.add("game", name)
    tried: list[str] = []

    async def call(instance: ServiceInstance) -> None:
        tried.append(instance.instance_id)
        raise httpx.ConnectTimeout(f"{instance.instance_id} timed out")

    async with make_client() as client:
        with pytest.raises(httpx.ConnectTimeout):
            await client.call_with_failover("game", call, attempts=5)
    assert sorted(tried) == ["a", "b"]  # each once, then nothing left to try


async def test_failover_stops_at_attempts_and_passes_other_errors_through(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    for name in ("a", "b", "c"):
        registry.add("game", name)
    tried: list[str] = []

    async def refused(instance: ServiceInstance) -> None:
        tried.append(instance.instance_id)
        raise httpx.ConnectError("refused")

    async def buggy(instance: ServiceInstance) -> None:
        tried.append(instance.instance_id)
        raise KeyError("a bug, not an outage")

    async with make_client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.call_with_failover("game", refused, attempts=2)
        assert len(tried) == 2
        tried.clear()
        with pytest.raises(KeyError):
            await client.call_with_failover("game", buggy)
        assert len(tried) == 1
        with pytest.raises(NoHealthyInstancesError):
            await client.call_with_failover("nothing", buggy)


# -- several registry URLs ---------------------------------------------------------


def _two_registries(
    registry: FakeRegistry, first: Callable[[httpx.Request], httpx.Response | None]
) -> tuple[httpx.MockTransport, list[str]]:
    """``http://a`` answers with ``first`` (``None``: connection refused), ``http://b`` is real."""
    hosts: list[str] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "a":
            response = first(request)
            if response is None:
                raise httpx.ConnectError("connection refused", request=request)
            return response
        return await registry.handle(request)

    return httpx.MockTransport(handle), hosts


@pytest.mark.parametrize(
    "first",
    [
        lambda request: None,
        lambda request: error(503, "store_unavailable", "The store is not reachable"),
        lambda request: error(503, "shutting_down", "The registry is shutting down"),
    ],
    ids=["connection-error", "store_unavailable", "shutting_down"],
)
async def test_requests_fail_over_to_the_next_registry_url(
    registry: FakeRegistry,
    request_a: ServiceRegistrationRequest,
    first: Callable[[httpx.Request], httpx.Response | None],
) -> None:
    transport, hosts = _two_registries(registry, first)
    async with ServiceDiscoveryClient("http://a,http://b", SECRET, transport=transport) as client:
        assert client.urls == ("http://a", "http://b")
        await client.register_service(request_a)
        assert KEY_A in registry.instances
        assert client.url == "http://b"  # the one that answered is tried first from now on
        await client.send_heartbeat()
    assert hosts == ["a", "b", "b"]


async def test_other_errors_do_not_fail_over(
    registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    transport, hosts = _two_registries(
        registry, lambda request: error(503, "registry_full", "The registry is full")
    )
    async with ServiceDiscoveryClient("http://a,http://b", SECRET, transport=transport) as client:
        with pytest.raises(RegistryUnavailableError):
            await client.register_service(request_a)
    assert hosts == ["a"]  # every node of a cluster would say the same


async def test_every_url_down_raises_the_last_failure(
    request_a: ServiceRegistrationRequest,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    transport = httpx.MockTransport(refuse)
    async with ServiceDiscoveryClient("http://a,http://b", SECRET, transport=transport) as client:
        with pytest.raises(RegistryUnavailableError, match="http://b"):
            await client.register_service(request_a)


# -- empty answers -----------------------------------------------------------------


async def test_an_empty_answer_is_not_cached(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    """A fresh deploy: callers start first; the first instance must be found at once."""
    async with make_client() as client:
        assert await client.discover_services("game") == []
        registry.add("game", "g1")
        assert [i.instance_id for i in await client.discover_services("game")] == ["g1"]
        assert (await client.pick("game")).instance_id == "g1"


# -- a registry restart noticed from a read ---------------------------------------


async def test_an_index_going_back_on_a_read_re_registers_at_once(
    make_client: MakeClient,
    registry: FakeRegistry,
    request_a: ServiceRegistrationRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with make_client(cache=False) as client:
        await client.register_service(request_a)
        for name in ("g1", "g2", "g3"):
            registry.add("game", name)
        await client.discover_services("game")
        registry.restart()  # every index back to 1, our instance forgotten
        registry.add("game", "g1")
        with caplog.at_level(logging.INFO, logger="service_discovery"):
            await client.discover_services("game")
        # No heartbeat was sent: the read itself noticed and registered again.
        assert KEY_A in registry.instances
        assert registry.paths("POST").count("/v1/discovery/heartbeat") == 0
        assert "registry restarted" in caplog.text
        # Once: the next read sees an index that moved forward again.
        await client.discover_services("game")
        assert registry.paths("POST").count("/v1/discovery/register") == 2


async def test_no_re_registration_after_unregistering(
    make_client: MakeClient, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    async with make_client(cache=False) as client:
        await client.register_service(request_a)
        registry.add("game", "g1")
        registry.add("game", "g2")
        await client.discover_services("game")
        await client.unregister_service()
        registry.restart()
        registry.add("game", "g1")
        await client.discover_services("game")
    assert KEY_A not in registry.instances


async def test_an_index_going_back_on_a_watch_re_registers_at_once(
    make_client: MakeClient, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    async with make_client() as client:
        await client.register_service(request_a)
        registry.add("game", "g1")
        registry.add("game", "g2")
        seen: list[list[str]] = []
        async with anyio.create_task_group() as tasks:

            async def watch() -> None:
                async for instances in client.watch_service("game", wait_seconds=600):
                    seen.append([i.instance_id for i in instances])
                    if len(seen) == 2:
                        tasks.cancel_scope.cancel()

            tasks.start_soon(watch)
            while not seen:
                await anyio.lowlevel.checkpoint()
            registry.restart()
            registry.add("game", "g9")
    assert seen == [["g1", "g2"], ["g9"]]
    assert KEY_A in registry.instances
    assert registry.paths("POST").count("/v1/discovery/heartbeat") == 0


# -- the registry's TTL --------------------------------------------------------------


def _register_answer(**extra: object) -> httpx.Response:
    return httpx.Response(
        200, json={"success": True, "message": "Service registered successfully", **extra}
    )


async def test_an_interval_above_half_the_ttl_is_shortened_with_one_warning(
    registered: Registered,
    registry: FakeRegistry,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.canned.append(_register_answer(ttl_seconds=90))  # answers the registration
    with caplog.at_level(logging.WARNING, logger="service_discovery"):
        async with registered() as client:
            await run_rounds(client, clock, sleeps=4, interval=60)
    assert clock.sleeps == [30, 30, 30, 30]  # TTL / 3: two heartbeats may be lost
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "more than half the registry's TTL (90 s)" in warnings[0]


@pytest.mark.parametrize("answer", [{"ttl_seconds": 180}, {}, {"ttl_seconds": "soon"}])
async def test_an_interval_that_fits_the_ttl_or_no_ttl_is_kept(
    registered: Registered, registry: FakeRegistry, clock: FakeClock, answer: dict[str, object]
) -> None:
    registry.canned.append(_register_answer(**answer))  # answers the registration
    async with registered() as client:
        await run_rounds(client, clock, sleeps=2, interval=60)
    assert clock.sleeps == [60, 60]


# -- the registry's warning on an address it will not probe -------------------------


async def test_a_registration_the_registry_will_not_probe_is_logged_as_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = InProcessRegistry()
    async with registry.client() as client:
        with caplog.at_level(logging.WARNING, logger="service_discovery"):
            await client.register_service(
                service_name="api", instance_id="a1", host="169.254.169.254", port=80
            )
            await client.register_service(
                service_name="api", instance_id="a2", host="10.0.0.5", port=80
            )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "api:a1" in warnings[0].getMessage()
    assert "health checks refused" in warnings[0].getMessage()


async def test_warnings_listed_in_the_answer_are_logged(
    make_client: MakeClient,
    registry: FakeRegistry,
    request_a: ServiceRegistrationRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.canned.append(_register_answer(warnings=["first", "second"]))
    async with make_client() as client:
        with caplog.at_level(logging.WARNING, logger="service_discovery"):
            await client.register_service(request_a)
    assert [r.getMessage().rsplit(": ", 1)[-1] for r in caplog.records] == ["first", "second"]
