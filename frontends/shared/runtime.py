"""The core plus what every frontend wraps around it, minus any event loop.

A frontend turns a request into `Runtime.handle(...)` (one synchronous core
call), waits when told to, and writes the bytes back. Effects the core emits
are routed here to the frontend's probe driver and watchers through three
hooks, so both frontends settle effects the same way.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from sd_core import (
    INTERNAL_ERROR,
    BlockingWait,
    HttpApi,
    HttpRequest,
    HttpResponse,
    IndexRaised,
    ProbeResult,
    Registry,
    RunProbe,
    __version__,
    openapi_bytes,
)

from .logs import log_effect, logfmt
from .metrics import Metrics
from .pages import load_pages
from .settings import Settings
from .state_file import encode_snapshot, restore_from_file, write_atomically

log = logging.getLogger("sd.registry")

# How much of an oversized body is read (and dropped) before answering 413.
# Closing a connection with unread data in it makes TCP send a reset, which
# can destroy the 413 before the client reads it; past this, we close anyway.
OVERSIZE_DRAIN_BYTES = 1024 * 1024


def _unset_probe(probe: RunProbe) -> None:
    raise RuntimeError("no probe driver is attached")


def _ignore_index(services: frozenset[str]) -> None:
    return None


class Runtime:
    """Owns the registry; frontends attach `submit_probe`, `wake_watchers`, `wake_driver`."""

    def __init__(
        self,
        settings: Settings,
        *,
        frontend: str,
        clock: Callable[[], float],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        now = clock()
        self.registry = Registry(settings.registry, now=now, wall_offset=wall_clock() - now)
        self.metrics = Metrics(self)
        self._openapi: bytes | None = None
        pages = load_pages()
        self._page_paths = tuple(pages)
        self.api = HttpApi(
            self.registry,
            secret=settings.secret,
            read_token=settings.read_token,
            frontend=frontend,
            version=__version__,
            metrics=self.metrics.render,
            openapi=self._openapi_bytes,
            pages=pages,
        )
        self.request_counts: dict[tuple[str, int], int] = {}
        self.parked_queries = 0
        self.in_flight = 0
        self.submit_probe: Callable[[RunProbe], None] = _unset_probe
        self.wake_watchers: Callable[[frozenset[str]], None] = _ignore_index
        self.wake_driver: Callable[[], None] = lambda: None
        self.driver_sleeps_until: float | None = None
        self._snapshot_index: int | None = None

    def _openapi_bytes(self) -> bytes:
        if self._openapi is None:
            self._openapi = openapi_bytes(__version__, self._page_paths)
        return self._openapi

    @property
    def draining(self) -> bool:
        return self.api.draining

    # ------------------------------------------------------------ requests

    def handle(
        self, request: HttpRequest, *, may_block: bool = True
    ) -> HttpResponse | BlockingWait:
        """One core call for one request; a bug answers 500 without details."""
        try:
            result = self.api.handle(request, self.clock(), may_block=may_block)
        except Exception:
            log.exception(logfmt("internal_error", method=request.method, path=request.path[:200]))
            result = INTERNAL_ERROR
        self.settle()
        if isinstance(result, HttpResponse):
            self.count(result)
        elif self.parked_queries >= self.settings.max_blocking_queries:
            result = self.api.overloaded(request.method, request.path, "blocking queries")
            self.count(result)
        return result

    def admit(self, method: str, path: str) -> HttpResponse | None:
        """Count a request in; past the in-flight limit, the 503 to send instead.

        Every admitted request must be matched by `leave()`.
        """
        if self.in_flight >= self.settings.max_in_flight_requests:
            response = self.api.overloaded(method, path, "requests in flight")
            self.count(response)
            return response
        self.in_flight += 1
        return None

    def leave(self) -> None:
        self.in_flight -= 1

    def too_large(self, method: str, path: str) -> HttpResponse:
        response = self.api.payload_too_large(method, path)
        self.count(response)
        return response

    def count(self, response: HttpResponse) -> None:
        key = (response.route, response.status)
        counts = self.request_counts
        counts[key] = counts.get(key, 0) + 1

    def jittered(self, wait: BlockingWait) -> float:
        """Consul's trick: up to wait/16 extra so watchers do not return in lockstep."""
        return wait.timeout + random.uniform(0, wait.timeout / 16)

    # ------------------------------------------------------------- effects

    def on_timer(self) -> None:
        self.registry.on_timer(self.clock())
        self.settle()

    def record_probe_result(self, result: ProbeResult) -> None:
        self.registry.record_probe(result, self.clock())
        self.settle()

    def settle(self) -> None:
        """Route everything the core decided to the hooks, then re-arm the driver."""
        effects = self.registry.drain_effects()
        if effects:
            for effect in effects:
                if isinstance(effect, RunProbe):
                    self.submit_probe(effect)
                elif isinstance(effect, IndexRaised):
                    self.wake_watchers(effect.services)
                else:
                    log_effect(effect)
            deadline = self.registry.next_deadline()
            wakes = self.driver_sleeps_until
            if deadline is not None and (wakes is None or deadline < wakes):
                self.wake_driver()

    def begin_drain(self) -> None:
        """Refuse writes from now on (the server also releases parked queries)."""
        self.api.draining = True
        log.info(logfmt("draining"))

    # ----------------------------------------------------------- snapshots

    def restore_state(self) -> None:
        """Load the snapshot file, if one is configured (once, before serving)."""
        path = self.settings.state_file
        if path is None:
            return
        restore_from_file(path, self.registry, self.clock())
        self.settle()
        self._snapshot_index = self.registry.global_index

    def take_snapshot(self, *, force: bool = False) -> dict[str, Any] | None:
        """The registry's snapshot if anything changed since the last one was taken.

        Built on the loop (one core call); encoding and writing happen in a
        thread, which is safe because the snapshot shares nothing mutable.
        """
        if self.settings.state_file is None:
            return None
        index = self.registry.global_index
        if not force and index == self._snapshot_index:
            return None
        self._snapshot_index = index
        return self.registry.snapshot()

    def final_snapshot(self) -> None:
        """At shutdown: one last snapshot, written before the process exits."""
        snapshot = self.take_snapshot(force=True)
        if snapshot is not None:
            self.write_snapshot(snapshot)

    def write_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Blocking: call from a worker thread (or at shutdown). Failures are logged."""
        path = self.settings.state_file
        assert path is not None
        try:
            write_atomically(path, encode_snapshot(snapshot))
        except OSError as error:
            self._snapshot_index = None  # try again next round
            log.error(logfmt("snapshot_write_failed", path=path, error=error))
