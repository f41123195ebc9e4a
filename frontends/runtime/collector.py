"""How a server process sets CPython's cyclic garbage collector, and why.

The collector stops the whole process while it runs, and a full collection
scans every tracked object. A parked watcher holds well over a hundred of
them (hypercorn's connection, h11's state, the tasks and their coroutine
chains), so with tens of thousands parked one full collection stalls every
other client for seconds. `python -m tests.soak.harness.parked_wake` shows it: on trio,
with Python's own settings, a health check made while 19,900 watchers woke
waited up to 1.3-3.2 s (p99 0.3-1.3 s) over three runs; with the settings
below, at most 0.2 s (p99 60-150 ms; docs/reliability.md has the runs).

With Python's defaults (a young collection every 700 net allocations) a
request that lives a few milliseconds is usually still alive when a young
collection runs, so it is promoted; once promotions reach a quarter of the
old generation CPython runs a full collection, and one wake of thousands of
watchers promotes enough to trigger one in the middle of the wake.

Two changes stop that, both usual for long-running servers:

- `gc.freeze()` once everything is imported and configured: modules,
  classes and functions live as long as the process, so no collection needs
  to scan them again.
- A young threshold of `SERVICE_DISCOVERY_GC_YOUNG_THRESHOLD` (25,000) and
  a middle one of 5: short-lived request objects are freed by reference
  counting before a collection sees them, so far fewer are promoted and full
  collections become rare. The middle threshold stays small because a middle
  collection scans up to young x middle objects: a larger one trades rare
  full pauses for long middle ones.

Cyclic garbage is still collected, only in larger and rarer steps; memory
therefore runs a little higher between collections. `0` keeps Python's own
thresholds (and does not freeze), for an operator who wants them back.
"""

from __future__ import annotations

import gc
import logging

from frontends.runtime.logs import logfmt

log = logging.getLogger("sd.registry")

#: Collections of the young generation between two of the middle one.
MIDDLE_THRESHOLD = 5

#: Collections of the middle generation before a full one is considered
#: (CPython also waits until promotions reach 25 % of the old generation).
OLD_THRESHOLD = 100


def tune_collector(young_threshold: int) -> tuple[int, int, int]:
    """Freeze what startup built and collect less often; returns the thresholds in force.

    Called once, after the server's modules are imported and before it serves.
    """
    if young_threshold <= 0:
        return gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    log.info(
        logfmt(
            "garbage_collector",
            thresholds=",".join(map(str, gc.get_threshold())),
            frozen_objects=gc.get_freeze_count(),
        )
    )
    return gc.get_threshold()
