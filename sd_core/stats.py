"""Counters since start, kept by the core and shown by `/metrics`.

Plain ints in a module of their own: the core counts (staying pure), the
frontends' metrics collector reads them, and neither needs the other's code.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Stats",
]


@dataclass(slots=True)
class Stats:
    """How often each thing happened since the registry started."""

    registrations: int = 0
    re_registrations: int = 0
    heartbeats: int = 0
    unregistrations: int = 0
    expirations: int = 0
    unhealthy_removals: int = 0
    probes_passed: int = 0
    probes_failed: int = 0
    probes_stale: int = 0
    probes_skipped: int = 0
    self_preservation_entries: int = 0
