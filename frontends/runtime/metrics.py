"""`/metrics` in Prometheus text format.

The core's counters and the runtime's `Counters` are plain ints read at
scrape time by a custom collector, so the hot paths pay nothing for metrics;
only the probe latency histogram is a prometheus-client object, fed by the
driver that measures it. Metrics sees the registry and `Counters`, never the
runtime that owns them, so the runtime can build it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from frontends.runtime.dns_server import DnsCounters
from sd_core import Registry

#: Every reason `sd_auth_failures_total` reports, 0 until one happens (so alerts can rate() it).
AUTH_FAILURE_REASONS = ("missing", "invalid", "read_only_write")


@dataclass(slots=True)
class Counters:
    """What the runtime counts about requests, outside the core; it updates these in place."""

    parked_queries: int = 0
    in_flight: int = 0
    requests: dict[tuple[str, int], int] = field(default_factory=dict)  # (route, status) -> n
    # reason -> n; the runtime shares `HttpApi.auth_failures` here, the core decides the reason.
    auth_failures: dict[str, int] = field(default_factory=dict)


class _CoreCollector(Collector):
    def __init__(self, registry: Registry, counters: Counters) -> None:
        self._registry = registry
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        registry = self._registry
        counters = self._counters
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
            "sd_blocking_queries", "Blocking queries parked now", counters.parked_queries
        )
        yield GaugeMetricFamily(
            "sd_requests_in_flight", "HTTP requests being handled now", counters.in_flight
        )
        requests = CounterMetricFamily(
            "sd_http_requests", "HTTP requests answered", labels=["route", "status"]
        )
        for (route, code), count in sorted(counters.requests.items()):
            requests.add_metric([route, str(code)], count)
        yield requests
        failures = CounterMetricFamily(
            "sd_auth_failures", "Refused authentications", labels=["reason"]
        )
        for reason in AUTH_FAILURE_REASONS:
            failures.add_metric([reason], counters.auth_failures.get(reason, 0))
        yield failures


class _DnsCollector(Collector):
    """The DNS interface's counters (`runtime.dns_server`), when it is on."""

    def __init__(self, counters: DnsCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        counters = self._counters
        queries = CounterMetricFamily(
            "sd_dns_queries", "DNS messages received", labels=["transport"]
        )
        queries.add_metric(["udp"], counters.udp_queries)
        queries.add_metric(["tcp"], counters.tcp_queries)
        yield queries
        yield GaugeMetricFamily(
            "sd_dns_tcp_connections", "DNS connections over TCP open now", counters.tcp_connections
        )
        yield CounterMetricFamily(
            "sd_dns_tcp_refused",
            "DNS connections over TCP closed at once: SERVICE_DISCOVERY_DNS_MAX_TCP_CONNECTIONS",
            counters.tcp_refused,
        )
        yield CounterMetricFamily(
            "sd_dns_busy",
            "DNS queries answered SERVFAIL: misses had used SERVICE_DISCOVERY_DNS_MISS_CPU_SHARE",
            counters.busy,
        )
        yield CounterMetricFamily(
            "sd_dns_send_dropped",
            "DNS answers over UDP the socket did not take",
            counters.send_dropped,
        )


class Metrics:
    """One collector registry per server (tests start several in one process)."""

    def __init__(
        self, registry: Registry, counters: Counters, dns: DnsCounters | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_CoreCollector(registry, counters))
        if dns is not None:
            self.registry.register(_DnsCollector(dns))
        self.probe_seconds = Histogram(
            "sd_probe_duration_seconds",
            "Health probe latency, failures included",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
