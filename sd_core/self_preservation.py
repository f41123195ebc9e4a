"""Self-preservation: pause expiry when too much of the fleet goes quiet at once.

When more than `threshold` of at least `min_instances` instances have sent no
heartbeat for half a TTL, the registry's own network is the likelier fault,
so expiring them all would be wrong. This module holds that decision and its
state (when it started, why, when to look again, and the cool-down after the
maximum), apart from the state machine that asks it, so the rules can be read
and tested on their own with a fake fleet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .config import RegistryConfig
from .events import SelfPreservationChanged

# How often, while self-preservation holds, the core re-checks whether
# heartbeats came back (monotonic seconds).
RECHECK_SECONDS = 1.0

# Every instance's last heartbeat time; called only when a decision needs it,
# since it walks the whole fleet.
Heartbeats = Callable[[], Iterable[float]]


class SelfPreservation:
    """Whether expiry is paused; it tells `emit` each time that changes."""

    __slots__ = ("_blocked_until", "_config", "_emit", "_next_check", "_since", "active", "reason")

    def __init__(
        self, config: RegistryConfig, emit: Callable[[SelfPreservationChanged], None]
    ) -> None:
        self._config = config
        self._emit = emit
        self.active = False
        self.reason: str | None = None
        self._since = 0.0
        self._next_check = 0.0
        # After a pause that hit the maximum, no new one for a TTL: the
        # instances that stayed quiet that long are gone for real.
        self._blocked_until = float("-inf")

    @property
    def next_check(self) -> float | None:
        """When the registry must call `expiry_paused` again (None: not paused)."""
        return self._next_check if self.active else None

    def expiry_paused(self, now: float, count: int, heartbeats: Heartbeats) -> bool:
        """Whether expiry must still wait; may end the pause (at most one check a second)."""
        if not self.active:
            return False
        if now < self._next_check:
            return True
        config = self._config
        share = self._silent_share(now, count, heartbeats)
        if share is None or share <= config.self_preservation_threshold:
            self._leave("heartbeats came back")
        elif now >= self._since + config.self_preservation_max_seconds:
            self._blocked_until = now + config.registration_ttl
            self._leave(f"maximum of {config.self_preservation_max_seconds:g}s reached")
        else:
            self._next_check = now + RECHECK_SECONDS
            return True
        return False

    def pause_instead(self, now: float, count: int, heartbeats: Heartbeats) -> bool:
        """Expiries are due: True when they must wait instead (the pause starts now)."""
        config = self._config
        if config.self_preservation_threshold <= 0 or now < self._blocked_until:
            return False
        share = self._silent_share(now, count, heartbeats)
        if share is None or share <= config.self_preservation_threshold:
            return False
        self.active = True
        self._since = now
        self._next_check = now + RECHECK_SECONDS
        self.reason = (
            f"{share:.0%} of {count} instances stopped heartbeating at once "
            f"(threshold {config.self_preservation_threshold:.0%}); expiry paused"
        )
        self._emit(SelfPreservationChanged(True, self.reason))
        return True

    def follow(self, active: bool, reason: str | None) -> None:
        """Cluster mode: show the mode as the deciding node (the guardian) stored it;
        this state then never decides (the node's registry expires nothing itself)."""
        if active == self.active and (not active or reason == self.reason):
            return
        self.active = active
        self.reason = reason if active else None
        self._emit(SelfPreservationChanged(active, reason or "the guardian node ended it"))

    def _leave(self, why: str) -> None:
        self.active = False
        self.reason = None
        self._emit(SelfPreservationChanged(False, why))

    def _silent_share(self, now: float, count: int, heartbeats: Heartbeats) -> float | None:
        """Share of instances with no heartbeat for half a TTL; None below the minimum."""
        if count < self._config.self_preservation_min_instances or count == 0:
            return None
        cutoff = now - self._config.registration_ttl / 2
        silent = sum(1 for last in heartbeats() if last <= cutoff)
        return silent / count
