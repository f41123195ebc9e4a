"""What goes into the core (probe results) and what comes out (effects).

All frozen: the driver cannot alter an effect after the core decided it, and
tests compare them by value.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RunProbe:
    """Probe `url` and report back with `generation` (stale results are ignored)."""

    service_name: str
    instance_id: str
    url: str
    generation: int


@dataclass(frozen=True, slots=True)
class ProbePassed:
    service_name: str
    instance_id: str
    generation: int
    load: float | None = None


@dataclass(frozen=True, slots=True)
class ProbeFailed:
    service_name: str
    instance_id: str
    generation: int
    reason: str


ProbeResult = ProbePassed | ProbeFailed


@dataclass(frozen=True, slots=True)
class IndexRaised:
    """These services' indexes (and so the global one) rose: wake their watchers."""

    services: frozenset[str]


@dataclass(frozen=True, slots=True)
class InstanceRegistered:
    service_name: str
    instance_id: str
    address: str
    updated: bool


@dataclass(frozen=True, slots=True)
class InstanceRemoved:
    """`reason` is `unregistered`, `ttl_expired` or `unhealthy_too_long`."""

    service_name: str
    instance_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class StatusChanged:
    service_name: str
    instance_id: str
    old: str
    new: str
    reason: str


@dataclass(frozen=True, slots=True)
class SelfPreservationChanged:
    active: bool
    reason: str


Effect = (
    RunProbe
    | IndexRaised
    | InstanceRegistered
    | InstanceRemoved
    | StatusChanged
    | SelfPreservationChanged
)
