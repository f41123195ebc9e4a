"""A dependency-free estimate of how busy this machine is, as a number in 0..1.

The registry's probe reads ``load_percentage`` from a service's ``/health``
body and :meth:`~service_discovery.ServiceDiscoveryClient.pick` balances on it,
so every service should report something sensible without extra packages.
The estimate is the larger of two fractions, because whichever resource runs
out first is what slows the service down:

* CPU: the 1-minute load average divided by the CPUs this process may use;
* memory: ``1 - MemAvailable / MemTotal`` from ``/proc/meminfo`` (Linux only).

Either part is skipped where the platform does not offer it (0.0 when neither
is available). Reading ``/proc`` is file I/O, so :func:`estimate_load_async`
runs it in a worker thread to keep the event loop free.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio.to_thread

__all__ = [
    "estimate_load",
    "estimate_load_async",
]

_MEMINFO = Path("/proc/meminfo")


def _clamp(value: float) -> float:
    if value != value:  # NaN
        return 0.0
    return min(1.0, max(0.0, value))


def _usable_cpus() -> int:
    sched_getaffinity = getattr(os, "sched_getaffinity", None)
    if sched_getaffinity is not None:
        try:
            return max(1, len(sched_getaffinity(0)))
        except OSError:
            pass
    return os.cpu_count() or 1


def cpu_fraction() -> float | None:
    """1-minute load average per usable CPU, clamped to 0..1; ``None`` if unknown."""
    try:
        one_minute, _, _ = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return _clamp(one_minute / _usable_cpus())


def memory_fraction(meminfo: Path = _MEMINFO) -> float | None:
    """Share of memory in use per ``/proc/meminfo``; ``None`` where there is none."""
    try:
        text = meminfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name.strip()] = int(parts[0])
    total = values.get("MemTotal")
    available = values.get("MemAvailable")
    if available is None and "MemFree" in values:
        # Kernels before 3.14 have no MemAvailable; free + reclaimable cache is close.
        available = values["MemFree"] + values.get("Buffers", 0) + values.get("Cached", 0)
    if not total or available is None:
        return None
    return _clamp(1.0 - available / total)


def estimate_load() -> float:
    """The larger of :func:`cpu_fraction` and :func:`memory_fraction`, in 0..1.

    Blocking (reads a file): call :func:`estimate_load_async` from async code.
    """
    parts = [p for p in (cpu_fraction(), memory_fraction()) if p is not None]
    return max(parts, default=0.0)


async def estimate_load_async() -> float:
    """:func:`estimate_load` in a worker thread, so the event loop never waits on it."""
    return await anyio.to_thread.run_sync(estimate_load)
