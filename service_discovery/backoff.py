"""Retry pacing and quiet failure logging for the SDK's background loops.

A loop that talks to a registry which is down must neither hammer it (every
client of a fleet retrying in lockstep, or in a tight loop) nor flood the
service's logs. :class:`Backoff` gives capped exponential delays with jitter;
:class:`FailureLog` turns a stream of identical failures into one warning per
period.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Backoff",
]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with "equal jitter".

    The n-th consecutive failure (n >= 1) waits a random time in
    ``[d / 2, d]`` where ``d = min(cap, initial * multiplier ** (n - 1))``.
    Half the delay is fixed so the loop can never spin (the shortest wait is
    ``initial / 2``), the other half is random so a fleet that lost the registry
    at the same moment does not come back in lockstep.
    """

    initial: float = 1.0
    maximum: float = 30.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.initial <= 0:
            raise ValueError("Backoff.initial must be positive (a zero delay is a tight loop)")
        if self.maximum < self.initial:
            raise ValueError("Backoff.maximum must be at least Backoff.initial")
        if self.multiplier < 1:
            raise ValueError("Backoff.multiplier must be at least 1")

    def ceiling(self, failures: int, cap: float | None = None) -> float:
        """The upper bound ``d`` of the delay after ``failures`` consecutive failures."""
        limit = self.maximum if cap is None else max(min(self.maximum, cap), self.initial)
        exponent = max(failures - 1, 0)
        # Cap the exponent too, so a loop that has failed for days cannot overflow.
        return float(min(limit, self.initial * self.multiplier ** min(exponent, 64)))

    def delay(self, failures: int, rng: random.Random, cap: float | None = None) -> float:
        """A jittered delay for the given number of consecutive failures."""
        ceiling = self.ceiling(failures, cap)
        return rng.uniform(ceiling / 2, ceiling)


class FailureLog:
    """Logs the first failure of a streak at WARNING, then one WARNING per period.

    Failures in between go to DEBUG; the end of a streak is logged at INFO with
    how many attempts it took. ``clock`` is injectable so a fake clock can
    drive it in tests.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        clock: Callable[[], float],
        period: float = 60.0,
    ) -> None:
        self._logger = logger
        self._what = what
        self._clock = clock
        self._period = period
        self._failures = 0
        self._first_failure_at = 0.0
        self._last_warning_at = 0.0

    @property
    def failures(self) -> int:
        """Consecutive failures in the current streak (0 when the last attempt worked)."""
        return self._failures

    def failure(self, error: BaseException) -> None:
        """Record one failed attempt and log it at the level the streak calls for."""
        now = self._clock()
        self._failures += 1
        if self._failures == 1:
            self._first_failure_at = now
            self._last_warning_at = now
            self._logger.warning("%s failed: %s", self._what, _describe(error))
        elif now - self._last_warning_at >= self._period:
            self._last_warning_at = now
            self._logger.warning(
                "%s still failing after %d attempts over %.0f s: %s",
                self._what,
                self._failures,
                now - self._first_failure_at,
                _describe(error),
            )
        else:
            self._logger.debug(
                "%s failed (attempt %d): %s", self._what, self._failures, _describe(error)
            )

    def success(self) -> None:
        """Record a working attempt; ends (and reports the end of) a failure streak."""
        if self._failures:
            self._logger.info(
                "%s recovered after %d failed attempts over %.1f s",
                self._what,
                self._failures,
                self._clock() - self._first_failure_at,
            )
        self._failures = 0


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
