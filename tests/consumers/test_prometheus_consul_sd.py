"""A real Prometheus discovers the registry through `consul_sd_configs`.

One Prometheus (Debian's package, as the conformance suite uses it) with one
`consul_sd` job per server kind (quart, trio, a cluster node), refreshing
every second and sending the read-only token as Consul's `token` (the
X-Consul-Token header). Its targets API must list each instance with
`__meta_consul_service`, `__meta_consul_tags` and `__meta_consul_health`, and
follow a registration, a drain and an unregistration, with no failed SD call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from conformance.client import api_for, instance_body
from conformance.common import READ_TOKEN, SECRET
from conformance.fake_instances import refused_port
from conformance.prometheus_server import PrometheusServer, find_or_install_prometheus
from conformance.server_process import ServerProcess
from tests.consumers.consumer_servers import KINDS, consumer_servers

SERVICE = "consul-sd-app"
#: Why the test may skip: Debian 12's package (2.42.0+ds) leaves consul_sd out of its
#: build, as it does kubernetes_sd and nomad_sd; a Prometheus from upstream has it.
WITHOUT = "Debian's prometheus package drops the SDs whose Go libraries Debian does not ship"
#: Discovery is a blocking query woken by the change, then one refresh (1 s); the
#: bound only keeps a broken run from hanging, it does not measure anything.
DISCOVERY_SECONDS = 30.0


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ServerProcess]]:
    with consumer_servers() as started:
        yield started


@pytest.fixture(scope="module")
def prometheus(servers: dict[str, ServerProcess]) -> Iterator[PrometheusServer]:
    binary, reason = find_or_install_prometheus()
    if binary is None:
        pytest.skip(f"prometheus unavailable: {reason}")
    jobs = [
        {
            "job_name": f"consul-{kind}",
            "scrape_interval": "1m",
            "consul_sd_configs": [
                {
                    "server": f"127.0.0.1:{server.port}",
                    "token": READ_TOKEN,
                    "refresh_interval": "1s",
                }
            ],
        }
        for kind, server in servers.items()
    ]
    server = PrometheusServer(binary, {"global": {"scrape_interval": "1m"}, "scrape_configs": jobs})
    try:
        try:
            server.wait_ready()
        except AssertionError:
            if "field consul_sd_configs not found" in server.log():
                pytest.skip(f"this Prometheus ({binary}) is built without consul_sd: {WITHOUT}")
            raise
        yield server
    finally:
        server.stop()


def _targets(prometheus: PrometheusServer, kind: str) -> dict[str, dict[str, str]]:
    """The job's targets by `__meta_consul_service_id`: their discovered labels."""
    found: dict[str, dict[str, str]] = {}
    for target in prometheus.targets()["activeTargets"]:
        if target["scrapePool"] == f"consul-{kind}":
            labels: dict[str, str] = target["discoveredLabels"]
            found[labels["__meta_consul_service_id"]] = labels
    return found


def _until(
    prometheus: PrometheusServer, seen: Callable[[dict[str, dict[str, str]]], bool], what: str
) -> None:
    """Wait until every job's targets pass `seen`."""
    deadline = time.monotonic() + DISCOVERY_SECONDS
    while True:
        pending = [kind for kind in KINDS if not seen(_targets(prometheus, kind))]
        if not pending:
            return
        if time.monotonic() > deadline:
            shown = {kind: _targets(prometheus, kind) for kind in pending}
            raise AssertionError(f"{what}: not seen by {pending}: {shown}\n{prometheus.log()}")
        time.sleep(0.2)


def test_prometheus_follows_registrations_drains_and_removals(
    servers: dict[str, ServerProcess], prometheus: PrometheusServer
) -> None:
    port = refused_port()
    with ExitStack() as stack:
        apis = [stack.enter_context(api_for(server.url, SECRET)) for server in servers.values()]
        for api in apis:
            body = instance_body(SERVICE, "a", port=port, tags=["web", "v1"], check={"type": "ttl"})
            api.register_ok(body)

        def listed(targets: dict[str, dict[str, str]]) -> bool:
            a = targets.get("a")
            return a is not None and a.get("__meta_consul_health") == "passing"

        _until(prometheus, listed, "registered")
        for kind in KINDS:
            a = _targets(prometheus, kind)["a"]
            assert a["__meta_consul_service"] == SERVICE
            assert a["__meta_consul_tags"] == ",web,v1,"
            assert a["__address__"] == f"127.0.0.1:{port}"
            assert a["__meta_consul_dc"] == "dc1"

        for api in apis:
            drained = api.http.put(f"/v1/discovery/maintenance/{SERVICE}/a", json={"reason": "x"})
            assert drained.status_code == 200

        def in_maintenance(targets: dict[str, dict[str, str]]) -> bool:
            return targets.get("a", {}).get("__meta_consul_health") == "maintenance"

        _until(prometheus, in_maintenance, "drained")

        for api in apis:
            api.register_ok(instance_body(SERVICE, "b", port=port, check={"type": "ttl"}))
            assert api.unregister(SERVICE, "a").status_code == 200

        def replaced(targets: dict[str, dict[str, str]]) -> bool:
            return list(targets) == ["b"]

        _until(prometheus, replaced, "unregistered")
    failures = prometheus.metric_sum("prometheus_sd_consul_rpc_failures_total")
    assert failures == 0, f"{failures} failed consul_sd calls\n{prometheus.log()}"
