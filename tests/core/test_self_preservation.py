"""SelfPreservation on its own: a fake fleet of heartbeat times, a fake clock, no registry.

Each test is a sequence of calls as the registry makes them (`pause_instead`
when expiries fall due, `expiry_paused` on each timer while paused) and the
effects it emits, so the rules can be checked without a fleet of instances.
"""

from __future__ import annotations

import pytest

from sd_core import RegistryConfig, SelfPreservationChanged
from sd_core.self_preservation import RECHECK_SECONDS, SelfPreservation

TTL = 100.0


class Fleet:
    """Last heartbeat times, and how often the preservation walked them."""

    def __init__(self, quiet: int, alive: int, now: float) -> None:
        # Quiet ones last spoke a full TTL ago; live ones just now.
        self.times = [now - TTL] * quiet + [now] * alive
        self.walks = 0

    def __call__(self) -> list[float]:
        self.walks += 1
        return self.times

    @property
    def count(self) -> int:
        return len(self.times)

    def heartbeat_all(self, now: float) -> None:
        self.times = [now] * len(self.times)


def _preservation(
    threshold: float = 0.5, max_seconds: float = 900.0
) -> tuple[SelfPreservation, list[SelfPreservationChanged]]:
    config = RegistryConfig(
        registration_ttl=TTL,
        self_preservation_threshold=threshold,
        self_preservation_max_seconds=max_seconds,
    )
    emitted: list[SelfPreservationChanged] = []
    return SelfPreservation(config, emitted.append), emitted


def test_a_quiet_majority_pauses_expiry_and_says_why() -> None:
    preservation, emitted = _preservation()
    fleet = Fleet(quiet=15, alive=5, now=1000.0)
    assert preservation.pause_instead(1000.0, fleet.count, fleet)
    assert preservation.active
    assert preservation.next_check == 1000.0 + RECHECK_SECONDS
    reason = "75% of 20 instances stopped heartbeating at once (threshold 50%); expiry paused"
    assert preservation.reason == reason
    assert emitted == [SelfPreservationChanged(True, reason)]


@pytest.mark.parametrize(
    ("quiet", "alive", "pauses"),
    [
        (10, 10, False),  # exactly the threshold is not above it
        (11, 9, True),
        (9, 0, False),  # fewer than the minimum of 10 instances: never
        (10, 0, True),
    ],
)
def test_the_threshold_and_the_minimum_decide(quiet: int, alive: int, pauses: bool) -> None:
    preservation, emitted = _preservation()
    fleet = Fleet(quiet, alive, now=1000.0)
    assert preservation.pause_instead(1000.0, fleet.count, fleet) is pauses
    assert preservation.active is pauses
    assert len(emitted) == int(pauses)


def test_a_threshold_of_zero_turns_it_off_without_walking_the_fleet() -> None:
    preservation, emitted = _preservation(threshold=0.0)
    fleet = Fleet(quiet=20, alive=0, now=1000.0)
    assert not preservation.pause_instead(1000.0, fleet.count, fleet)
    assert (fleet.walks, emitted) == (0, [])


def test_while_paused_it_rechecks_once_a_second_and_ends_when_heartbeats_return() -> None:
    preservation, emitted = _preservation()
    fleet = Fleet(quiet=15, alive=5, now=1000.0)
    assert preservation.pause_instead(1000.0, fleet.count, fleet)
    walks = fleet.walks
    assert preservation.expiry_paused(1000.5, fleet.count, fleet)
    assert fleet.walks == walks  # before the re-check: no walk
    assert preservation.expiry_paused(1001.0, fleet.count, fleet)  # still quiet
    assert preservation.next_check == 1002.0
    fleet.heartbeat_all(1001.5)
    assert not preservation.expiry_paused(1002.0, fleet.count, fleet)
    assert not preservation.active and preservation.reason is None
    assert preservation.next_check is None
    assert emitted[-1] == SelfPreservationChanged(False, "heartbeats came back")


def test_at_the_maximum_it_ends_and_stays_off_for_a_ttl() -> None:
    preservation, emitted = _preservation(max_seconds=30.0)
    fleet = Fleet(quiet=15, alive=5, now=1000.0)
    assert preservation.pause_instead(1000.0, fleet.count, fleet)
    assert preservation.expiry_paused(1029.0, fleet.count, fleet)
    assert not preservation.expiry_paused(1030.0, fleet.count, fleet)
    assert emitted[-1] == SelfPreservationChanged(False, "maximum of 30s reached")
    # The same quiet fleet cannot pause expiry again until a TTL has passed.
    assert not preservation.pause_instead(1030.0 + TTL - 1, fleet.count, fleet)
    assert preservation.pause_instead(1030.0 + TTL, fleet.count, fleet)
    assert [e.active for e in emitted] == [True, False, True]


def test_when_not_paused_expiry_is_never_held() -> None:
    preservation, emitted = _preservation()
    fleet = Fleet(quiet=20, alive=0, now=1000.0)
    assert not preservation.expiry_paused(1000.0, fleet.count, fleet)
    assert (fleet.walks, emitted) == (0, [])
