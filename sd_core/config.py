"""The registry's behaviour knobs, checked once so the core can trust them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

from .errors import ConfigError
from .probe_address_policy import ProbePolicy

__all__ = [
    "RegistryConfig",
]

_DATACENTER = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """Everything the state machine's decisions depend on (all times in seconds).

    Field names map to environment variables in the server; `validate` names
    the field, and the server translates that into the variable's name.
    """

    health_check_interval: float = 30.0
    health_check_timeout: float = 5.0
    success_threshold: int = 1
    failure_threshold: int = 2
    registration_ttl: float = 180.0
    deregister_unhealthy_after: float = 0.0
    watch_load_delta: float = 0.1
    self_preservation_threshold: float = 0.5
    self_preservation_min_instances: int = 10
    self_preservation_max_seconds: float = 900.0
    max_instances: int = 100_000
    max_body_bytes: int = 65_536
    probe_max_body_bytes: int = 65_536
    #: New and moved instances are probed at once, at most this many a second
    #: (a registration storm is spread out; one registration never waits).
    #: 0 turns it off: the first probe then waits for the instance's phase.
    first_probes_per_second: float = 100.0
    #: Bytes of filtered answers (`?meta.k=v`, `?status=`) kept for reuse, over
    #: every view of the registry; the least recently read go first.
    filter_cache_bytes: int = 4 * 1024 * 1024
    #: `meta.<key>=<value>` pairs one read may filter on (422 past it).
    max_filter_pairs: int = 16
    #: Services one watch stream may name (422 past it; `*` follows every one).
    max_watched_services: int = 256
    #: UTF-8 bytes of an instance's metadata keys and values together (422 past it).
    max_metadata_bytes: int = 4096
    #: Until an instance passes its first probe, a failed probe is retried after this
    #: many seconds, doubling each time up to the interval (a replica that registers
    #: a moment before it listens is seen within seconds, not an interval). 0: off.
    first_probe_retry: float = 1.0
    probe_policy: ProbePolicy = field(default_factory=ProbePolicy)
    # False in cluster mode: the store's leases expire instances and the probe owner
    # deregisters long-unhealthy ones, so the local registry removes nothing on its own
    # clock (self-preservation is then decided by the cluster's guardian node instead).
    local_expiry: bool = True
    #: What the Consul-compatible reads name (docs/integrations.md): the datacenter
    #: every node and instance is in, and this registry's node (`/v1/agent/self`).
    datacenter: str = "dc1"
    node_name: str = "service-discovery"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse values that would make the registry misbehave quietly."""
        for f in fields(self):
            if f.name in ("probe_policy", "local_expiry", "datacenter", "node_name"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f.name, f"must be a number, got {value!r}")
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f.name, "must be a finite number")
        positive = (
            "health_check_interval",
            "health_check_timeout",
            "registration_ttl",
            "self_preservation_max_seconds",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(name, "must be greater than 0")
        at_least_one = (
            "success_threshold",
            "failure_threshold",
            "max_instances",
            "max_body_bytes",
            "probe_max_body_bytes",
            "max_filter_pairs",
            "max_watched_services",
            "max_metadata_bytes",
        )
        for name in at_least_one:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(name, "must be a whole number of at least 1")
        if self.self_preservation_min_instances < 0 or not isinstance(
            self.self_preservation_min_instances, int
        ):
            raise ConfigError("self_preservation_min_instances", "must be a whole number >= 0")
        if not isinstance(self.filter_cache_bytes, int) or self.filter_cache_bytes < 0:
            raise ConfigError("filter_cache_bytes", "must be a whole number >= 0 (0: none kept)")
        if self.first_probes_per_second < 0:
            raise ConfigError("first_probes_per_second", "must be 0 (off) or more")
        if self.first_probe_retry < 0:
            raise ConfigError("first_probe_retry", "must be 0 (off) or more")
        if self.deregister_unhealthy_after < 0:
            raise ConfigError("deregister_unhealthy_after", "must be 0 (never) or more")
        if not 0 <= self.self_preservation_threshold < 1:
            raise ConfigError("self_preservation_threshold", "must be in [0, 1); 0 turns it off")
        if not 0 <= self.watch_load_delta <= 1:
            raise ConfigError("watch_load_delta", "must be between 0 and 1")
        if not _DATACENTER.fullmatch(self.datacenter):
            raise ConfigError(
                "datacenter", "must be 1-64 letters, digits, '-' or '_' (as Consul's names)"
            )
        if not self.node_name or not self.node_name.isprintable() or len(self.node_name) > 256:
            raise ConfigError("node_name", "must be 1-256 printable characters")
        if self.health_check_timeout > self.health_check_interval:
            raise ConfigError(
                "health_check_timeout",
                "must not be longer than the health check interval "
                f"({self.health_check_timeout} > {self.health_check_interval})",
            )
