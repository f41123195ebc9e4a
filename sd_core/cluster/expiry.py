"""How long each instance has been quiet, on this node's own monotonic clock.

Expiry is the registry's decision, not etcd's: an instance expires when no node saw a
sign of life from it (a registration, or a soft record with a new `heartbeat_at`) for a
registration TTL. Every node measures that from the moment its own view saw the sign
(its monotonic clock, so wall-clock skew between nodes does not matter), and restarts
the measurement for every instance when its link to the store becomes usable again
(at start, and after every outage): whatever happened while the store could not be
used, each instance then gets a full TTL. Only the guardian node acts on it (see
`guardian`); the other nodes keep measuring, so that any of them can take over.

Deadlines sit in a heap with lazy deletion: a sign of life pushes a new deadline and
leaves the old one in place, to be skipped when it comes up.
"""

from __future__ import annotations

import heapq

InstanceKey = tuple[str, str]


class QuietClock:
    """Per instance: when this node last saw it alive; which are quiet for a TTL."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._seen: dict[InstanceKey, float] = {}
        self._deadlines: list[tuple[float, InstanceKey]] = []
        #: The link to the store went down: `restart` is due when it is usable again.
        self.suspended = True

    def __len__(self) -> int:
        return len(self._seen)

    def touch(self, key: InstanceKey, now: float) -> None:
        """A sign of life of `key`, seen now."""
        self._seen[key] = now
        heapq.heappush(self._deadlines, (now + self.ttl, key))

    def forget(self, key: InstanceKey) -> None:
        self._seen.pop(key, None)

    def suspend(self) -> None:
        """The store cannot be used: nothing measured from here on counts until `restart`."""
        self.suspended = True

    def restart(self, now: float) -> None:
        """The store is usable again: every instance gets a full TTL from `now`."""
        self.suspended = False
        self._seen = dict.fromkeys(self._seen, now)
        self._deadlines = [(now + self.ttl, key) for key in self._seen]
        heapq.heapify(self._deadlines)

    def due(self, horizon: float) -> list[InstanceKey]:
        """Instances quiet for a TTL by `horizon` (they stay due until touched or forgotten)."""
        found: dict[InstanceKey, float] = {}
        heap = self._deadlines
        while heap and heap[0][0] <= horizon:
            deadline, key = heapq.heappop(heap)
            seen = self._seen.get(key)
            if seen is not None and seen + self.ttl == deadline:
                found[key] = deadline
        for key, deadline in found.items():
            heapq.heappush(heap, (deadline, key))
        return list(found)

    def next_due(self) -> float | None:
        """The soonest deadline still current (None: no instance)."""
        heap = self._deadlines
        while heap:
            deadline, key = heap[0]
            seen = self._seen.get(key)
            if seen is not None and seen + self.ttl == deadline:
                return deadline
            heapq.heappop(heap)
        return None
