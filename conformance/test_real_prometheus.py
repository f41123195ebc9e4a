"""A real Prometheus discovers its targets through the registry.

Prometheus is the consumer the HTTP SD format exists for, so it is the final
judge of it: this starts Debian's ``prometheus`` with two ``http_sd_configs``
(the all-services list with the read-write secret, one service's list with the
read-only token, both refreshing every second) and checks through its own API
that it found every target with the right address and labels, scraped the
registry's own ``/metrics`` (which the registry registered as an instance of
itself), and recorded no SD failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conformance.client import api_for, instance_body, poll_until
from conformance.common import PROBE_ENV, READ_TOKEN, SECRET
from conformance.dedicated_servers import server_fixture
from conformance.fake_instances import ipv6_loopback_available, refused_port
from conformance.prometheus_server import PrometheusServer, find_or_install_prometheus
from conformance.server_process import ServerProcess

APP = "prom-app"
OTHER = "prom-other"
ALL_JOB = "registry-all"
APP_JOB = "registry-app-read"

#: Prometheus refreshes SD every second; discovery plus a scrape takes a few.
DISCOVERY_SECONDS = 30.0


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    path, reason = find_or_install_prometheus()
    if path is None:
        print(f"skipping the real-Prometheus tests: {reason}")
        pytest.skip(f"prometheus unavailable: {reason}")
    return path


sd_server = server_fixture(PROBE_ENV)


@pytest.fixture(scope="module")
def expected_targets(sd_server: ServerProcess) -> Iterator[dict[str, dict[str, str]]]:
    """Register the instances Prometheus must find; instance id -> what it must see."""
    dead = refused_port()
    targets = {
        "self": {
            "service_name": APP,
            "address": f"127.0.0.1:{sd_server.port}",
        },
        "hostile": {
            "service_name": APP,
            "address": f"127.0.0.1:{dead}",
        },
        "elsewhere": {
            "service_name": OTHER,
            "address": f"127.0.0.1:{dead}",
        },
    }
    with api_for(sd_server.url, SECRET) as api:
        api.register_ok(
            instance_body(
                APP,
                "self",
                port=sd_server.port,
                health_endpoint="/health",
                metadata={"version": "1.0.0", "app-version": "2"},
            )
        )
        api.register_ok(
            instance_body(
                APP,
                "hostile",
                port=dead,
                metadata={
                    "__address__": f"127.0.0.1:{sd_server.port}",
                    "__metrics_path__": "/evil",
                    "__scheme__": "https",
                    "instance": "impostor",
                },
            )
        )
        api.register_ok(instance_body(OTHER, "elsewhere", port=dead))
        if ipv6_loopback_available():
            dead6 = refused_port("::1")
            api.register_ok(instance_body(APP, "v6", host="::1", port=dead6))
            targets["v6"] = {"service_name": APP, "address": f"[::1]:{dead6}"}
        yield targets


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: str, sd_server: ServerProcess, expected_targets: dict[str, Any]
) -> Iterator[PrometheusServer]:
    # A cluster's url lists its nodes: each job asks a different one, as Prometheus
    # behind a load balancer may, and must not be able to tell.
    nodes = sd_server.url.split(",")

    def sd_config(
        path: str, token: str, *, with_type: bool = True, node: int = 0
    ) -> dict[str, Any]:
        # Without `type`, Debian's Prometheus 2.42 sends the bare token with no
        # "Bearer"; the registry accepts both, and each job uses one form.
        authorization = {"credentials": token}
        if with_type:
            authorization["type"] = "Bearer"
        return {
            "url": f"{nodes[node % len(nodes)]}{path}",
            "refresh_interval": "1s",
            "authorization": authorization,
        }

    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": ALL_JOB,
                "http_sd_configs": [sd_config("/v1/discovery/prometheus", SECRET)],
            },
            {
                "job_name": APP_JOB,
                "http_sd_configs": [
                    sd_config(
                        f"/v1/discovery/services/{APP}/instances",
                        READ_TOKEN,
                        with_type=False,
                        node=-1,
                    )
                ],
            },
        ],
    }
    server = PrometheusServer(prometheus_binary, config)
    with server.ready():
        yield server


def _active(prometheus: PrometheusServer, job: str) -> dict[str, dict[str, Any]]:
    """Active targets of ``job`` by their ``instance`` label."""
    return {
        target["labels"].get("instance", "?"): target
        for target in prometheus.targets()["activeTargets"]
        if target["scrapePool"] == job
    }


def _wait_for_targets(
    prometheus: PrometheusServer, job: str, names: set[str]
) -> dict[str, dict[str, Any]]:
    def ready() -> dict[str, dict[str, Any]] | None:
        active = _active(prometheus, job)
        return active if set(active) == names else None

    try:
        return poll_until(ready, DISCOVERY_SECONDS, f"{job} to discover {sorted(names)}", 0.25)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; active: {sorted(_active(prometheus, job))}\n{prometheus.log()}"
        ) from None


@pytest.fixture(scope="module")
def discovered(
    prometheus: PrometheusServer, expected_targets: dict[str, dict[str, str]]
) -> dict[str, dict[str, Any]]:
    """Wait once for the all-services job; if it never gets there, every test
    of the module errors at once instead of each waiting out the deadline."""
    return _wait_for_targets(prometheus, ALL_JOB, set(expected_targets))


def test_prometheus_discovers_every_target_with_its_labels(
    discovered: dict[str, dict[str, Any]], expected_targets: dict[str, dict[str, str]]
) -> None:
    for instance, expected in expected_targets.items():
        target = discovered[instance]
        labels = target["labels"]
        assert labels["service_name"] == expected["service_name"], labels
        assert labels["instance"] == instance, labels
        assert labels["job"] == ALL_JOB, labels
        assert labels["status"] in {"unknown", "healthy", "unhealthy"}, labels
        assert target["discoveredLabels"]["__address__"] == expected["address"], target
        assert target["scrapeUrl"] == f"http://{expected['address']}/metrics", target
    assert discovered["self"]["labels"]["version"] == "1.0.0"
    assert discovered["self"]["labels"]["app_version"] == "2"


def test_prometheus_sees_status_changes_and_scrapes_the_registry(
    prometheus: PrometheusServer, discovered: dict[str, dict[str, Any]]
) -> None:
    """The registry probes itself healthy; Prometheus follows and scrapes /metrics."""

    def settled() -> dict[str, dict[str, Any]] | None:
        active = _active(prometheus, ALL_JOB)
        me, hostile = active.get("self"), active.get("hostile")
        if me is None or hostile is None:
            return None
        if me["labels"]["status"] != "healthy" or me["health"] != "up":
            return None
        if hostile["labels"]["status"] != "unhealthy" or hostile["health"] != "down":
            return None
        return active

    try:
        poll_until(settled, DISCOVERY_SECONDS, "self healthy/up and hostile unhealthy/down", 0.25)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {_active(prometheus, ALL_JOB)}") from None


def test_read_token_job_sees_one_service(
    prometheus: PrometheusServer,
    discovered: dict[str, dict[str, Any]],
    expected_targets: dict[str, dict[str, str]],
) -> None:
    app_only = {k for k, v in expected_targets.items() if v["service_name"] == APP}
    active = _wait_for_targets(prometheus, APP_JOB, app_only)
    for instance in app_only:
        assert active[instance]["labels"]["service_name"] == APP
        assert active[instance]["labels"]["job"] == APP_JOB


def test_prometheus_reports_no_sd_failures(
    prometheus: PrometheusServer, discovered: dict[str, dict[str, Any]]
) -> None:
    failures = prometheus.metric_sum("prometheus_sd_http_failures_total")
    assert failures == 0.0, f"prometheus_sd_http_failures_total = {failures}\n{prometheus.log()}"
    dropped = [
        t
        for t in prometheus.targets()["droppedTargets"]
        if t["discoveredLabels"].get("job") in (ALL_JOB, APP_JOB)
    ]
    assert dropped == [], dropped
