"""How an instance's health is checked: `http` (the default), `tcp` or `ttl`.

Consul's three most used check kinds. `http` and `tcp` are probes the
registry runs (the driver picks a prober by `RunProbe.kind`); `ttl` runs no
probe at all: the instance reports itself with its heartbeats, so a service
behind a firewall the registry cannot reach still has a health status.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CheckType",
]


class CheckType(StrEnum):
    HTTP = "http"
    TCP = "tcp"
    TTL = "ttl"

    @property
    def probed(self) -> bool:
        """Whether the registry probes instances checked this way."""
        return self is not CheckType.TTL
