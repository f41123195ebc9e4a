"""The DNS interface's settings as the core sees them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_DOMAIN", "DnsConfig"]

DEFAULT_DOMAIN = "service.discovery."


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """`domain`: the zone answered (absolute); `ttl`: seconds on every record (0: clients
    ask each time, as the registry's view can change any second); `cache_bytes`: the
    rendered answers kept; `variants`: shuffled orders kept per answer, handed out in turn."""

    domain: str = DEFAULT_DOMAIN
    ttl: int = 0
    cache_bytes: int = 4 * 1024 * 1024
    variants: int = 4
