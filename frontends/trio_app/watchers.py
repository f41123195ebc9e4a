"""Parked blocking queries, woken by the core's index changes (trio).

A parked request awaits its scope's `trio.Event` under `trio.move_on_after`,
on trio's clock, so `MockClock` tests run the timeouts without waiting.
"""

from __future__ import annotations

import trio

from ..shared.runtime import Runtime
from ..shared.scope_events import ScopeEvents


class Watchers(ScopeEvents[trio.Event]):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(trio.Event)
        self._runtime = runtime

    async def wait(self, scope: str | None, seconds: float) -> None:
        """Return when `scope` changes, on shutdown, or after `seconds`."""
        if self._runtime.draining:
            return
        event = self.park(scope)
        counters = self._runtime.counters
        counters.parked_queries += 1
        try:
            with trio.move_on_after(seconds):
                await event.wait()
        finally:
            counters.parked_queries -= 1
            self.unpark(scope, event)
