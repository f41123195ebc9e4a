"""The SDK against real nodes on a real etcd: SIGKILL, or SIGSTOP, the node it uses.

`ServiceDiscoveryClient` takes every node URL (comma-separated) and moves to the next
one on a connection error, or after one short attempt on a node that hangs; the
cluster makes any node answer the same state and the same index, so registering,
heartbeating, discovering and watching go on.
"""

from __future__ import annotations

import os
import signal
import time

import anyio
import httpx
import pytest

from conformance.server_process import ServerProcess
from service_discovery import (
    NotFoundError,
    ServiceDiscoveryClient,
    ServiceInstanceList,
    SyncServiceDiscoveryClient,
)
from tests.etcd.etcd_process import EtcdCluster

from .conftest import SECRET, StartNode, node_env

#: Short, so that an instance whose heartbeats stopped would be gone within the test.
TTL = 3.0


def _ids(instances: ServiceInstanceList) -> list[str]:
    return sorted(i.instance_id for i in instances)


async def _scenario(nodes: list[ServerProcess]) -> None:
    urls = ",".join(node.url for node in nodes)
    fields = {"service_name": "pay", "host": "127.0.0.1", "port": 9}
    async with (
        ServiceDiscoveryClient(urls, SECRET, cache=False) as client,
        ServiceDiscoveryClient(urls, SECRET, cache=False) as watching,
        ServiceDiscoveryClient(urls, SECRET, cache=False) as other,  # registers `b` once
        client.registered(instance_id="a", interval_seconds=TTL / 6, **fields),
    ):
        watch = watching.watch_service("pay", healthy_only=False, wait_seconds=2)
        with anyio.fail_after(10):
            first = await anext(watch)
        assert _ids(first) == ["a"]

        nodes[0].proc.kill()  # the first URL: the node every client was using
        nodes[0].proc.wait(timeout=10)

        with anyio.fail_after(15):
            assert await other.register_service(instance_id="b", **fields)
            seen = [first]
            while _ids(seen[-1]) != ["a", "b"]:
                seen.append(await anext(watch))
        indexes = [s.discovery_index or 0 for s in seen]
        assert indexes == sorted(indexes), indexes  # resumed with its index
        assert indexes[-1] > indexes[0]

        # `b` (no heartbeats) expires once the guardian heard nothing of it for a TTL (a
        # guardian that took over from the killed node gives it a full TTL from then, so
        # no fixed wait is right); all along, the heartbeat loop, now on another node,
        # keeps `a`; the watch sees the expiry.
        with anyio.fail_after(30):
            while (shown := _ids(await client.discover_services("pay", healthy_only=False))) != [
                "a"
            ]:
                assert "a" in shown
                await anyio.sleep(0.2)
        assert client.heartbeat_running
        with anyio.fail_after(10):
            while _ids(seen[-1]) != ["a"]:
                seen.append(await anext(watch))
        await watch.aclose()


def test_sdk_keeps_working_when_its_node_is_killed(
    etcd: EtcdCluster, start_node: StartNode
) -> None:
    env = node_env(etcd.url, SERVICE_REGISTRATION_TTL_SECONDS=str(TTL))
    nodes = [start_node(kind, env) for kind in ("quart", "trio", "quart")]
    anyio.run(_scenario, nodes)


# -- a node that hangs (SIGSTOP) instead of dying ----------------------------------------

#: Short, so the hung node costs little; a real node on loopback answers far sooner.
ATTEMPT = 0.5


class Recorder:
    """The node (index in the URL list) each request went to, in order."""

    def __init__(self, nodes: list[ServerProcess]) -> None:
        self.ports = [httpx.URL(node.url).port for node in nodes]
        self.sent: list[int] = []

    def note(self, request: httpx.Request) -> None:
        self.sent.append(self.ports.index(request.url.port))


class AsyncRecording(httpx.AsyncHTTPTransport):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.recorder.note(request)
        return await super().handle_async_request(request)


class SyncRecording(httpx.HTTPTransport):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.recorder.note(request)
        return super().handle_request(request)


def _expire(url: str, name: str) -> None:
    """The instance is gone on the live node, as when its TTL ran out during the hang.

    The registration was answered once the hung node's view held it; the live node
    follows the store too, but may be milliseconds behind, and would answer the
    unregistration 404 until it has seen the instance: wait for that first."""
    deadline = time.monotonic() + 10
    with SyncServiceDiscoveryClient(url, SECRET, cache=False) as other:
        while "a" not in _ids(other.discover_services(name, False)):  # unknown: []
            assert time.monotonic() < deadline, f"the live node never showed {name}/a"
            time.sleep(0.05)
        other.unregister_service(name, "a")


async def _async_hung(nodes: list[ServerProcess], recorder: Recorder) -> None:
    urls = ",".join(node.url for node in nodes)
    fields = {"service_name": "pay-async", "instance_id": "a", "host": "127.0.0.1", "port": 9}
    async with ServiceDiscoveryClient(
        urls, SECRET, cache=False, attempt_timeout=ATTEMPT, transport=AsyncRecording(recorder)
    ) as client:
        await client.register_service(**fields)
        os.kill(nodes[0].pid, signal.SIGSTOP)
        try:
            _expire(nodes[1].url, "pay-async")
            with pytest.raises(NotFoundError):
                await client.send_heartbeat()  # the hung node, then 404 from the live one
            await client.register_service(**fields)  # what the heartbeat loop does on a 404
            await client.send_heartbeat()
            assert _ids(await client.discover_services("pay-async", False)) == ["a"]
        finally:
            os.kill(nodes[0].pid, signal.SIGCONT)


def _sync_hung(nodes: list[ServerProcess], recorder: Recorder) -> None:
    urls = ",".join(node.url for node in nodes)
    fields = {"service_name": "pay-sync", "instance_id": "a", "host": "127.0.0.1", "port": 9}
    with SyncServiceDiscoveryClient(
        urls, SECRET, cache=False, attempt_timeout=ATTEMPT, transport=SyncRecording(recorder)
    ) as client:
        client.register_service(**fields)
        os.kill(nodes[0].pid, signal.SIGSTOP)
        try:
            _expire(nodes[1].url, "pay-sync")
            with pytest.raises(NotFoundError):
                client.send_heartbeat()
            client.register_service(**fields)
            client.send_heartbeat()
            assert _ids(client.discover_services("pay-sync", False)) == ["a"]
        finally:
            os.kill(nodes[0].pid, signal.SIGCONT)


def test_sdk_leaves_a_hung_node_once_and_does_not_go_back(
    etcd: EtcdCluster, start_node: StartNode
) -> None:
    """SIGSTOP the node in use: the heartbeat leaves it after one short attempt; the
    live node's 404 makes the live node the one tried first, so the re-registration
    and every later call go there, not back to the hung node (issues 23.7, 27.4)."""
    nodes = [start_node(kind, node_env(etcd.url)) for kind in ("quart", "trio")]
    for run in (lambda r: anyio.run(_async_hung, nodes, r), lambda r: _sync_hung(nodes, r)):
        recorder = Recorder(nodes)
        run(recorder)
        # register on 0; heartbeat: 0 (hung, left after ATTEMPT), 1 answers 404;
        # then the re-registration, a heartbeat and a read, all on 1.
        assert recorder.sent == [0, 0, 1, 1, 1, 1], recorder.sent
