"""Run VictoriaMetrics' scraper where Prometheus cannot prove a discovery.

Debian's Prometheus is built without some service discoveries (`consul_sd`
among them). Debian's `victoria-metrics` package implements Prometheus'
scrape config format, those discoveries included, with its own code, and
serves Prometheus' `/-/ready`, `/api/v1/targets` and `/metrics`; so the
single binary runs as a `PrometheusServer` whose command line is spelt
VictoriaMetrics' way. Its config is parsed strictly: a field it does not
implement (`refresh_interval` in `consul_sd_configs`, a flag here) is an
error at start rather than silently ignored.
"""

from __future__ import annotations

from pathlib import Path

from conformance.prometheus_server import PrometheusServer, find_or_install


def find_or_install_victoria_metrics() -> tuple[str | None, str]:
    """The victoria-metrics binary's path (see `find_or_install`)."""
    return find_or_install("victoria-metrics", "victoria-metrics")


class VictoriaMetrics(PrometheusServer):
    """One single-binary VictoriaMetrics scraping per its temp config.

    Scrape errors are not logged (the targets page shows them), so that
    every error in its log is a failure of discovery or of the process:
    `logged_errors` counts them.
    """

    name = "victoria-metrics"

    def command(self, binary: str, config_path: Path, data: Path) -> list[str]:
        return [
            binary,
            f"-promscrape.config={config_path}",
            "-promscrape.config.strictParse",
            "-promscrape.suppressScrapeErrors",
            f"-storageDataPath={data}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-loggerLevel=INFO",
        ]

    def logged_errors(self) -> float:
        """How many errors VictoriaMetrics has logged (its own count, in /metrics)."""
        logged = self.metric_sum("vm_log_messages_total")
        assert logged is not None, f"no vm_log_messages_total to count errors in\n{self.log()}"
        return self.metric_sum("vm_log_messages_total", 'level="error"') or 0.0
