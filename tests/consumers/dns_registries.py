"""Registries with the DNS interface on, as real processes, for the DNS consumers' tests.

One per server kind (quart on hypercorn, quart on uvicorn, trio, and a three-node
cluster when etcd is installed), each on port 0 for HTTP and DNS alike; the DNS
port is read from the `dns_listening` line each node logs. Instances are
registered over HTTP like any service would.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx
import pytest

from conformance.cluster_process import CLUSTER, ClusterProcess, stop_shared_etcd
from conformance.server_process import ServerProcess, start_server

SECRET = "dns-consumers-" + "7" * 24
KINDS = ("quart", "quart-uvicorn", "trio", CLUSTER)
ENV = {
    "SERVICE_DISCOVERY_SECRET": SECRET,
    "SERVICE_DISCOVERY_HOST": "127.0.0.1",
    "SERVICE_DISCOVERY_DNS_PORT": "0",
    "HEALTH_CHECK_INTERVAL_SECONDS": "1",
    "HEALTH_CHECK_TIMEOUT_SECONDS": "0.5",
    "HEALTH_CHECK_FAILURE_THRESHOLD": "1",
}
#: How long a change may take to show: a bound on a hang, never an expected wait.
PATIENCE = 30.0
_LISTENING = re.compile(r"event=dns_listening host=\S+ port=(\d+)")
T = TypeVar("T")


def tool_or_skip(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install {name})")
    return path


@dataclass
class Registry:
    """A running registry (one process or a cluster) and every node's DNS port."""

    kind: str
    process: ServerProcess | ClusterProcess
    dns_ports: list[int]

    @property
    def url(self) -> str:
        """Where writes go (a cluster's first node; the others follow through etcd)."""
        return self.process.url.split(",")[0]

    def register(self, service: str, instance: str, host: str, port: int, **extra: object) -> None:
        document = {"service_name": service, "instance_id": instance, "host": host, "port": port}
        self._call("POST", "/v1/discovery/register", {**document, **extra})

    def drain(self, service: str, instance: str) -> None:
        self._call("PUT", f"/v1/discovery/maintenance/{service}/{instance}", {"reason": "test"})

    def _call(self, method: str, path: str, body: dict[str, object]) -> None:
        headers = {"Authorization": f"Bearer {SECRET}"}
        response = httpx.request(
            method, self.url + path, json=body, headers=headers, timeout=10, trust_env=False
        )
        assert response.status_code < 300, response.text


@contextmanager
def registry(kind: str) -> Iterator[Registry]:
    """A ready registry of `kind` with DNS on; stopped (exit 0 checked) afterwards."""
    process = start_server(kind, ENV)
    try:
        nodes = process.nodes if isinstance(process, ClusterProcess) else [process]
        yield Registry(kind, process, [_dns_port(node) for node in nodes])
        process.stop()
    finally:
        process.cleanup()
        if kind == CLUSTER:
            stop_shared_etcd()


def _dns_port(node: ServerProcess) -> int:
    found = until(lambda: _LISTENING.search(node.stderr() + node.stdout()), "dns_listening")
    return int(found[1])


def until(probe: Callable[[], T | None], what: str = "the condition") -> T:
    """Poll `probe` until it returns something truthy (a real process's change takes a while)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {PATIENCE} s")
        time.sleep(0.05)
