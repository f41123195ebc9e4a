"""``watch_services`` against a registry without the watch stream: blocking queries instead.

The fake registry answers `GET /v1/discovery/watch` with 404, as the
registries before the stream did. The client then holds one blocking query
on the global index and reads each named service after any change.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import trio

from service_discovery import ServiceDiscoveryClient

from .fakes import FakeClock, FakeRegistry, ids

MakeClient = Callable[..., ServiceDiscoveryClient]


async def test_each_service_now_then_each_change_of_a_named_one(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    registry.add("a", "a1")
    registry.add("b", "b1")
    async with make_client() as client:
        watcher = client.watch_services(["a", "b"])
        first = {}
        for _ in range(2):
            name, instances = await watcher.__anext__()
            first[name] = ids(instances)
        assert first == {"a": ["a1"], "b": ["b1"]}

        async with trio.open_nursery() as nursery:

            async def change() -> None:
                await trio.sleep(0.01)
                registry.add("other", "o1")  # not watched: wakes the query, yields nothing
                await trio.sleep(0.01)
                registry.add("b", "b2")

            nursery.start_soon(change)
            name, instances = await watcher.__anext__()
        assert (name, ids(instances)) == ("b", ["b1", "b2"])
        assert instances.discovery_index == registry.service_index["b"]
        registry.set_status("a", "a1", "unhealthy")
        name, instances = await watcher.__anext__()
        assert (name, ids(instances)) == ("a", [])
        await watcher.aclose()
    gets = registry.paths("GET")
    assert gets[0] == "/v1/discovery/watch"  # tried once, 404
    assert "/v1/discovery/services" in gets  # the blocking query on the global index
    assert "/v1/discovery/watch" not in gets[1:]


async def test_the_blocking_query_carries_the_global_index(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    sent: list[dict[str, str]] = []
    inner = registry.transport()

    async def spy(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/discovery/services":
            sent.append(dict(request.url.params))
        return await inner.handle_async_request(request)

    registry.add("a", "a1")
    async with make_client(transport=httpx.MockTransport(spy)) as client:
        watcher = client.watch_services(["a"])
        await watcher.__anext__()
        before = registry.index
        registry.add("a", "a2")
        await watcher.__anext__()
        await watcher.aclose()
    assert sent[0] == {"index": "0", "wait": "60000ms"}
    assert sent[1]["index"] == str(before)


async def test_a_failed_round_is_retried_without_losing_the_change(
    make_client: MakeClient, registry: FakeRegistry, clock: FakeClock
) -> None:
    registry.add("a", "a1")
    async with make_client() as client:
        watcher = client.watch_services(["a"])
        await watcher.__anext__()
        registry.canned.extend([httpx.ConnectError("down")] * 2)
        registry.add("a", "a2")
        name, instances = await watcher.__anext__()
        await watcher.aclose()
    assert (name, ids(instances)) == ("a", ["a1", "a2"])
    assert len(clock.sleeps) == 2  # backed off twice, then the same round again


async def test_a_restarted_registry_is_followed_from_zero(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    for n in range(4):
        registry.add("a", f"a{n}")
    async with make_client() as client:
        watcher = client.watch_services(["a"])
        assert len((await watcher.__anext__())[1]) == 4
        registry.restart()  # every index back to 1
        registry.add("a", "fresh")
        name, instances = await watcher.__anext__()
        await watcher.aclose()
    assert (name, ids(instances)) == ("a", ["fresh"])
