"""The `cluster` server kind: three registry nodes (quart, trio, quart) on one real etcd.

`start_cluster` returns a `ClusterProcess` that stands in for a `ServerProcess`, so every
fixture of the suite (`server`, `probe_server`, `launch`, the modules' own servers) runs
a cluster when the kind is `cluster`. Its `url` is the three node URLs joined by commas,
the form the SDK takes; `conformance.client.make_client` spreads requests over them.
`port` is the first node's (a watch stream is one connection to one node).

All clusters of a run share one etcd (Debian's etcd 3.4, `tests/etcd/etcd_process.py`),
each under its own key prefix, so a cluster costs three node starts, not an etcd start
too; `stop_shared_etcd` (called at the end of the session) stops it.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

import httpx
import pytest

from conformance.client import tls_context
from conformance.server_process import READY_TIMEOUT_SECONDS, STOP_TIMEOUT_SECONDS, ServerProcess
from tests.etcd.etcd_process import EtcdCluster, etcd_missing_reason, start_cluster

#: The server kind's name in `conformance.common.FRONTENDS`.
CLUSTER = "cluster"

#: The three nodes' frontends: both frontends answer in one cluster.
NODE_KINDS = ("quart", "trio", "quart")

_etcd: list[EtcdCluster] = []


def shared_etcd() -> EtcdCluster:
    """The run's one etcd, started on first use (without an etcd binary, the
    cluster kind's tests are skipped)."""
    if not _etcd:
        reason = etcd_missing_reason()
        if reason is not None:
            pytest.skip(f"the cluster kind needs etcd: {reason}")
        _etcd.append(start_cluster(1))
    return _etcd[0]


def stop_shared_etcd() -> None:
    while _etcd:
        _etcd.pop().stop()


class _Processes:
    """`proc` of a cluster: `poll()` is None while every node runs, else the first exit code."""

    def __init__(self, nodes: Sequence[ServerProcess]) -> None:
        self._nodes = nodes

    def poll(self) -> int | None:
        for node in self._nodes:
            code = node.proc.poll()
            if code is not None:
                return code
        return None


class ClusterProcess:
    """Three nodes of one cluster, with the parts of `ServerProcess` the suite uses."""

    frontend = CLUSTER

    def __init__(self, env: Mapping[str, str], extra_args: Sequence[str] = ()) -> None:
        self.env = dict(env)
        node_env = {
            **env,
            "SERVICE_DISCOVERY_ETCD_ENDPOINTS": shared_etcd().url,
            "SERVICE_DISCOVERY_ETCD_PREFIX": f"/conformance-{secrets.token_hex(6)}/",
        }
        self.nodes: list[ServerProcess] = []
        try:
            for number, kind in enumerate(NODE_KINDS, 1):
                name = f"cluster node {number} ({kind})"
                self.nodes.append(ServerProcess(kind, node_env, extra_args, name=name))
        except BaseException:
            self.cleanup()
            raise
        self.url = ",".join(node.url for node in self.nodes)
        self.urls = [node.url for node in self.nodes]
        self.port = self.nodes[0].port
        self.proc = _Processes(self.nodes)

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Every node answers /health and follows the store (`"state": "ok"`)."""
        for node in self.nodes:
            node.wait_ready(timeout)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, verify=tls_context(), trust_env=False) as client:
            for node in self.nodes:
                while client.get(f"{node.url}/health").json()["store"]["state"] != "ok":
                    if time.monotonic() > deadline:
                        raise AssertionError(f"node never joined the cluster\n{self.describe()}")
                    time.sleep(0.05)  # a real process connecting to a real etcd

    def stderr(self) -> str:
        return "".join(node.stderr() for node in self.nodes)

    def stdout(self) -> str:
        return "".join(node.stdout() for node in self.nodes)

    def describe(self) -> str:
        return "\n".join(node.describe() for node in self.nodes)

    def check_alive(self) -> None:
        for node in self.nodes:
            node.check_alive()

    def terminate(self) -> None:
        for node in self.nodes:
            node.terminate()

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def wait_exit(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        codes = [node.wait_exit(max(0.0, deadline - time.monotonic())) for node in self.nodes]
        return None if None in codes else next((c for c in codes if c), 0)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM to every node at once; each must exit 0 (checked for all of them)."""
        self.terminate()
        failures: list[str] = []
        for node in self.nodes:
            code = node.wait_exit(timeout)
            if code is None:
                node.kill()
                failures.append(f"no exit within {timeout} s of SIGTERM\n{node.describe()}")
            elif code != 0:
                failures.append(f"exit code {code} after SIGTERM\n{node.describe()}")
        if failures:
            raise AssertionError("\n".join(failures))

    def shutdown(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        for node in self.nodes:
            node.shutdown(timeout)

    def cleanup(self) -> None:
        for node in self.nodes:
            try:
                node.cleanup()
            except (OSError, subprocess.SubprocessError) as error:
                print(f"cleanup of {node.name} failed: {error!r}", file=sys.stderr)


def start_cluster_server(
    env: Mapping[str, str], extra_args: Sequence[str] = (), wait_ready: bool = True
) -> ClusterProcess:
    """Spawn three nodes and (by default) wait until each follows the store."""
    cluster = ClusterProcess(env, extra_args)
    if wait_ready:
        try:
            cluster.wait_ready()
        except BaseException:
            cluster.cleanup()
            raise
    return cluster
