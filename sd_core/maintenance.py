"""Maintenance (a drain): an instance kept registered but out of `/healthy` reads.

Consul's node and service maintenance, Eureka's OUT_OF_SERVICE: an operator
takes an instance out of the traffic rotation before a deploy without
unregistering it. Its probes and heartbeats go on, so when maintenance ends
it comes back with a status that is current, not one from before the drain.
It is a flag beside the status rather than a fourth status, so the health
state machine (`status`) stays as it is and nothing is lost when it ends.
"""

from __future__ import annotations

from typing import NamedTuple


class Maintenance(NamedTuple):
    """Why (None when not given) and since when (the core's monotonic seconds)."""

    reason: str | None
    since: float
