"""The pacing pieces on their own, with fake clocks and plain events: no server, no sleeping.

- `AcceptErrorThrottle`: a flood of failed accepts ("too many open files")
  logs at most one line per interval, with the count, and no traceback.
- `ScopeEvents`: a change releases at most `batch` woken requests at once;
  each one that leaves lets the next one go, whatever way it leaves.
"""

from __future__ import annotations

import errno
import logging
import sys

import pytest

from frontends.runtime import scope_events
from frontends.runtime.process_setup import AcceptErrorThrottle, warn_if_weak_secret
from frontends.runtime.scope_events import ScopeEvents
from frontends.runtime.settings import load_settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _accept_error_record(code: int = errno.EMFILE) -> logging.LogRecord:
    error = OSError(code, "Too many open files")
    return logging.LogRecord(
        "asyncio", logging.ERROR, __file__, 1, "socket.accept() out of system resource", (),
        (OSError, error, None),
    )  # fmt: skip


def test_accept_errors_log_one_line_per_interval_with_a_count() -> None:
    clock = Clock()
    throttle = AcceptErrorThrottle(interval=10, clock=clock)
    passed = [
        record for record in (_accept_error_record() for _ in range(500)) if throttle.filter(record)
    ]
    assert len(passed) == 1
    assert passed[0].exc_info is None
    assert "event=accept_failed error=EMFILE count=1" in passed[0].getMessage()
    clock.now = 9.9
    assert not throttle.filter(_accept_error_record())
    clock.now = 10.0
    record = _accept_error_record(errno.ENFILE)
    assert throttle.filter(record)
    assert "error=ENFILE count=501" in record.getMessage()  # 499 + 1 + this one


def test_other_records_pass_the_throttle_unchanged() -> None:
    throttle = AcceptErrorThrottle(interval=10, clock=Clock())
    try:
        raise ValueError("a bug")
    except ValueError:
        info = sys.exc_info()
    record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "boom", (), info)
    for _ in range(3):
        assert throttle.filter(record)
    assert record.exc_info is info and record.getMessage() == "boom"
    refused = OSError(errno.ECONNREFUSED, "refused")
    other = logging.LogRecord(
        "asyncio", logging.ERROR, __file__, 1, "x", (), (OSError, refused, None)
    )
    assert throttle.filter(other) and throttle.filter(other)


class Event:
    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


def test_a_change_releases_watchers_a_batch_at_a_time() -> None:
    events: ScopeEvents[Event] = ScopeEvents(Event, batch=3)
    parked = [events.park("svc") for _ in range(10)]
    everything = events.park(None)
    other = events.park("other")
    events.wake(frozenset({"svc"}))
    assert [event.is_set() for event in parked] == [True] * 3 + [False] * 7
    assert not everything.is_set() and not other.is_set()
    events.unpark("svc", parked[0])  # answered: the next one goes
    assert parked[3].is_set() and not parked[4].is_set()
    events.unpark("svc", parked[5])  # timed out while queued: skipped, no slot used
    for event in parked[1:5]:
        events.unpark("svc", event)
    assert [event.is_set() for event in parked[6:]] == [True, True, True, False]
    assert not everything.is_set() and not other.is_set() and events.running == 3
    for event in parked[6:9]:
        events.unpark("svc", event)
    assert parked[9].is_set() and everything.is_set() and not other.is_set()
    events.unpark("svc", parked[9])
    events.unpark(None, everything)
    assert events.running == 0
    events.release_all()
    assert other.is_set()
    events.unpark("other", other)
    assert events.running == 0


def test_a_watcher_that_leaves_before_any_change_is_forgotten() -> None:
    events: ScopeEvents[Event] = ScopeEvents(Event, batch=2)
    gone = events.park("svc")
    events.unpark("svc", gone)
    kept = events.park("svc")
    events.wake(frozenset({"svc"}))
    assert kept.is_set() and not gone.is_set() and events.running == 1


def test_a_wake_between_the_decision_and_the_park_wakes_the_query_at_once() -> None:
    events: ScopeEvents[Event] = ScopeEvents(Event, batch=4)
    since = events.wakes
    events.wake(frozenset({"svc"}))  # nobody parked yet: it finds no one
    late = events.park("svc", since)
    assert late.is_set() and events.running == 1
    events.unpark("svc", late)
    assert events.running == 0


def test_without_a_wake_in_between_the_query_parks_as_before() -> None:
    events: ScopeEvents[Event] = ScopeEvents(Event, batch=4)
    waiting = events.park("svc", events.wakes)
    assert not waiting.is_set()
    events.wake_exactly(frozenset({"svc"}))
    assert waiting.is_set()
    events.unpark("svc", waiting)
    assert events.running == 0


def test_a_catch_up_wake_in_between_counts_too() -> None:
    events: ScopeEvents[Event] = ScopeEvents(Event, batch=4)
    since = events.wakes
    events.wake_exactly(frozenset({"svc"}))
    assert events.park("svc", since).is_set()


def test_a_wake_of_another_service_in_between_leaves_the_query_parked() -> None:
    """No early answer without a change (the soak counts one as an error)."""
    events: ScopeEvents[Event] = ScopeEvents(Event, batch=4)
    since = events.wakes
    events.wake(frozenset({"other"}))
    assert not events.park("svc", since).is_set()
    assert events.park(None, since).is_set()  # the global watchers: every change wakes them


def test_a_query_from_before_the_memory_was_cleared_is_woken_at_once() -> None:
    events: ScopeEvents[Event] = ScopeEvents(Event, batch=4)
    since = events.wakes
    events.wake(frozenset(f"s{n}" for n in range(scope_events.WOKEN_SCOPES + 1)))
    assert events.park("svc", since).is_set()  # cannot tell any more: answered, not lost
    assert not events.park("svc", events.wakes).is_set()


@pytest.mark.parametrize(("secret", "warned"), [("short", True), ("s" * 32, False)])
def test_weak_secret_warning(secret: str, warned: bool, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({"SERVICE_DISCOVERY_SECRET": secret})
    with caplog.at_level(logging.WARNING, logger="sd.registry"):
        assert warn_if_weak_secret(settings) is warned
    assert ("event=weak_secret" in caplog.text) is warned
    assert secret not in caplog.text
