"""The SDK against three real nodes on a real etcd: SIGKILL the node it uses.

`ServiceDiscoveryClient` takes every node URL (comma-separated) and moves to the next
one on a connection error; the cluster makes any node answer the same state and the
same index, so registering, heartbeating, discovering and watching go on.
"""

from __future__ import annotations

import anyio

from conformance.server_process import ServerProcess
from service_discovery import ServiceDiscoveryClient, ServiceInstanceList
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

        # Past the TTL: `b` (no heartbeats) expires; only the heartbeat loop, now on
        # another node, keeps `a`; the watch sees the expiry.
        await anyio.sleep(TTL + 1.5)
        assert client.heartbeat_running
        assert _ids(await client.discover_services("pay", healthy_only=False)) == ["a"]
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
