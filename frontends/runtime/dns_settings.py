"""The DNS interface's settings (`SERVICE_DISCOVERY_DNS_*`): off unless a port is given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import dns.exception
import dns.name

from sd_core import ConfigError
from sd_core.dns import DEFAULT_DOMAIN, DnsConfig

#: Every variable read here (the conformance helpers scrub them from a child's environment).
DNS_VARIABLES = (
    "SERVICE_DISCOVERY_DNS_PORT",
    "SERVICE_DISCOVERY_DNS_DOMAIN",
    "SERVICE_DISCOVERY_DNS_TTL",
    "SERVICE_DISCOVERY_DNS_CACHE_BYTES",
    "SERVICE_DISCOVERY_DNS_MAX_TCP_CONNECTIONS",
    "SERVICE_DISCOVERY_DNS_TCP_IDLE_SECONDS",
    "SERVICE_DISCOVERY_DNS_MAX_TCP_QUERY_BYTES",
    "SERVICE_DISCOVERY_DNS_MISS_CPU_SHARE",
)


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """`port` 0 binds any free port (UDP and TCP alike; the `dns_listening` line says which).

    `max_tcp_connections`: past it a new connection is closed at once;
    `tcp_idle`: a connection must complete each query within this of the previous
    answer (or of its accept), and each answer's write within it too;
    `max_tcp_query`: a larger length prefix closes the connection (queries are small:
    one question and an OPT record);
    `miss_share`: the share of a second that answers the cache did not hold may take
    (parsing and rendering; milliseconds each for a large service); past it, until the
    second is over, such queries get SERVFAIL and cached answers are still served, so a
    flood of distinct queries cannot take the loop from HTTP."""

    port: int
    core: DnsConfig
    max_tcp_connections: int = 256
    tcp_idle: float = 10.0
    max_tcp_query: int = 4096
    miss_share: float = 0.25


def load_dns_settings(env: Mapping[str, str]) -> DnsSettings | None:
    """The DNS settings, or None when `SERVICE_DISCOVERY_DNS_PORT` is unset or empty."""
    raw_port = env.get("SERVICE_DISCOVERY_DNS_PORT", "").strip()
    if not raw_port:
        return None
    port = _whole("SERVICE_DISCOVERY_DNS_PORT", raw_port, 0)
    if port > 65535:
        raise ConfigError("SERVICE_DISCOVERY_DNS_PORT", f"must be 0-65535, got {port}")
    domain = env.get("SERVICE_DISCOVERY_DNS_DOMAIN", "").strip() or DEFAULT_DOMAIN
    try:
        name = dns.name.from_text(domain)
    except dns.exception.DNSException as error:
        raise ConfigError("SERVICE_DISCOVERY_DNS_DOMAIN", f"is not a DNS name: {error}") from None
    if name == dns.name.root:
        raise ConfigError("SERVICE_DISCOVERY_DNS_DOMAIN", "must not be the root")
    # Whole numbers: (variable, where it goes, field, minimum).
    wholes: dict[str, dict[str, int]] = {"core": {}, "server": {}}
    for variable, part, field, minimum in (
        ("SERVICE_DISCOVERY_DNS_TTL", "core", "ttl", 0),
        ("SERVICE_DISCOVERY_DNS_CACHE_BYTES", "core", "cache_bytes", 0),
        ("SERVICE_DISCOVERY_DNS_MAX_TCP_CONNECTIONS", "server", "max_tcp_connections", 1),
        ("SERVICE_DISCOVERY_DNS_MAX_TCP_QUERY_BYTES", "server", "max_tcp_query", 512),
    ):
        raw = env.get(variable, "").strip()
        if raw:
            wholes[part][field] = _whole(variable, raw, minimum)
    raw_idle = env.get("SERVICE_DISCOVERY_DNS_TCP_IDLE_SECONDS", "").strip()
    idle = _seconds("SERVICE_DISCOVERY_DNS_TCP_IDLE_SECONDS", raw_idle) if raw_idle else None
    core = DnsConfig(domain=name.to_text(), **wholes["core"])
    settings = DnsSettings(port=port, core=core, **wholes["server"])
    raw_share = env.get("SERVICE_DISCOVERY_DNS_MISS_CPU_SHARE", "").strip()
    if raw_share:
        share = _seconds("SERVICE_DISCOVERY_DNS_MISS_CPU_SHARE", raw_share)
        if share > 1:
            raise ConfigError(
                "SERVICE_DISCOVERY_DNS_MISS_CPU_SHARE", f"must be at most 1, got {raw_share}"
            )
        settings = replace(settings, miss_share=share)
    return settings if idle is None else replace(settings, tcp_idle=idle)


def _whole(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {value}")
    return value


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number, got {raw!r}") from None
    if not 0 < value < float("inf"):
        raise ConfigError(name, f"must be greater than 0, got {raw}")
    return value
