"""What a server process sets up about itself before serving, on either loop.

- The open-file limit: every connection costs a file descriptor, and many
  systems start processes with a soft limit of 1,024 under a hard limit a
  hundred times that. Raising the soft limit to the hard one is free, and
  turns "too many open files" under a connection flood from likely into rare.
  Both values are logged, so an operator sees what the process got.
- A weak secret is warned about, loudly, at startup (not refused: a
  development setup may use a short one on purpose).
- The garbage collector is set for thousands of long-lived connections
  (`collector.py`).
- When accepting fails for want of descriptors or memory, both asyncio and
  trio log a traceback *per failed accept*, many times a second for as long
  as the flood lasts (megabytes of log). `AcceptErrorThrottle` turns that
  into at most one line per interval, with a count.
"""

from __future__ import annotations

import errno
import logging
import resource
import time
from collections.abc import Callable

from frontends.runtime.collector import tune_collector
from frontends.runtime.logs import logfmt
from frontends.runtime.settings import DEFAULT_ERROR_LOG_INTERVAL, Settings

log = logging.getLogger("sd.registry")

#: Shorter bearer secrets are warned about at startup (32 characters of a
#: random token are about 190 bits; a short human-chosen one can be guessed).
MIN_SECRET_LENGTH = 32

#: Where the event loops log a failed accept: asyncio's (and uvloop's)
#: exception handler, and trio's `serve_listeners`.
ACCEPT_ERROR_LOGGERS = ("asyncio", "trio.serve_listeners")

_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def prepare_process(settings: Settings) -> None:
    """Raise the file limit, warn about a weak secret, throttle accept-error logs, tune the GC."""
    raise_open_file_limit()
    warn_if_weak_secret(settings)
    throttle = AcceptErrorThrottle(settings.error_log_interval)
    for name in ACCEPT_ERROR_LOGGERS:
        logging.getLogger(name).addFilter(throttle)
    tune_collector(settings.gc_young_threshold)


def raise_open_file_limit() -> tuple[int, int]:
    """Set RLIMIT_NOFILE's soft limit to its hard limit; returns (soft, hard) now in force."""
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = before
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            log.warning(logfmt("open_file_limit_not_raised", error=error))
    log.info(
        logfmt("open_file_limit", soft=_limit(soft), hard=_limit(hard), soft_before=_limit(before))
    )
    return soft, hard


def _limit(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def warn_if_weak_secret(settings: Settings) -> bool:
    """Log a warning when the configured secret is short; True if it did."""
    if settings.secret_generated or len(settings.secret) >= MIN_SECRET_LENGTH:
        return False
    log.warning(
        logfmt(
            "weak_secret",
            variable="SERVICE_DISCOVERY_SECRET",
            length=len(settings.secret),
            advice=f"use a random token of at least {MIN_SECRET_LENGTH} characters, "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    )
    return True


class Throttle:
    """At most one occurrence of something let through per `interval`; the rest counted.

    What floods a log (failed accepts, malformed requests) is worth one line
    per interval saying how many there were, not one line each.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: float | None = None
        self._count = 0

    def admit(self) -> tuple[int, float] | None:
        """None: stay quiet this time. Else (occurrences since the last admitted one, this
        one included; seconds they cover: the interval, 0 for the first)."""
        self._count += 1
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return None
        admitted = (self._count, self.interval if self._last is not None else 0)
        self._last = now
        self._count = 0
        return admitted


class AcceptErrorThrottle(logging.Filter):
    """Lets one accept-error record through per interval, rewritten as one line with a count.

    An accept error is a record whose exception is an OSError for lack of
    descriptors or memory; every other record passes unchanged.
    """

    def __init__(
        self,
        interval: float = DEFAULT_ERROR_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._throttle = Throttle(interval, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, OSError) or error.errno not in _CAPACITY_ERRNOS:
            return True
        admitted = self._throttle.admit()
        if admitted is None:
            return False
        count, since = admitted
        record.msg = logfmt(
            "accept_failed",
            error=errno.errorcode.get(error.errno or 0, str(error.errno)),
            count=count,
            since_seconds=since,
            advice="raise the open-file limit (ulimit -n) or shed connections",
        )
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        return True
