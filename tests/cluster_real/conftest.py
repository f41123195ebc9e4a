"""Real registry nodes (both frontends, as processes) on a real etcd.

Nodes are started with `conformance.server_process`, which scrubs every registry
setting from the environment; the cluster settings go in as overrides. etcd and every
node are always stopped, whatever the test did to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import pytest

from conformance.client import Api, api_for, instance_body, poll_until
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


def instance_ids(api: Api, service: str) -> set[str] | None:
    """The ids of `service`'s instances on a node (empty when unknown; None: an error)."""
    answer = api.service(service)
    if answer.status_code == 404:
        return set()
    if answer.status_code != 200:
        return None
    return {item["instance_id"] for item in answer.json()["instances"]}


def store_health(url: str) -> dict[str, Any]:
    """The `store` part of a node's /health (state, revision, listings, error)."""
    answer = httpx.get(f"{url}/health", timeout=5)
    assert answer.status_code == 200, answer.text
    store: dict[str, Any] = answer.json()["store"]
    return store


def assert_refused_node_says_why(frontend: str, env: Mapping[str, str], *expected: str) -> None:
    """A node the store refuses (TLS, auth) keeps running, stays "connecting", answers a
    write 503, and says why: `expected` on /health (`store.error`) and in its log."""
    node = ServerProcess(frontend, env)
    try:
        node.wait_ready()
        store = poll_until(
            lambda: found if (found := store_health(node.url))["error"] else None,
            30.0,
            "the store's refusal on /health",
        )
        assert store["state"] == "connecting"
        for text in expected:
            assert text in store["error"], store
        with api_for(node.url, SECRET) as api:
            assert api.register(instance_body("api", "a1")).status_code == 503
        node.check_alive()
        assert store_health(node.url)["state"] == "connecting"
    finally:
        node.shutdown(timeout=10)
        log = node.stderr()
        node.cleanup()
    assert "event=store_problem" in log, log[-2000:]
    for text in expected:
        assert text in log, log[-2000:]
