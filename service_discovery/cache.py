"""Short-lived discovery cache with a stale-if-error fallback.

Two jobs: spare the registry a request for every outgoing call a service makes
(answers are reused for ``ttl`` seconds), and keep a service working while the
registry is unreachable (the last good answer is served, marked ``stale``).
After a failed refresh the stale answer is itself reused for ``ttl`` seconds, so
an unreachable registry costs one timed-out request per ``ttl`` and service,
not one per call.

An empty answer is never cached: on a fresh deploy the first instance of a
service registers a moment after its callers start, and an empty list reused
for ``ttl`` seconds turns that moment into seconds of "no healthy instance".
The next call asks the registry again; a registry that is down at that point
has nothing to fall back to, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import ServiceInstanceList

__all__ = ["CacheKey", "DiscoveryCache"]

CacheKey = tuple[str, bool]
"""``(service_name, healthy_only)``: the two queries differ, so they are cached apart."""


@dataclass(slots=True)
class _Entry:
    instances: ServiceInstanceList
    fetched_at: float  # when the registry produced this answer
    checked_at: float  # when we last asked (successfully or not)
    stale: bool


class DiscoveryCache:
    """Per-service answers, keyed by :data:`CacheKey`, timed by the caller's clock.

    ``max_stale`` bounds how old an answer may be and still be served when the
    registry is down (``None``: no bound; an old list is usually better than no
    list, and ``stale`` tells the caller it is old).
    """

    def __init__(self, ttl: float, max_stale: float | None = None) -> None:
        if ttl < 0:
            raise ValueError("cache ttl must not be negative")
        self.ttl = ttl
        self.max_stale = max_stale
        self._entries: dict[CacheKey, _Entry] = {}

    def fresh(self, key: CacheKey, now: float) -> ServiceInstanceList | None:
        """The cached answer if it was checked within ``ttl``, else ``None``.

        Returns a new list object every time; a stale entry stays marked stale.
        """
        entry = self._entries.get(key)
        if entry is None or now - entry.checked_at >= self.ttl:
            return None
        return entry.instances.copy_with(stale=entry.stale, age_seconds=now - entry.fetched_at)

    def store(self, key: CacheKey, instances: ServiceInstanceList, now: float) -> None:
        """Remember a fresh answer from the registry (an empty one is forgotten instead)."""
        if not instances:
            # Also drops an older non-empty answer: the registry just said
            # there is nothing, so it must not come back as a stale fallback.
            self._entries.pop(key, None)
            return
        self._entries[key] = _Entry(
            instances=instances.copy_with(stale=False, age_seconds=0.0),
            fetched_at=now,
            checked_at=now,
            stale=False,
        )

    def fallback(self, key: CacheKey, now: float) -> ServiceInstanceList | None:
        """After a failed refresh: the last good answer marked stale, or ``None``.

        The entry is marked as checked now, so :meth:`fresh` serves it for the
        next ``ttl`` seconds without another attempt.
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = now - entry.fetched_at
        if self.max_stale is not None and age > self.max_stale:
            del self._entries[key]
            return None
        entry.checked_at = now
        entry.stale = True
        return entry.instances.copy_with(stale=True, age_seconds=age)

    def invalidate(self, service_name: str | None = None) -> None:
        """Forget one service's answers, or everything."""
        if service_name is None:
            self._entries.clear()
            return
        for key in [k for k in self._entries if k[0] == service_name]:
            del self._entries[key]
