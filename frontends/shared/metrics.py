"""`/metrics` in Prometheus text format.

The core's counters are plain ints read at scrape time by a custom collector,
so the hot paths pay nothing for metrics; only the probe latency histogram is
a prometheus-client object, fed by the driver that measures it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .runtime import Runtime


class _CoreCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime
        registry = runtime.registry
        stats = registry.stats
        instances = GaugeMetricFamily(
            "sd_instances", "Registered instances by health status", labels=["status"]
        )
        for status, count in sorted(registry.status_counts().items()):
            instances.add_metric([status], count)
        yield instances
        yield GaugeMetricFamily("sd_services", "Services with instances", registry.service_count)
        probes = CounterMetricFamily("sd_probes", "Finished health probes", labels=["result"])
        probes.add_metric(["passed"], stats.probes_passed)
        probes.add_metric(["failed"], stats.probes_failed)
        probes.add_metric(["stale"], stats.probes_stale)
        probes.add_metric(["skipped_in_flight"], stats.probes_skipped)
        yield probes
        yield CounterMetricFamily("sd_heartbeats", "Heartbeats accepted", stats.heartbeats)
        registrations = CounterMetricFamily(
            "sd_registrations", "Registrations accepted", labels=["kind"]
        )
        registrations.add_metric(["new"], stats.registrations)
        registrations.add_metric(["update"], stats.re_registrations)
        yield registrations
        removals = CounterMetricFamily("sd_removals", "Instances removed", labels=["reason"])
        removals.add_metric(["unregistered"], stats.unregistrations)
        removals.add_metric(["ttl_expired"], stats.expirations)
        removals.add_metric(["unhealthy_too_long"], stats.unhealthy_removals)
        yield removals
        active, _ = registry.self_preservation
        yield GaugeMetricFamily(
            "sd_self_preservation", "1 while expiry is paused by self-preservation", int(active)
        )
        yield CounterMetricFamily(
            "sd_self_preservation_entries",
            "Times self-preservation began",
            stats.self_preservation_entries,
        )
        yield GaugeMetricFamily("sd_watch_index", "Global watch index", registry.global_index)
        yield GaugeMetricFamily(
            "sd_blocking_queries", "Blocking queries parked now", runtime.parked_queries
        )
        yield GaugeMetricFamily(
            "sd_requests_in_flight", "HTTP requests being handled now", runtime.in_flight
        )
        requests = CounterMetricFamily(
            "sd_http_requests", "HTTP requests answered", labels=["route", "status"]
        )
        for (route, code), count in sorted(runtime.request_counts.items()):
            requests.add_metric([route, str(code)], count)
        yield requests


class Metrics:
    """One collector registry per server (tests start several in one process)."""

    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_CoreCollector(runtime))
        self.probe_seconds = Histogram(
            "sd_probe_duration_seconds",
            "Health probe latency, failures included",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
