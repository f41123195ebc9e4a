"""Real registry nodes (both frontends, as processes) on a real etcd.

Nodes are started with `conformance.server_process`, which scrubs every registry
setting from the environment; the cluster settings go in as overrides. etcd and every
node are always stopped, whatever the test did to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import httpx
import pytest

from conformance.client import poll_until
from conformance.server_process import ServerProcess
from tests.etcd.etcd_process import EtcdCluster, etcd_missing_reason, running_cluster

SECRET = "cluster-test-secret"


def node_env(endpoints: str, **extra: str) -> dict[str, str]:
    """A node's settings: the etcd endpoints, fast probes, one shared secret."""
    env = {
        "SERVICE_DISCOVERY_ETCD_ENDPOINTS": endpoints,
        "SERVICE_DISCOVERY_SECRET": SECRET,
        "HEALTH_CHECK_INTERVAL_SECONDS": "0.5",
        "HEALTH_CHECK_TIMEOUT_SECONDS": "0.4",
        "HEALTH_CHECK_SUCCESS_THRESHOLD": "1",
        "HEALTH_CHECK_FAILURE_THRESHOLD": "1",
        "LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


@pytest.fixture
def etcd() -> Iterator[EtcdCluster]:
    if etcd_missing_reason() is not None:
        pytest.skip(str(etcd_missing_reason()))
    with running_cluster(1) as cluster:
        yield cluster


StartNode = Callable[..., ServerProcess]


@pytest.fixture
def start_node() -> Iterator[StartNode]:
    """`start_node(frontend, env)`: a ready node, killed at the end of the test if alive."""
    started: list[ServerProcess] = []

    def start(frontend: str, env: Mapping[str, str]) -> ServerProcess:
        node = ServerProcess(frontend, env)
        started.append(node)
        node.wait_ready()
        # /health is 200 while the node still connects (it serves what it has):
        # wait until it follows the store.
        with httpx.Client(timeout=5) as http:
            poll_until(
                lambda: http.get(f"{node.url}/health").json()["store"]["state"] == "ok" or None,
                30.0,
                f"{frontend} node joined the cluster",
            )
        return node

    yield start
    for node in started:
        try:
            node.shutdown(timeout=10)
        finally:
            node.cleanup()
