"""``watch_service``: blocking queries, index handling, errors."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
import trio

from service_discovery import AuthenticationError, ServiceDiscoveryClient

from .conftest import MakeClient
from .fakes import FakeClock, FakeRegistry, ids, until


async def test_yields_now_and_on_every_change(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    registry.add("svc", "a")
    seen: list[list[str]] = []
    async with make_client() as client:
        watcher = client.watch_service("svc")
        first = await watcher.__anext__()
        seen.append(ids(first))
        assert first.discovery_index == registry.index

        async with trio.open_nursery() as nursery:

            async def change() -> None:
                await trio.sleep(0.01)
                registry.add("svc", "b")

            nursery.start_soon(change)
            second = await watcher.__anext__()
            seen.append(ids(second))
        registry.set_status("svc", "a", "unhealthy")
        seen.append(ids(await watcher.__anext__()))
        await watcher.aclose()
    assert seen == [["a"], ["a", "b"], ["b"]]
    # The fake has no watch stream (404): one attempt, then blocking queries only.
    queries = [p for p in registry.paths("GET")]
    assert queries[0] == "/v1/discovery/watch"
    assert queries[1:] == ["/v1/discovery/services/svc/healthy"] * (len(queries) - 1)


async def test_sends_index_and_wait(registry: FakeRegistry, make_client: MakeClient) -> None:
    params: list[dict[str, str]] = []
    inner = registry.transport()

    async def spy(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/discovery/watch":  # the stream attempt (404 here)
            params.append(dict(request.url.params))
        return await inner.handle_async_request(request)

    registry.add("svc", "a")
    async with make_client(transport=httpx.MockTransport(spy)) as client:
        watcher = client.watch_service("svc", wait_seconds=0.05)
        await watcher.__anext__()
        registry.add("svc", "b")
        await watcher.__anext__()
        await watcher.aclose()
    assert params[0] == {"index": "0", "wait": "50ms"}
    assert params[1]["index"] == str(registry.index - 1)


async def test_timeout_without_change_yields_nothing(
    registry: FakeRegistry, make_client: MakeClient
) -> None:
    registry.add("svc", "a")
    async with make_client() as client:
        watcher = client.watch_service("svc", wait_seconds=0.01)
        await watcher.__anext__()
        with trio.move_on_after(0.1):
            await watcher.__anext__()
            pytest.fail("yielded although nothing changed")
        await watcher.aclose()
    assert len(registry.paths("GET")) >= 3  # it kept asking, each time held ~10 ms


async def test_index_going_backwards_restarts_from_zero(
    registry: FakeRegistry, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(5):
        registry.add("svc", f"i{n}")
    async with make_client() as client:
        watcher = client.watch_service("svc", wait_seconds=0.01)
        assert len(await watcher.__anext__()) == 5
        registry.restart()  # index back to 1
        registry.add("svc", "fresh")
        with caplog.at_level(logging.INFO, logger="service_discovery"):
            after = await watcher.__anext__()
        await watcher.aclose()
    assert ids(after) == ["fresh"]
    assert "went back" in caplog.text


async def test_errors_back_off_and_recover(
    registry: FakeRegistry, make_client: MakeClient, clock: FakeClock
) -> None:
    registry.add("svc", "a")
    registry.canned.extend([httpx.ConnectError("down")] * 4)
    async with make_client() as client:
        watcher = client.watch_service("svc")
        first = await watcher.__anext__()
        await watcher.aclose()
    assert ids(first) == ["a"]
    assert len(clock.sleeps) == 4
    for delay, ceiling in zip(clock.sleeps, [1, 2, 4, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling


async def test_auth_errors_are_raised(registry: FakeRegistry, make_client: MakeClient) -> None:
    async with make_client(service_discovery_secret="wrong") as client:
        with pytest.raises(AuthenticationError):
            await client.watch_service("svc").__anext__()


async def test_watch_refreshes_the_cache(registry: FakeRegistry, make_client: MakeClient) -> None:
    registry.add("svc", "a")
    async with make_client() as client:
        watcher = client.watch_service("svc")
        await watcher.__anext__()
        await watcher.aclose()
        gets = len(registry.paths("GET"))
        assert ids(await client.discover_services("svc")) == ["a"]
        assert len(registry.paths("GET")) == gets


async def test_all_instances_of_an_unknown_service(
    registry: FakeRegistry, make_client: MakeClient
) -> None:
    async with make_client() as client:
        watcher = client.watch_service("ghost", healthy_only=False, wait_seconds=1)
        assert await watcher.__anext__() == []
        registry.add("ghost", "g1", status="unknown")
        assert ids(await watcher.__anext__()) == ["g1"]
        await watcher.aclose()


async def test_registry_without_index_is_polled_gently(
    registry: FakeRegistry, make_client: MakeClient, clock: FakeClock
) -> None:
    registry.send_index = False
    registry.add("svc", "a")
    async with make_client() as client:
        watcher = client.watch_service("svc", wait_seconds=30)
        await watcher.__anext__()
        await watcher.__anext__()
        await watcher.aclose()
    assert clock.sleeps == [10]


def test_watch_on_asyncio() -> None:
    registry = FakeRegistry()
    registry.add("svc", "a")

    async def main() -> list[list[str]]:
        seen: list[list[str]] = []
        async with ServiceDiscoveryClient(
            "http://r", registry.secret, transport=registry.transport()
        ) as client:

            async def watch() -> None:
                async for listed in client.watch_service("svc", wait_seconds=1):
                    seen.append(ids(listed))
                    if len(seen) == 2:
                        return

            task = asyncio.create_task(watch())
            await until(lambda: bool(seen))
            registry.add("svc", "b")
            await asyncio.wait_for(task, 5)
        return seen

    assert asyncio.run(main()) == [["a"], ["a", "b"]]


async def test_rejects_nonpositive_wait(make_client: MakeClient) -> None:
    async with make_client() as client:
        with pytest.raises(ValueError):
            await client.watch_service("svc", wait_seconds=0).__anext__()
