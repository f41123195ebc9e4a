"""A real Prometheus-format scraper discovers the registry through `consul_sd_configs`.

One scraper with one `consul_sd` job per server kind (quart, trio, a cluster
node), refreshing every second and sending the read-only token as Consul's
`token`. Its targets API must list each instance with
`__meta_consul_service`, `__meta_consul_tags` and `__meta_consul_health`, and
follow a registration, a drain and an unregistration, with no failed SD call.

The scraper is Prometheus when its build has `consul_sd`. Debian 12's package
(2.42.0+ds) leaves it out, as it does kubernetes_sd and nomad_sd; then it is
Debian's VictoriaMetrics (1.79), whose scraper implements the same config
format with its own Consul client. The test skips only when neither runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from conformance.client import api_for, instance_body
from conformance.common import READ_TOKEN, SECRET
from conformance.fake_instances import refused_port
from conformance.prometheus_server import PrometheusServer, find_or_install_prometheus
from conformance.server_process import ServerProcess
from conformance.victoria_metrics import VictoriaMetrics, find_or_install_victoria_metrics
from tests.consumers.consumer_servers import KINDS, consumer_servers

SERVICE = "consul-sd-app"
#: Why Debian's Prometheus cannot be the scraper.
WITHOUT = "Debian's prometheus package drops the SDs whose Go libraries Debian does not ship"
#: Discovery is a blocking query woken by the change, then one refresh (1 s); the
#: bound only keeps a broken run from hanging, it does not measure anything.
DISCOVERY_SECONDS = 30.0
#: VictoriaMetrics has no per-job `refresh_interval`: its interval is a flag.
VM_REFRESH = "-promscrape.consulSDCheckInterval=1s"
#: The service ID and health become target labels. Besides being what a real
#: config keeps, this makes VictoriaMetrics show a drain: it keys a target by
#: its final labels and keeps the discovered labels it was created with.
RELABEL = [
    {"source_labels": ["__meta_consul_service_id"], "target_label": "consul_service_id"},
    {"source_labels": ["__meta_consul_health"], "target_label": "consul_health"},
]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ServerProcess]]:
    with consumer_servers() as started:
        yield started


def _config(servers: dict[str, ServerProcess], refresh_interval: bool) -> dict[str, Any]:
    """One `consul_sd` job per server kind, as in docs/integrations.md."""
    jobs = []
    for kind, server in servers.items():
        sd: dict[str, str] = {"server": f"127.0.0.1:{server.port}", "token": READ_TOKEN}
        if refresh_interval:
            sd["refresh_interval"] = "1s"
        jobs.append(
            {
                "job_name": f"consul-{kind}",
                "scrape_interval": "1m",
                "consul_sd_configs": [sd],
                "relabel_configs": RELABEL,
            }
        )
    return {"global": {"scrape_interval": "1m"}, "scrape_configs": jobs}


def _prometheus(servers: dict[str, ServerProcess]) -> tuple[PrometheusServer | None, str]:
    """A ready Prometheus with the jobs, or None and why it cannot be one."""
    binary, reason = find_or_install_prometheus()
    if binary is None:
        return None, f"prometheus unavailable: {reason}"
    server = PrometheusServer(binary, _config(servers, refresh_interval=True))
    try:
        server.wait_ready()
    except AssertionError:
        without = "field consul_sd_configs not found" in server.log()
        server.stop()
        if without:
            return None, f"this Prometheus ({binary}) is built without consul_sd: {WITHOUT}"
        raise
    return server, ""


@pytest.fixture(scope="module")
def scraper(servers: dict[str, ServerProcess]) -> Iterator[PrometheusServer]:
    """Prometheus if it has consul_sd, else VictoriaMetrics' implementation of it."""
    server, without_prometheus = _prometheus(servers)
    if server is None:
        binary, reason = find_or_install_victoria_metrics()
        if binary is None:
            pytest.skip(f"{without_prometheus}; victoria-metrics unavailable: {reason}")
        server = VictoriaMetrics(binary, _config(servers, refresh_interval=False), [VM_REFRESH])
    with server.ready():
        yield server


def _targets(scraper: PrometheusServer, kind: str) -> dict[str, dict[str, str]]:
    """The job's targets by `__meta_consul_service_id`: their discovered labels."""
    found: dict[str, dict[str, str]] = {}
    for target in scraper.targets()["activeTargets"]:
        if target["scrapePool"] == f"consul-{kind}":
            labels: dict[str, str] = target["discoveredLabels"]
            found[labels["__meta_consul_service_id"]] = labels
    return found


def _until(
    scraper: PrometheusServer, seen: Callable[[dict[str, dict[str, str]]], bool], what: str
) -> None:
    """Wait until every job's targets pass `seen`."""
    deadline = time.monotonic() + DISCOVERY_SECONDS
    while True:
        pending = [kind for kind in KINDS if not seen(_targets(scraper, kind))]
        if not pending:
            return
        if time.monotonic() > deadline:
            shown = {kind: _targets(scraper, kind) for kind in pending}
            raise AssertionError(f"{what}: not seen by {pending}: {shown}\n{scraper.log()}")
        time.sleep(0.2)


def test_prometheus_follows_registrations_drains_and_removals(
    servers: dict[str, ServerProcess], scraper: PrometheusServer
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

        _until(scraper, listed, "registered")
        for kind in KINDS:
            a = _targets(scraper, kind)["a"]
            assert a["__meta_consul_service"] == SERVICE
            assert a["__meta_consul_tags"] == ",web,v1,"
            assert a["__address__"] == f"127.0.0.1:{port}"
            assert a["__meta_consul_dc"] == "dc1"

        for api in apis:
            drained = api.http.put(f"/v1/discovery/maintenance/{SERVICE}/a", json={"reason": "x"})
            assert drained.status_code == 200

        def in_maintenance(targets: dict[str, dict[str, str]]) -> bool:
            return targets.get("a", {}).get("__meta_consul_health") == "maintenance"

        _until(scraper, in_maintenance, "drained")

        for api in apis:
            api.register_ok(instance_body(SERVICE, "b", port=port, check={"type": "ttl"}))
            assert api.unregister(SERVICE, "a").status_code == 200

        def replaced(targets: dict[str, dict[str, str]]) -> bool:
            return list(targets) == ["b"]

        _until(scraper, replaced, "unregistered")
    assert _failed_sd_calls(scraper) == 0, scraper.log()


def test_reads_need_the_token(servers: dict[str, ServerProcess]) -> None:
    """So a discovered target shows that the scraper sent the configured `token`."""
    for server in servers.values():
        with httpx.Client(base_url=server.url, trust_env=False) as client:
            assert client.get("/v1/catalog/services").status_code == 401


def _failed_sd_calls(scraper: PrometheusServer) -> float | None:
    """Prometheus counts failed Consul calls; VictoriaMetrics logs each as an error."""
    if isinstance(scraper, VictoriaMetrics):
        return scraper.logged_errors()
    return scraper.metric_sum("prometheus_sd_consul_rpc_failures_total")
