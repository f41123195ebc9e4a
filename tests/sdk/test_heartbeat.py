"""The heartbeat loop driven by a fake clock: no real waiting anywhere in this file."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence

import httpx
import pytest
import trio

from service_discovery import Backoff, ServiceDiscoveryClient, ServiceRegistrationRequest

from .conftest import KEY_A, MakeClient, Registered
from .fakes import FakeClock, FakeRegistry, error, run_rounds, until

HEARTBEAT = "/v1/discovery/heartbeat"
REGISTER = "/v1/discovery/register"


async def test_heartbeats_every_interval(
    registered: Registered,
    registry: FakeRegistry,
    clock: FakeClock,
) -> None:
    async with registered() as client:
        await run_rounds(client, clock, sleeps=6, interval=60)
    assert clock.sleeps == [60] * 6
    assert registry.paths("POST") == [REGISTER] + [HEARTBEAT] * 5


async def test_default_interval_comes_from_the_client(
    registered: Registered, clock: FakeClock
) -> None:
    async with registered(heartbeat_interval=7) as client:
        await run_rounds(client, clock, sleeps=2)
    assert clock.sleeps == [7, 7]


async def _three_rounds_after_a_restart(
    registered: Registered,
    registry: FakeRegistry,
    clock: FakeClock,
    *,
    interval: float,
    canned: Sequence[httpx.Response | Exception] = (),
) -> None:
    """Three rounds of the loop once the registry has forgotten the instance (as a restart
    does), `canned` answering the first requests after that."""
    async with registered() as client:
        registry.restart()
        registry.canned.extend(canned)
        await run_rounds(client, clock, sleeps=3, interval=interval)


async def test_404_re_registers_at_once(
    registered: Registered, registry: FakeRegistry, clock: FakeClock
) -> None:
    await _three_rounds_after_a_restart(registered, registry, clock, interval=10)
    # One heartbeat got 404, the registration followed with no sleep in between,
    # and the next interval's heartbeat worked.
    assert clock.sleeps == [10, 10, 10]
    assert registry.paths("POST") == [REGISTER, HEARTBEAT, REGISTER, HEARTBEAT]
    assert KEY_A in registry.instances
    assert registry.bodies[2]["metadata"] == {"version": "1.0.0"}


async def test_network_errors_back_off_exponentially_with_jitter(
    registered: Registered,
    registry: FakeRegistry,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with registered(backoff=Backoff(initial=1, maximum=30), rng=random.Random(5)) as client:
        registry.down = True
        with caplog.at_level(logging.DEBUG, logger="service_discovery"):
            await run_rounds(client, clock, sleeps=12, interval=60)
    first, *retries = clock.sleeps
    assert first == 60
    ceilings = [1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30]
    assert len(retries) == len(ceilings)
    for delay, ceiling in zip(retries, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(retries)) == len(retries)  # jittered
    # Eleven failures in about three minutes: one warning at the start, one
    # "still failing" a minute or more later; the rest at debug.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert 2 <= len(warnings) <= 4
    assert "still failing" in warnings[-1].getMessage()


async def test_backoff_is_capped_by_the_interval(
    registered: Registered,
    registry: FakeRegistry,
    clock: FakeClock,
) -> None:
    async with registered(backoff=Backoff(initial=1, maximum=30)) as client:
        registry.down = True
        await run_rounds(client, clock, sleeps=10, interval=5)
    assert max(clock.sleeps[1:]) <= 5
    assert min(clock.sleeps[1:]) >= 0.5


async def test_recovery_resets_the_backoff(
    registered: Registered,
    registry: FakeRegistry,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with registered() as client:
        registry.canned.extend(
            [
                httpx.ConnectError("refused"),
                httpx.ReadTimeout("slow"),
                error(503, "shutting_down", "bye"),
            ]
        )
        with caplog.at_level(logging.INFO, logger="service_discovery"):
            await run_rounds(client, clock, sleeps=6, interval=60)
    assert clock.sleeps[0] == 60
    assert all(d < 60 for d in clock.sleeps[1:4])
    assert clock.sleeps[4:] == [60, 60]
    assert "recovered after 3 failed attempts" in caplog.text


async def test_failed_re_registration_is_retried_as_registration(
    registered: Registered, registry: FakeRegistry, clock: FakeClock
) -> None:
    canned = [error(404, "instance_not_found", "gone"), httpx.ConnectError("x")]
    await _three_rounds_after_a_restart(registered, registry, clock, interval=60, canned=canned)
    # heartbeat -> 404, register -> network error, back off, register again.
    assert registry.paths("POST") == [REGISTER, HEARTBEAT, REGISTER, REGISTER]
    assert clock.sleeps[1] < 60
    assert KEY_A in registry.instances


async def test_no_exception_escapes_the_loop(
    registry: FakeRegistry, clock: FakeClock, request_a: ServiceRegistrationRequest
) -> None:
    """Even a transport that raises something unexpected only gets logged."""
    calls = 0

    def broken(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if request.url.path == REGISTER:
            return httpx.Response(200, json={"success": True, "message": "ok"})
        raise KeyError("bug in a transport")

    async with ServiceDiscoveryClient(
        "http://r", "s", transport=httpx.MockTransport(broken), sleep=clock.sleep, clock=clock
    ) as client:
        await client.register_service(request_a)
        await run_rounds(client, clock, sleeps=5, interval=60)
    assert calls == 5


async def test_auth_failure_keeps_the_loop_alive(
    registered: Registered,
    registry: FakeRegistry,
    clock: FakeClock,
) -> None:
    async with registered() as client:
        registry.secret = "rotated"
        await run_rounds(client, clock, sleeps=4, interval=60)
    assert registry.paths("POST") == [REGISTER] + [HEARTBEAT] * 3
    assert all(d < 60 for d in clock.sleeps[1:])


def test_start_and_stop_in_the_background_on_asyncio(
    request_a: ServiceRegistrationRequest,
) -> None:
    registry = FakeRegistry()
    sleeps: list[float] = []

    async def fast_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    async def main() -> None:
        async with registry.client(sleep=fast_sleep) as client:
            await client.register_service(request_a)
            await client.start_heartbeat_loop(interval_seconds=30)
            assert client.heartbeat_running
            with pytest.raises(RuntimeError, match="already running"):
                await client.start_heartbeat_loop()
            await until(lambda: len(registry.paths("POST")) >= 4)
            await client.stop_heartbeat_loop()
            assert not client.heartbeat_running
            count = len(registry.log)
            for _ in range(20):
                await asyncio.sleep(0)
            assert len(registry.log) == count
            await client.stop_heartbeat_loop()  # idempotent

    asyncio.run(main())
    assert set(sleeps) == {30}


def test_stop_right_after_start_on_asyncio(request_a: ServiceRegistrationRequest) -> None:
    registry = FakeRegistry()

    async def main() -> None:
        async with registry.client() as client:
            await client.register_service(request_a)
            await client.start_heartbeat_loop(interval_seconds=30)
            await client.stop_heartbeat_loop()
            assert not client.heartbeat_running

    asyncio.run(main())


def test_aclose_stops_the_heartbeat_on_asyncio(request_a: ServiceRegistrationRequest) -> None:
    registry = FakeRegistry()

    async def main() -> None:
        client = registry.client()
        await client.register_service(request_a)
        await client.start_heartbeat_loop(interval_seconds=30)
        await client.aclose()
        assert not client.heartbeat_running
        assert all(t.done() for t in asyncio.all_tasks() if t is not asyncio.current_task())

    asyncio.run(main())


async def test_start_on_trio_without_task_group_explains(
    make_client: MakeClient, request_a: ServiceRegistrationRequest
) -> None:
    async with make_client() as client:
        await client.register_service(request_a)
        with pytest.raises(RuntimeError, match="task_group="):
            await client.start_heartbeat_loop()


async def test_start_on_trio_in_a_nursery(
    make_client: MakeClient,
    registry: FakeRegistry,
    clock: FakeClock,
    request_a: ServiceRegistrationRequest,
) -> None:
    async with make_client() as client, trio.open_nursery() as nursery:
        await client.register_service(request_a)
        await client.start_heartbeat_loop(interval_seconds=5, task_group=nursery)
        assert client.heartbeat_running
        await until(lambda: len(registry.paths("POST")) >= 3)
        await client.stop_heartbeat_loop()
        assert not client.heartbeat_running
    assert clock.sleeps[:2] == [5, 5]


async def test_run_heartbeat_loop_rejects_bad_interval(
    make_client: MakeClient, request_a: ServiceRegistrationRequest
) -> None:
    async with make_client() as client:
        await client.register_service(request_a)
        with pytest.raises(ValueError):
            await client.run_heartbeat_loop(0)


async def test_registry_down_at_start_then_the_loop_registers(
    make_client: MakeClient,
    registry: FakeRegistry,
    clock: FakeClock,
    request_a: ServiceRegistrationRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Service at t=0, registry at t=15: registered within the backoff, not at t=61.

    The loop registers first, retrying with capped, jittered backoff, and only
    then sleeps its interval; the log calls it a first registration.
    """
    from service_discovery import RegistryUnavailableError

    registered_at: list[float] = []
    handle = registry.handle

    async def up_at_15(request: httpx.Request) -> httpx.Response:
        registry.down = clock.now < 15
        response = await handle(request)
        if request.url.path == REGISTER:
            registered_at.append(clock.now)
        return response

    transport = httpx.MockTransport(up_at_15)
    async with make_client(transport=transport, rng=random.Random(4)) as client:
        with pytest.raises(RegistryUnavailableError):
            await client.register_service(request_a)
        assert client.registration == request_a
        with caplog.at_level(logging.INFO, logger="service_discovery"):
            await run_rounds(client, clock, sleeps=8, interval=60)
    assert registered_at == [pytest.approx(registered_at[0])]  # once
    assert 15 <= registered_at[0] < 15 + 16  # at most one backoff step after it came up
    retries = clock.sleeps[: clock.sleeps.index(60)]
    ceilings = [1, 2, 4, 8, 16, 30, 30][: len(retries)]
    assert all(c / 2 <= d <= c for d, c in zip(retries, ceilings, strict=True))
    assert clock.sleeps[len(retries) :] == [60] * (8 - len(retries))  # then heartbeats
    # The failed first try, one at once from the loop, one after each backoff
    # sleep (the last of them worked), then a heartbeat after each interval.
    expected = [REGISTER] * (len(retries) + 2) + [HEARTBEAT] * (7 - len(retries))
    assert registry.paths("POST") == expected
    assert "first registration" in caplog.text
    assert "again" not in caplog.text


async def test_rejected_registration_is_not_remembered(
    make_client: MakeClient, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    from service_discovery import AuthenticationError

    async with make_client(service_discovery_secret="wrong") as client:
        with pytest.raises(AuthenticationError):
            await client.register_service(request_a)
        assert client.registration is None
