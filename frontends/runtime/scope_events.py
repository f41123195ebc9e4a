"""Parked blocking queries by scope, woken in batches: what each loop's `ParkedQueries` shares.

Each parked request waits on an event of its own (the loop's `asyncio.Event`
or `trio.Event`; only waiting on it differs between the loops, so only that
lives in each frontend's `parked.py`).

Why one event per request, and batches: one change used to set one event
that thousands of requests waited on, and the loop then ran all of them,
each answering its request, before it looked at a socket again. With 5,000
watchers parked, a change stalled everything else for the whole wake (on
trio, 46 of 48 health checks timed out). Now a change moves the woken
requests to a queue, and at most `WAKE_BATCH` of them are running at once:
each one that finishes lets the next one go. A released request resumes
on the loop's next turn, after the loop has polled its sockets, so other
clients are served between batches. The response bodies are rendered once
per change by the core, not once per woken request.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from frontends.runtime.runtime import Runtime

#: How many woken requests may be answering at once. Measured with 5,000
#: watchers and a health check every 20 ms (tests/reliability/test_reliability_parked_wake.py):
#: 200 left health checks waiting up to 0.9 s on quart; 8 keeps their p99
#: near 0.5 s on both frontends on a quiet machine (trio under a load average
#: of 8 on 2 cores: 1.9 s), and the whole wake takes no longer.
WAKE_BATCH = 8
#: Scopes whose last wake `ScopeEvents` remembers (an int each) for queries that chose
#: to wait and are not parked yet. Past it the memory is cleared, and a query that chose
#: to wait before the clearing is woken at once (a loop turn's window, so rarely).
WOKEN_SCOPES = 4096


class SettableEvent(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...


E = TypeVar("E", bound=SettableEvent)


class ScopeEvents(Generic[E]):
    """Parked requests keyed by scope (a service name, or None for every change).

    A change wakes exactly the requests parked on that service and the global
    watchers, nobody else. Every `park` must be matched by one `unpark` when
    the request stops waiting, however it stops.
    """

    def __init__(self, new_event: Callable[[], E], batch: int = WAKE_BATCH) -> None:
        self._new_event = new_event
        self.batch = batch
        self._parked: dict[str | None, dict[E, None]] = {}
        self._queue: deque[E] = deque()  # woken, waiting for a slot
        self._abandoned: set[E] = set()  # left while queued (timed out, or hung up)
        self.running = 0  # released and not yet unparked
        self.wakes = 0  # calls of `wake` and `wake_exactly` so far
        self._woken: dict[str | None, int] = {}  # scope -> `wakes` at its last wake
        self._forgotten = 0  # `wakes` when `_woken` was last cleared

    def park(self, scope: str | None, since: int | None = None) -> E:
        """A new parked request on `scope`. `since` is `wakes` as it was when the request
        chose to wait: a wake of `scope` after that found it not parked yet (a loop may
        start the wait a turn later), so it is woken at once rather than waiting out its
        time. Wakes of other scopes leave it parked."""
        event = self._new_event()
        if since is not None and (since < self._forgotten or self._woken.get(scope, -1) > since):
            self._queue.append(event)
            self._release()
            return event
        parked = self._parked.get(scope)
        if parked is None:
            parked = self._parked[scope] = {}
        parked[event] = None
        return event

    def unpark(self, scope: str | None, event: E) -> None:
        if event.is_set():
            self.running -= 1
            self._release()
            return
        parked = self._parked.get(scope)
        if parked is not None and event in parked:
            del parked[event]
            if not parked:
                del self._parked[scope]
        else:
            self._abandoned.add(event)  # still in the queue: skipped there

    def wake(self, services: frozenset[str]) -> None:
        self._note(services)
        self._woken[None] = self.wakes  # the global watchers: every change wakes them
        parked = self._parked
        queue = self._queue
        for name in services:
            woken = parked.pop(name, None)
            if woken is not None:
                queue.extend(woken)
        everything = parked.pop(None, None)
        if everything is not None:
            queue.extend(everything)
        self._release()

    def wake_exactly(self, scopes: frozenset[str]) -> None:
        """Wake the requests parked on these scopes only (not the global watchers): a
        cluster node's view reached the revision they wait for, nothing changed."""
        self._note(scopes)
        parked = self._parked
        for name in scopes:
            woken = parked.pop(name, None)
            if woken is not None:
                self._queue.extend(woken)
        self._release()

    def _note(self, scopes: frozenset[str]) -> None:
        """One more wake, of `scopes` (see `park`)."""
        self.wakes += 1
        woken = self._woken
        if len(woken) + len(scopes) > WOKEN_SCOPES:
            woken.clear()
            self._forgotten = self.wakes
        for scope in scopes:
            woken[scope] = self.wakes

    def _release(self) -> None:
        queue = self._queue
        abandoned = self._abandoned
        while self.running < self.batch and queue:
            event = queue.popleft()
            if abandoned and event in abandoned:
                abandoned.discard(event)
                continue
            event.set()
            self.running += 1

    def release_all(self) -> None:
        """Shutdown: answer everyone at once (nobody else is served any more)."""
        parked, self._parked = self._parked, {}
        for events in parked.values():
            self._queue.extend(events)
        batch, self.batch = self.batch, len(self._queue) + self.running + 1
        self._release()
        self.batch = batch
        self._abandoned.clear()


class CountedParkedQueries(ScopeEvents[E]):
    """A frontend's parked blocking queries, counted in the runtime's `parked_queries`.

    The bookkeeping around a wait is the same on both loops; a frontend's
    `parked.ParkedQueries` only says how to wait on its event with a timeout.
    """

    def __init__(self, runtime: Runtime, new_event: Callable[[], E]) -> None:
        super().__init__(new_event)
        self._runtime = runtime

    async def wait(self, scope: str | None, seconds: float, since: int | None = None) -> None:
        """Return when `scope` changes (or changed since `wakes` was `since`: see `park`),
        on shutdown, or after `seconds`."""
        if self._runtime.draining:
            return
        event = self.park(scope, since)
        counters = self._runtime.counters
        counters.parked_queries += 1
        try:
            await self._wait_set(event, seconds)
        finally:
            counters.parked_queries -= 1
            self.unpark(scope, event)

    @abstractmethod
    async def _wait_set(self, event: E, seconds: float) -> None:
        """Return once `event` is set, or after `seconds` (on the loop's clock)."""
