"""Every health-status transition lives in this one table.

An instance's status moves only through `next_status`. Hysteresis is part of
the table: a move that needs a streak names which threshold the streak must
reach, so "two failures make it unhealthy" is read off one line.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from .errors import DriverError

__all__ = [
    "Signal",
    "Status",
]


class Status(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class Signal(StrEnum):
    PROBE_PASSED = "probe_passed"
    PROBE_FAILED = "probe_failed"
    ADDRESS_CHANGED = "address_changed"
    # The same instance id registered again (a restart): an old `unhealthy` verdict
    # was about the previous run, while `healthy` stands until probes say otherwise.
    REREGISTERED = "reregistered"
    # A heartbeat of an instance with a ttl check: its own word, no streak needed.
    REPORTED_HEALTHY = "reported_healthy"
    REPORTED_UNHEALTHY = "reported_unhealthy"


Needs = Literal["success_streak", "failure_streak", "nothing"]

# (status, signal) -> (target status, what must hold for the move to happen).
# When the condition does not hold yet, the status stays where it is.
TRANSITIONS: dict[tuple[Status, Signal], tuple[Status, Needs]] = {
    (Status.UNKNOWN, Signal.PROBE_PASSED): (Status.HEALTHY, "success_streak"),
    (Status.UNKNOWN, Signal.PROBE_FAILED): (Status.UNHEALTHY, "failure_streak"),
    (Status.UNKNOWN, Signal.ADDRESS_CHANGED): (Status.UNKNOWN, "nothing"),
    (Status.HEALTHY, Signal.PROBE_PASSED): (Status.HEALTHY, "nothing"),
    (Status.HEALTHY, Signal.PROBE_FAILED): (Status.UNHEALTHY, "failure_streak"),
    (Status.HEALTHY, Signal.ADDRESS_CHANGED): (Status.UNKNOWN, "nothing"),
    (Status.UNHEALTHY, Signal.PROBE_PASSED): (Status.HEALTHY, "success_streak"),
    (Status.UNHEALTHY, Signal.PROBE_FAILED): (Status.UNHEALTHY, "nothing"),
    (Status.UNHEALTHY, Signal.ADDRESS_CHANGED): (Status.UNKNOWN, "nothing"),
    (Status.UNKNOWN, Signal.REREGISTERED): (Status.UNKNOWN, "nothing"),
    (Status.HEALTHY, Signal.REREGISTERED): (Status.HEALTHY, "nothing"),
    (Status.UNHEALTHY, Signal.REREGISTERED): (Status.UNKNOWN, "nothing"),
    (Status.UNKNOWN, Signal.REPORTED_HEALTHY): (Status.HEALTHY, "nothing"),
    (Status.HEALTHY, Signal.REPORTED_HEALTHY): (Status.HEALTHY, "nothing"),
    (Status.UNHEALTHY, Signal.REPORTED_HEALTHY): (Status.HEALTHY, "nothing"),
    (Status.UNKNOWN, Signal.REPORTED_UNHEALTHY): (Status.UNHEALTHY, "nothing"),
    (Status.HEALTHY, Signal.REPORTED_UNHEALTHY): (Status.UNHEALTHY, "nothing"),
    (Status.UNHEALTHY, Signal.REPORTED_UNHEALTHY): (Status.UNHEALTHY, "nothing"),
}


def next_status(
    status: Status,
    signal: Signal,
    *,
    successes: int,
    failures: int,
    success_threshold: int,
    failure_threshold: int,
) -> Status:
    """The status after `signal`, given the streaks counted *including* it."""
    try:
        target, needs = TRANSITIONS[(status, signal)]
    except KeyError:
        raise DriverError(f"no transition from status {status!r} on {signal!r}") from None
    if needs == "success_streak" and successes < success_threshold:
        return status
    if needs == "failure_streak" and failures < failure_threshold:
        return status
    return target
