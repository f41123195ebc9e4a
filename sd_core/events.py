"""What goes into the core (changes, probe results) and what comes out (effects).

All frozen: the driver cannot alter an effect after the core decided it, and
tests compare them by value.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .checks import CheckType
from .models import RegisterRequest
from .status import Status

__all__ = [
    "Effect",
    "IndexRaised",
    "InstanceChange",
    "InstanceRegistered",
    "InstanceRemoved",
    "MaintenanceChanged",
    "MaintenanceEnded",
    "MaintenanceStarted",
    "ProbeFailed",
    "ProbePassed",
    "ProbeResult",
    "Registration",
    "Removal",
    "RemovalReason",
    "RunProbe",
    "SelfPreservationChanged",
    "StatusChanged",
]


@dataclass(frozen=True, slots=True)
class OfInstance:
    """What every instance event starts with: the instance it is about.

    Its fields come first in each event, so an event is built as before,
    `Removal(service_name, instance_id, reason)`.
    """

    service_name: str
    instance_id: str


@dataclass(frozen=True, slots=True)
class RunProbe(OfInstance):
    """Probe `url` and report back with `generation` (stale results are ignored).

    `kind` says which prober runs it: `http` GETs the URL, `tcp` connects to
    the host and port of a `tcp://host:port` URL.
    """

    url: str
    generation: int
    kind: CheckType = CheckType.HTTP


@dataclass(frozen=True, slots=True)
class ProbePassed(OfInstance):
    generation: int
    load: float | None = None


@dataclass(frozen=True, slots=True)
class ProbeFailed(OfInstance):
    generation: int
    reason: str


ProbeResult = ProbePassed | ProbeFailed


class RemovalReason(StrEnum):
    """Why an instance left the registry (logged as its value)."""

    UNREGISTERED = "unregistered"
    TTL_EXPIRED = "ttl_expired"
    UNHEALTHY_TOO_LONG = "unhealthy_too_long"


@dataclass(frozen=True, slots=True)
class StoreStamp:
    """Cluster mode: the wall-clock times a store record carries, so that every node
    renders the same `registered_at` and `last_heartbeat` whenever it hears of the write."""

    registered_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Registration:
    """Add or update an instance. `restored_at`: its wall-clock registration time
    when it comes back from a snapshot (then it is added quietly, probed at once),
    and `heartbeat_at` the wall-clock time of its last heartbeat the snapshot saw
    (None in a snapshot written without it). `stamp`: the times of the store
    record it comes from (cluster mode)."""

    request: RegisterRequest
    restored_at: float | None = None
    stamp: StoreStamp | None = None
    heartbeat_at: float | None = None


@dataclass(frozen=True, slots=True)
class Removal(OfInstance):
    reason: RemovalReason


@dataclass(frozen=True, slots=True)
class MaintenanceStarted(OfInstance):
    """Take an instance out of `/healthy` reads while it is worked on (a drain).

    `since`: the wall-clock time it started, when it is replayed (a snapshot);
    None means now.
    """

    reason: str | None
    since: float | None = None


@dataclass(frozen=True, slots=True)
class MaintenanceEnded(OfInstance):
    """Put an instance back into `/healthy` reads (its drain is over)."""


@dataclass(frozen=True, slots=True)
class HealthRecorded(OfInstance):
    """Cluster mode: the store holds this status for the instance (its probe owner
    decided it through the transition table); `checked_at` is the wall-clock time of
    the deciding probe, None when the store holds no status (then `status` is unknown)."""

    status: Status
    reason: str
    checked_at: float | None


@dataclass(frozen=True, slots=True)
class SoftStateRecorded(OfInstance):
    """Cluster mode: the store holds these soft values for the instance (its last
    heartbeat, reported load and last health check, wall-clock; `checked_at` None before
    the first probe). Applied like a heartbeat: timestamps and load move, the index
    rises only for a load move of WATCH_LOAD_DELTA or more."""

    heartbeat_at: float
    load: float
    checked_at: float | None


# A change to an instance, as `Registry.apply` takes it (see there).
InstanceChange = (
    Registration
    | Removal
    | ProbePassed
    | ProbeFailed
    | HealthRecorded
    | SoftStateRecorded
    | MaintenanceStarted
    | MaintenanceEnded
)


@dataclass(frozen=True, slots=True)
class IndexRaised:
    """These services' indexes (and so the global one) rose: wake their watchers."""

    services: frozenset[str]


@dataclass(frozen=True, slots=True)
class InstanceRegistered(OfInstance):
    """An instance was added (`updated=False`) or registered again; it is probed at `probe_url`."""

    probe_url: str
    updated: bool


@dataclass(frozen=True, slots=True)
class InstanceRemoved(OfInstance):
    reason: RemovalReason


@dataclass(frozen=True, slots=True)
class StatusChanged(OfInstance):
    """The status moved from `old` to `new`; `reason` is the probe's verdict or the cause."""

    old: Status
    new: Status
    reason: str


@dataclass(frozen=True, slots=True)
class MaintenanceChanged(OfInstance):
    """An instance went into maintenance (`active`, with its reason) or came out of it."""

    active: bool
    reason: str | None


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
    | MaintenanceChanged
    | SelfPreservationChanged
)
