"""Parked blocking queries, woken by the core's index changes (asyncio).

A parked request awaits its scope's `asyncio.Event` under `asyncio.timeout`:
it costs a coroutine frame, not a task or a timer thread. The timeout runs on
the loop's clock, so tests jump it with a virtual-time loop.
"""

from __future__ import annotations

import asyncio
import contextlib

from frontends.runtime import scope_events
from frontends.runtime.runtime import Runtime


class ParkedQueries(scope_events.CountedParkedQueries[asyncio.Event]):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime, asyncio.Event)

    async def _wait_set(self, event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()
