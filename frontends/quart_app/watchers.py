"""Parked blocking queries, woken by the core's index changes (asyncio).

A parked request awaits its scope's `asyncio.Event` under `asyncio.timeout`:
it costs a coroutine frame, not a task or a timer thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..shared.runtime import Runtime
from ..shared.scope_events import ScopeEvents

Sleep = Callable[[float], Awaitable[None]]


class Watchers(ScopeEvents[asyncio.Event]):
    def __init__(self, runtime: Runtime, *, sleep: Sleep | None = None) -> None:
        """`sleep` replaces the loop's timer, so tests can drive timeouts by a fake clock."""
        super().__init__(asyncio.Event)
        self._runtime = runtime
        self._sleep = sleep

    async def wait(self, scope: str | None, seconds: float) -> None:
        """Return when `scope` changes, on shutdown, or after `seconds`."""
        if self._runtime.draining:
            return
        event = self.event_for(scope)
        self._runtime.parked_queries += 1
        try:
            if self._sleep is None:
                try:
                    async with asyncio.timeout(seconds):
                        await event.wait()
                except TimeoutError:
                    pass
            else:
                await first_of(event.wait(), self._sleep(seconds))
        finally:
            self._runtime.parked_queries -= 1


async def first_of(*waits: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
