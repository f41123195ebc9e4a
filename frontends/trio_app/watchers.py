"""Parked blocking queries, woken by the core's index changes (trio).

One `trio.Event` per watched scope, replaced each time it fires: a change
wakes exactly the requests watching that service (and the global watchers).
Timeouts use trio's clock, so `MockClock` tests run them without waiting.
"""

from __future__ import annotations

import trio

from ..shared.runtime import Runtime


class Watchers:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._events: dict[str | None, trio.Event] = {}

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
            event = self._events[scope] = trio.Event()
        self._runtime.parked_queries += 1
        try:
            with trio.move_on_after(seconds):
                await event.wait()
        finally:
            self._runtime.parked_queries -= 1
