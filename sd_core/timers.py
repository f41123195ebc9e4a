"""Every schedule the registry keeps: probes, expiry, removal after being unhealthy.

Each is a heap with lazy deletion: an entry that no longer matches its
instance (removed, heartbeat since, rescheduled, recovered) is skipped when it
surfaces, so nothing here scans the fleet. Apart from the state machine
because it is pure timing; what a due entry leads to (a probe, an expiry, a
pause instead) stays the registry's decision.
"""

from __future__ import annotations

import heapq
import itertools
import zlib
from collections.abc import Iterator

from .config import RegistryConfig
from .instance import Instance

_HASH_SPREAD = float(2**32)

_Heap = list[tuple[float, int, Instance]]


class Timers:
    """The three heaps, and when the next of their entries falls due."""

    __slots__ = ("_config", "_expiry", "_next_first_probe", "_probes", "_seq", "_unhealthy")

    def __init__(self, config: RegistryConfig) -> None:
        self._config = config
        self._probes: _Heap = []
        self._expiry: _Heap = []
        self._unhealthy: _Heap = []
        self._seq = itertools.count()
        self._next_first_probe = float("-inf")

    def _push(self, heap: _Heap, due: float, instance: Instance) -> None:
        heapq.heappush(heap, (due, next(self._seq), instance))

    def next_deadline(self, *, expiry_paused_until: float | None) -> float | None:
        """The earliest due entry; while expiry is paused, its re-check instead of expiry."""
        candidates = []
        if self._probes:
            candidates.append(self._probes[0][0])
        if not self._config.local_expiry:  # cluster mode: only probes are local
            return candidates[0] if candidates else None
        if expiry_paused_until is not None:
            candidates.append(expiry_paused_until)
        elif self._expiry:
            candidates.append(self._expiry[0][0])
        if self._unhealthy:
            candidates.append(self._unhealthy[0][0])
        return min(candidates) if candidates else None

    # ------------------------------------------------------------ probes

    def _probe_offset(self, instance: Instance) -> float:
        """Where in the interval this instance's probes fall, by a hash of its key.

        A deterministic offset (not a random one) keeps fake-clock tests exact
        while still spreading a burst of registrations evenly.
        """
        key = f"{instance.service_name}/{instance.instance_id}".encode()
        return zlib.crc32(key) / _HASH_SPREAD * self._config.health_check_interval

    def probe_first(self, instance: Instance, now: float) -> None:
        """Probe a new (or moved) instance at once, then move it to its phase.

        Waiting for its phase left a fresh deploy invisible to `healthy_only`
        readers for up to a whole interval (Consul, too, runs a new check at
        once). Only a burst is spread out: first probes get slots at most
        `first_probes_per_second` apart, so a storm of registrations cannot
        turn into a storm of probes; and none waits past its own phase, so a
        storm is never probed later than it was before this rule.
        """
        rate = self._config.first_probes_per_second
        slot = max(now, self._next_first_probe)
        phase = now + self._probe_offset(instance)
        if rate and slot < phase:
            self._next_first_probe = slot + 1.0 / rate
            instance.probe_rephase = True
        else:
            slot = phase
        instance.probe_due = slot
        self._push(self._probes, slot, instance)

    def no_probes(self, instance: Instance) -> None:
        """Stop probing an instance (its check became ttl): its heap entries turn stale."""
        instance.probe_due = -1.0
        self.first_passed(instance)

    # -------------------------------------------------- first-probe retries

    def start_retries(self, instance: Instance) -> None:
        """A new incarnation (registered, re-registered, moved, restored): until it
        passes a probe, failed probes are retried soon (`retry_first`)."""
        instance.retry_delay = self._config.first_probe_retry
        instance.retry_due = -1.0

    def first_passed(self, instance: Instance) -> None:
        """It passed a probe (or stopped being probed): no more retries."""
        instance.retry_delay = 0.0
        instance.retry_due = -1.0

    def retry_first(self, instance: Instance, now: float) -> None:
        """A probe of an instance that never passed one failed: probe again soon.

        A replica usually registers a moment before its port listens (a FastAPI
        lifespan, Flask's `with client.registered(): app.run()`), so its first
        probe fails; waiting for its slot in the interval left it invisible to
        healthy reads for up to an interval. Retries back off (1, 2, 4 ... s by
        default) and only fill the time before the next scheduled probe, which
        keeps its phase: a retry never delays it. Once the backoff reaches the
        interval, the scheduled probes are as frequent and retries end.
        """
        delay = instance.retry_delay
        due = now + delay
        if delay <= 0 or due >= instance.probe_due:
            return  # none wanted, or the scheduled probe comes first
        instance.retry_due = due
        self._push(self._probes, due, instance)
        following = delay * 2
        instance.retry_delay = following if following < self._config.health_check_interval else 0.0

    def probe_at_once(self, instance: Instance, now: float) -> None:
        """Probe now, then move to its phase (a restored instance's health is unknown)."""
        instance.probe_due = now
        instance.probe_rephase = True
        self._push(self._probes, now, instance)

    def probes_due(self, now: float) -> Iterator[tuple[Instance, bool]]:
        """Instances whose probe time came by `now`, each already rescheduled, and
        whether the probe is a first-probe retry (True) or a scheduled one."""
        heap = self._probes
        interval = self._config.health_check_interval
        while heap and heap[0][0] <= now:
            due, _, instance = heapq.heappop(heap)
            if instance.removed:
                continue
            if due == instance.retry_due:
                instance.retry_due = -1.0
                yield instance, True
                continue
            if due != instance.probe_due:
                continue  # a stale entry: rescheduled since
            instance.retry_due = -1.0  # the scheduled probe stands in for a pending retry
            following = due + interval
            if instance.probe_rephase:  # probed at once after a restore: now spread out
                instance.probe_rephase = False
                following = now + (self._probe_offset(instance) or interval)
            elif following <= now:  # the driver woke late: keep the phase, skip missed rounds
                following += interval * ((now - following) // interval + 1)
            instance.probe_due = following
            self._push(heap, following, instance)
            yield instance, False

    # ------------------------------------------------------------ expiry

    def expire_later(self, instance: Instance) -> None:
        """(Re)schedule expiry a TTL after the instance's lease started (its last heartbeat)."""
        self._push(self._expiry, instance.lease_from + self._config.registration_ttl, instance)

    def expired(self, now: float) -> list[Instance]:
        """Instances with no heartbeat for a TTL by `now`, taken off the schedule."""
        heap = self._expiry
        ttl = self._config.registration_ttl
        due: list[Instance] = []
        while heap and heap[0][0] <= now:
            _, _, instance = heap[0]
            if instance.removed:
                heapq.heappop(heap)
                continue
            deadline = instance.lease_from + ttl
            if deadline > now:  # heartbeats moved it on since it was pushed
                heapq.heapreplace(heap, (deadline, next(self._seq), instance))
                continue
            heapq.heappop(heap)
            due.append(instance)
        return due

    # --------------------------------------------------------- unhealthy

    def turned_unhealthy(self, instance: Instance, now: float) -> None:
        """Schedule removal if it stays unhealthy (when that option is on)."""
        after = self._config.deregister_unhealthy_after
        if after > 0:
            self._push(self._unhealthy, now + after, instance)

    def unhealthy_too_long(self, now: float) -> Iterator[Instance]:
        """Instances unhealthy without a break since `deregister_unhealthy_after` ago."""
        heap = self._unhealthy
        after = self._config.deregister_unhealthy_after
        while heap and heap[0][0] <= now:
            deadline, _, instance = heapq.heappop(heap)
            since = instance.unhealthy_since
            if instance.removed or since is None or since + after != deadline:
                continue  # recovered, re-registered or already gone
            yield instance
