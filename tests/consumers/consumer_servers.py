"""The registries the real consumers read: a quart and a trio process and a cluster node.

One server per kind, each with both tokens and probes a day away (the tests
register ttl-checked instances, whose health is their own word), so a status
changes only when a test changes it. The cluster node is one real node on a
real etcd of its own (Debian's etcd 3.4): the same `HttpApi` over a node's view.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from conformance.common import QUIET_INTERVAL, base_env
from conformance.server_process import ServerProcess
from tests.etcd.etcd_process import etcd_missing_reason, start_cluster

#: Server kinds, in the order the tests name them.
KINDS = ("quart", "trio", "cluster-node")


def _wait_joined(node: ServerProcess, timeout: float = 30.0) -> None:
    """The node answers /health and follows the store."""
    node.wait_ready(timeout)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while client.get(f"{node.url}/health").json()["store"]["state"] != "ok":
            if time.monotonic() > deadline:
                raise AssertionError(f"node never joined\n{node.describe()}")
            time.sleep(0.05)  # a real process connecting to a real etcd


@contextmanager
def consumer_servers() -> Iterator[dict[str, ServerProcess]]:
    """Every kind's server, ready; each must exit 0 on SIGTERM afterwards."""
    env = base_env(HEALTH_CHECK_INTERVAL_SECONDS=QUIET_INTERVAL)
    missing = etcd_missing_reason()
    if missing is not None:
        pytest.skip(f"the cluster node needs etcd: {missing}")
    with ExitStack() as stack:
        etcd = start_cluster(1)
        stack.callback(etcd.stop)
        servers: dict[str, ServerProcess] = {}
        for kind in ("quart", "trio"):
            server = ServerProcess(kind, env)
            stack.callback(server.cleanup)
            server.wait_ready()
            servers[kind] = server
        node_env = {
            **env,
            "SERVICE_DISCOVERY_ETCD_ENDPOINTS": etcd.url,
            "SERVICE_DISCOVERY_ETCD_PREFIX": f"/consumers-{secrets.token_hex(4)}/",
        }
        node = ServerProcess("trio", node_env, name="cluster node (trio)")
        stack.callback(node.cleanup)
        _wait_joined(node)
        servers["cluster-node"] = node
        yield servers
        for server in servers.values():
            server.stop()
