"""Failing over from a registry node that hangs: a short attempt, once.

A hung node (stopped, or frozen) accepts connections in the kernel and never
answers, so only a timeout leaves it. Two promises are pinned here, for both
clients:

* while another URL remains, an attempt is bounded by ``attempt_timeout`` /
  ``connect_timeout``, not by the whole ``timeout``; blocking queries keep
  their long read timeout;
* any answer from a node (a 404 included) makes it the node tried first, so
  the re-registration after that 404 does not go back to the hung node.

The hung node is a real socket that listens and never accepts; the live node
is the fake registry. Node "a" serves the fake registry too until the test
hangs it, as a cluster's nodes all serve one registry. No test measures time:
each asserts which node every request went to, and the timeouts it carried.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from service_discovery import (
    NotFoundError,
    RegistryUnavailableError,
    ServiceDiscoveryClient,
    ServiceDiscoveryError,
    ServiceRegistrationRequest,
    SyncServiceDiscoveryClient,
)
from service_discovery.config import ClientSettings
from service_discovery.exchange import attempt_timeout

from .conftest import KEY_A
from .fakes import SECRET, FakeClock, FakeRegistry, error, run_rounds

ATTEMPT = 0.2
CONNECT = 0.1
LIVE = "http://live.test"


@pytest.fixture
def hung_socket() -> Iterator[socket.socket]:
    """Listens on 127.0.0.1, never accepts: connections complete, nothing answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as sock:
        yield sock


@dataclass
class Nodes:
    """Routes requests to node "a" (the fake registry, or the hung socket) or to LIVE.

    ``sent`` holds (node, method, path) of every attempt, ``timeouts`` the
    httpx timeouts each attempt carried.
    """

    registry: FakeRegistry
    hung_url: str
    a_hung: bool = False
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    timeouts: list[dict[str, float | None]] = field(default_factory=list)

    @property
    def urls(self) -> str:
        return f"{self.hung_url},{LIVE}"

    def route(self, request: httpx.Request) -> bool:
        """Record the attempt; True when it must go to the hung socket."""
        node = "live" if request.url.host == "live.test" else "a"
        self.sent.append((node, request.method, request.url.path))
        self.timeouts.append(request.extensions["timeout"])
        return node == "a" and self.a_hung

    def nodes(self) -> list[str]:
        return [node for node, _, _ in self.sent]


class AsyncRouter(httpx.AsyncBaseTransport):
    def __init__(self, nodes: Nodes) -> None:
        self.nodes = nodes
        self.real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.nodes.route(request):
            return await self.real.handle_async_request(request)
        return await self.nodes.registry.handle(request)

    async def aclose(self) -> None:
        await self.real.aclose()


class SyncRouter(httpx.BaseTransport):
    def __init__(self, nodes: Nodes) -> None:
        self.nodes = nodes
        self.real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.nodes.route(request):
            return self.real.handle_request(request)
        return self.nodes.registry.answer(request)

    def close(self) -> None:
        self.real.close()


@pytest.fixture
def nodes(registry: FakeRegistry, hung_socket: socket.socket) -> Nodes:
    port = hung_socket.getsockname()[1]
    return Nodes(registry, f"http://127.0.0.1:{port}")


def _short(**options: object) -> dict[str, object]:
    return {"attempt_timeout": ATTEMPT, "connect_timeout": CONNECT, **options}


def _check_hung_attempts(nodes: Nodes) -> None:
    """Every attempt on node a (the live node remained to be tried) carried the short
    per-attempt timeouts: what bounds the time a hung node costs."""
    for (node, _, _), timeout in zip(nodes.sent, nodes.timeouts, strict=True):
        if node == "a":
            assert timeout["connect"] == CONNECT
            assert timeout["read"] == ATTEMPT


async def test_async_client_leaves_a_hung_node_once(
    nodes: Nodes, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    clock = FakeClock()
    async with ServiceDiscoveryClient(
        nodes.urls, SECRET, transport=AsyncRouter(nodes), sleep=clock.sleep, clock=clock, **_short()
    ) as client:
        await client.register_service(request_a)  # node a, still up
        nodes.a_hung = True
        del registry.instances[KEY_A]  # its TTL ran out while a hung
        # One round: the heartbeat leaves a for the live node, which answers 404;
        # the loop registers again at once, then beats again a period later.
        await run_rounds(client, clock, sleeps=3)
        assert client.url == LIVE
    assert KEY_A in registry.instances
    assert nodes.sent[1:] == [
        ("a", "POST", "/v1/discovery/heartbeat"),  # hung: left after one short attempt
        ("live", "POST", "/v1/discovery/heartbeat"),  # 404: the instance expired
        ("live", "POST", "/v1/discovery/register"),  # not back to a
        ("live", "POST", "/v1/discovery/heartbeat"),
    ]
    _check_hung_attempts(nodes)


def test_sync_client_leaves_a_hung_node_once(
    nodes: Nodes, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    with SyncServiceDiscoveryClient(
        nodes.urls, SECRET, transport=SyncRouter(nodes), **_short()
    ) as client:
        client.register_service(request_a)
        nodes.a_hung = True
        del registry.instances[KEY_A]
        with pytest.raises(NotFoundError):
            client.send_heartbeat()
        assert client.url == LIVE
        client.register_service(request_a)  # what the heartbeat thread does on a 404
        client.send_heartbeat()
        assert [i.instance_id for i in client.discover_services("my-service")] == [KEY_A[1]]
    assert nodes.nodes() == ["a", "a", "live", "live", "live", "live"]
    _check_hung_attempts(nodes)


async def test_a_read_fails_over_from_a_hung_node_to_the_live_one(nodes: Nodes) -> None:
    nodes.registry.add("game", "g1")
    nodes.a_hung = True
    async with ServiceDiscoveryClient(
        nodes.urls, SECRET, transport=AsyncRouter(nodes), cache=False, **_short()
    ) as client:
        assert [i.instance_id for i in await client.discover_services("game")] == ["g1"]
        assert [i.instance_id for i in await client.discover_services("game")] == ["g1"]
    assert nodes.nodes() == ["a", "live", "live"]
    _check_hung_attempts(nodes)


def test_when_every_node_hangs_the_last_one_gets_the_whole_timeout(
    hung_socket: socket.socket,
) -> None:
    port = hung_socket.getsockname()[1]
    urls = f"http://127.0.0.1:{port},http://localhost:{port}"
    seen: list[dict[str, float | None]] = []

    class Recording(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.extensions["timeout"])
            return super().handle_request(request)

    with (
        SyncServiceDiscoveryClient(
            urls, SECRET, transport=Recording(), cache=False, timeout=0.3, **_short()
        ) as client,
        pytest.raises(RegistryUnavailableError, match="localhost"),
    ):
        client.discover_services("game")
    assert [(t["connect"], t["read"]) for t in seen] == [(CONNECT, ATTEMPT), (0.3, 0.3)]


# -- the timeouts each request carries -------------------------------------------------


def test_attempt_timeouts() -> None:
    settings = ClientSettings.resolve(
        "http://a,http://b", "s", environ={}, timeout=9, attempt_timeout=2, connect_timeout=1
    )
    early = attempt_timeout(settings, last=False)
    assert (early.connect, early.read, early.write, early.pool) == (1, 2, 2, 9)
    final = attempt_timeout(settings, last=True)
    assert (final.connect, final.read, final.write, final.pool) == (9, 9, 9, 9)
    held = attempt_timeout(settings, last=False, read=70)
    assert (held.connect, held.read) == (1, 70)


async def test_blocking_queries_keep_their_long_read_timeout(registry: FakeRegistry) -> None:
    """A held request is no hung node: the attempt timeout must not cut it."""
    registry.add("game", "g1")
    reads: list[tuple[str, float | None]] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        reads.append((request.url.path, request.extensions["timeout"]["read"]))
        if request.url.host == "a":
            raise httpx.ConnectError("refused", request=request)
        return await registry.handle(request)

    async with ServiceDiscoveryClient(
        "http://a,http://b", SECRET, transport=httpx.MockTransport(handle), **_short()
    ) as client:
        watch = client.watch_service("game", wait_seconds=30)
        assert [i.instance_id for i in await anext(watch)] == ["g1"]
        await watch.aclose()
    blocking = [read for path, read in reads if path == "/v1/discovery/services/game/healthy"]
    assert blocking and all(read is not None and read > 30 for read in blocking), reads
    streams = [read for path, read in reads if path == "/v1/discovery/watch"]
    assert streams and all(read is not None and read >= 60 for read in streams), reads


# -- any answer moves the client to the node that gave it ----------------------------


@pytest.mark.parametrize(
    "answer",
    [
        error(404, "instance_not_found", "not registered"),
        error(401, "unauthorized", "Missing or invalid bearer token"),
        error(503, "store_unavailable", "The store is not reachable"),
    ],
    ids=["404", "401", "503-store_unavailable"],
)
def test_a_node_that_answers_anything_is_tried_first_next_time(answer: httpx.Response) -> None:
    hosts: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "a":
            raise httpx.ConnectError("refused", request=request)
        return answer

    with SyncServiceDiscoveryClient(
        "http://a,http://b", SECRET, transport=httpx.MockTransport(handle), cache=False
    ) as client:
        with pytest.raises(ServiceDiscoveryError):
            client.get_all_services()
        assert client.url == "http://b"
    assert hosts == ["a", "b"]
