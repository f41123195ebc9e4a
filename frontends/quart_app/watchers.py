"""Parked blocking queries, woken by the core's index changes (asyncio).

A parked request awaits its scope's `asyncio.Event` under `asyncio.timeout`:
it costs a coroutine frame, not a task or a timer thread. The timeout runs on
the loop's clock, so tests jump it with a virtual-time loop.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..shared.runtime import Runtime
from ..shared.scope_events import ScopeEvents


class Watchers(ScopeEvents[asyncio.Event]):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(asyncio.Event)
        self._runtime = runtime

    async def wait(self, scope: str | None, seconds: float) -> None:
        """Return when `scope` changes, on shutdown, or after `seconds`."""
        if self._runtime.draining:
            return
        event = self.park(scope)
        counters = self._runtime.counters
        counters.parked_queries += 1
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await event.wait()
        finally:
            counters.parked_queries -= 1
            self.unpark(scope, event)
