"""Parked blocking queries, woken by the core's index changes (trio).

A parked request awaits its scope's `trio.Event` under `trio.move_on_after`,
on trio's clock, so `MockClock` tests run the timeouts without waiting.
"""

from __future__ import annotations

import trio

from frontends.runtime import scope_events
from frontends.runtime.runtime import Runtime


class ParkedQueries(scope_events.CountedParkedQueries[trio.Event]):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime, trio.Event)

    async def _wait_set(self, event: trio.Event, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await event.wait()
