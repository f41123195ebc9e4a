"""Parked blocking queries, woken by the core's index changes (asyncio).

One `asyncio.Event` per watched scope, replaced each time it fires: a change
wakes exactly the requests watching that service (and the global watchers),
and a parked request costs a coroutine frame, not a task or a timer thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..shared.runtime import Runtime

Sleep = Callable[[float], Awaitable[None]]


class Watchers:
    def __init__(self, runtime: Runtime, *, sleep: Sleep | None = None) -> None:
        """`sleep` replaces the loop's timer, so tests can drive timeouts by a fake clock."""
        self._runtime = runtime
        self._sleep = sleep
        self._events: dict[str | None, asyncio.Event] = {}

    def wake(self, services: frozenset[str]) -> None:
        events = self._events
        for name in services:
            event = events.pop(name, None)
            if event is not None:
                event.set()
        everything = events.pop(None, None)
        if everything is not None:
            everything.set()

    def release_all(self) -> None:
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    async def wait(self, scope: str | None, seconds: float) -> None:
        """Return when `scope` changes, on shutdown, or after `seconds`."""
        if self._runtime.draining:
            return
        event = self._events.get(scope)
        if event is None:
            event = self._events[scope] = asyncio.Event()
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
