"""One event per watched scope, the bookkeeping both frontends' watchers share.

The event type is the loop's own (`asyncio.Event` or `trio.Event`); only
waiting on it differs between the loops, so only that lives in each
frontend's `watchers.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class SettableEvent(Protocol):
    def set(self) -> None: ...


E = TypeVar("E", bound=SettableEvent)


class ScopeEvents(Generic[E]):
    """Events keyed by scope (a service name, or None for every change).

    An event is replaced each time it fires: a change wakes exactly the
    requests parked on that service and the global watchers, nobody else.
    """

    def __init__(self, new_event: Callable[[], E]) -> None:
        self._new_event = new_event
        self._events: dict[str | None, E] = {}

    def event_for(self, scope: str | None) -> E:
        event = self._events.get(scope)
        if event is None:
            event = self._events[scope] = self._new_event()
        return event

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
