"""The core plus what every frontend wraps around it, minus any event loop.

A frontend hands a request's head to `Runtime.head` and, with its body, to
`Runtime.answer` (one synchronous core call each), waits when told to, and
writes the bytes back. The registry it serves is a `Node` (one process's, or a
cluster node), chosen once when it is built. The runtime is built
with its frontend's `LoopParts` (the event loop's probe driver and parked queries)
and routes the effects the core emits to them in `settle`, so both frontends
settle effects the same way and nothing is attached after construction.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from frontends.outbound.probing import Prober
from frontends.runtime.dns_server import DnsService
from frontends.runtime.logs import log_effect, logfmt
from frontends.runtime.metrics import Counters, Metrics
from frontends.runtime.node import Node, NodeResult, make_node
from frontends.runtime.pages import load_pages
from frontends.runtime.probers import make_prober
from frontends.runtime.settings import Settings
from frontends.runtime.state_file import claim, encode_snapshot, restore_from_file, write_atomically
from frontends.runtime.watch_streams import StreamHub
from sd_core import (
    INTERNAL_ERROR,
    BlockingWait,
    HttpRequest,
    HttpResponse,
    IndexRaised,
    ProbeResult,
    RequestError,
    RoutedRequest,
    RunProbe,
    __version__,
    openapi_bytes,
)
from sd_core.cluster import CaughtUp, catch_up_scope
from sd_core.events import Effect
from sd_core.http_api import PendingWrite, error_response
from sd_core.watch_stream import StreamEvents

log = logging.getLogger("sd.registry")


class ProbeDriver(Protocol):
    """Runs the probes the core hands out (each frontend's `probe_driver.ProbeDriver`)."""

    def submit(self, probe: RunProbe) -> None: ...
    def wake(self) -> None: ...
    async def run(self) -> None: ...


class Parked(Protocol):
    """Parked blocking queries (each loop's `parked.ParkedQueries`)."""

    wakes: int

    def wake(self, services: frozenset[str]) -> None: ...
    def wake_exactly(self, scopes: frozenset[str]) -> None: ...
    def release_all(self) -> None: ...
    async def wait(self, scope: str | None, seconds: float, since: int | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class LoopParts:
    """What one event loop's frontend supplies; the runtime builds both parts around itself."""

    frontend: str  # the name `/health` reports
    probe_driver: Callable[[Runtime, Prober], ProbeDriver]
    parked: Callable[[Runtime], Parked]


class Runtime:
    """Owns the registry, the counters, the prober, the loop's probe driver and parked queries."""

    def __init__(
        self,
        settings: Settings,
        parts: LoopParts,
        *,
        clock: Callable[[], float],
        prober: Prober | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`prober` defaults to the one the settings name; `clock` is the loop's monotonic clock."""
        self.settings = settings
        #: The snapshot file in use: None when off, or when another registry holds it.
        self.state_file = settings.state_file
        self.clock = clock
        self.counters = Counters()
        self._openapi: bytes | None = None
        pages = load_pages()
        self._page_paths = tuple(pages)
        self.node: Node = make_node(
            settings,
            frontend=parts.frontend,
            clock=clock,
            wall_clock=wall_clock,
            settle=self.settle,
            metrics=lambda: self.metrics.render(),
            openapi=self._openapi_bytes,
            pages=pages,
        )
        if not self.node.keeps_state_file:
            self.state_file = None
        self.registry = self.node.registry
        self.api = self.node.api
        #: The DNS interface (None: off), answering from the registry the HTTP reads use.
        self.dns = DnsService(settings.dns, self.registry) if settings.dns is not None else None
        self.metrics = Metrics(
            self.registry, self.counters, None if self.dns is None else self.dns.counters
        )
        self.counters.auth_failures = self.api.auth_failures
        self.driver_sleeps_until: float | None = None
        self._snapshot_index: int | None = None
        self._drain_snapshot_written = False
        self._write_lock = threading.Lock()
        self._exit_timer: threading.Timer | None = None
        self.prober = prober if prober is not None else make_prober(settings)
        self.parked = parts.parked(self)
        self.streams = StreamHub(
            StreamEvents(self.registry), max_pending_bytes=settings.watch_backlog_bytes
        )
        self.streams.hold = lambda since: self.node.hold_until(since, self.clock())
        self.driver = parts.probe_driver(self, self.prober)

    def _openapi_bytes(self) -> bytes:
        if self._openapi is None:
            self._openapi = openapi_bytes(__version__, self._page_paths)
        return self._openapi

    @property
    def draining(self) -> bool:
        return self.api.draining

    # ------------------------------------------------------------ requests

    def handle(self, request: HttpRequest, *, may_block: bool = True) -> NodeResult:
        """A whole request in one call: `head`, then `answer` (for callers holding all of it)."""
        return self.answer(self.head(*request[:5]), request.body, may_block=may_block)

    def head(
        self, method: str, path: str, query: bytes, authorization: str | None,
        content_type: str | None,
    ) -> RoutedRequest:  # fmt: skip
        """A request's head routed and authorised, once (`HttpApi.head`); a bug answers 500."""
        try:
            return self.api.head(method, path, query, authorization, content_type)
        except Exception:
            log.exception(logfmt("internal_error", method=method, path=path[:200]))
            return RoutedRequest(
                method, path, query, authorization, content_type, "unknown", (),
                None, None, INTERNAL_ERROR, None, self.settings.registry.max_body_bytes, False,
            )  # fmt: skip

    def answer(self, routed: RoutedRequest, body: bytes, *, may_block: bool = True) -> NodeResult:
        """One core call for a routed request and its body; a bug answers 500 without details.

        `PendingWrite` (cluster mode only): await `written` for the answer."""
        result: NodeResult
        try:
            result = self.node.answer(routed, body, self.clock(), may_block=may_block)
        except Exception:
            log.exception(logfmt("internal_error", method=routed.method, path=routed.path[:200]))
            result = INTERNAL_ERROR
        self.settle()
        if isinstance(result, HttpResponse):
            self.count(result)
        elif isinstance(result, PendingWrite):
            pass  # counted when answered
        elif self.counters.parked_queries >= self.settings.max_blocking_queries:
            result = self.api.overloaded(routed.method, routed.path, "blocking queries")
            self.count(result)
        return result

    async def written(self, pending: PendingWrite) -> HttpResponse:
        """The answer to a write parked in the store (cluster mode)."""
        response = await self.node.written(pending)
        self.count(response)
        return response

    async def run_cluster(self) -> None:
        """What the node runs beside the server, until cancelled: in cluster mode the
        store driver (then the node leaves); one process, no cluster: returns at once."""
        await self.node.run()

    def admit(self, method: str, path: str) -> HttpResponse | None:
        """Count a request in; past the in-flight limit, the 503 to send instead.

        Every admitted request must be matched by `leave()`.
        """
        if self.counters.in_flight >= self.settings.max_in_flight_requests:
            response = self.api.overloaded(method, path, "requests in flight")
            self.count(response)
            return response
        self.counters.in_flight += 1
        return None

    def leave(self) -> None:
        self.counters.in_flight -= 1

    def body_timeout(self, routed: RoutedRequest) -> HttpResponse:
        """408: the body did not arrive within `body_timeout` (routed as a 413 would be)."""
        seconds = self.settings.body_timeout
        error = RequestError(
            "request_timeout", 408, f"The request body did not arrive within {seconds:g} s"
        )
        response = error_response(error, self.api.too_large(routed).route)
        self.count(response)
        return response

    def too_large(self, routed: RoutedRequest) -> HttpResponse:
        response = self.api.too_large(routed)
        self.count(response)
        return response

    def count(self, response: HttpResponse) -> None:
        key = (response.route, response.status)
        counts = self.counters.requests
        counts[key] = counts.get(key, 0) + 1

    def jittered(self, wait: BlockingWait) -> float:
        """Consul's trick: up to wait/16 extra so watchers do not return in lockstep."""
        return wait.timeout + random.uniform(0, wait.timeout / 16)

    # ------------------------------------------------------------- effects

    def on_timer(self) -> float | None:
        """Run the core's timers; the deadline the driver sleeps until next (None: until woken)."""
        self.node.on_timer(self.clock())
        self.settle()
        self.driver_sleeps_until = deadline = self.node.next_deadline()
        return deadline

    def record_probe_result(self, result: ProbeResult) -> None:
        self.node.probe_result(result, self.clock())
        self.settle()
        # A failed first probe may bring a retry forward without any effect to settle.
        self._rearm()

    def settle(self) -> None:
        """Route what the core decided to the probe driver and parked queries; re-arm the driver."""
        node = self.node
        effects = node.drain_effects()
        if effects:
            for effect in effects:
                if isinstance(effect, RunProbe):
                    self.driver.submit(effect)
                elif isinstance(effect, IndexRaised):
                    self.parked.wake(effect.services)
                    self.streams.changed(effect.services)
                elif isinstance(effect, CaughtUp):
                    self.parked.wake_exactly(frozenset(map(catch_up_scope, effect.reached)))
                    self.streams.caught_up(effect.reached, effect.expired)
                elif not node.route(effect) and isinstance(effect, Effect):
                    log_effect(effect)
            self._rearm()

    def _rearm(self) -> None:
        """Wake the probe driver if the core's next deadline came before its wake-up."""
        deadline = self.node.next_deadline()
        wakes = self.driver_sleeps_until
        if deadline is not None and (wakes is None or deadline < wakes):
            self.driver.wake()

    def begin_drain(self, *, exit_after: float | None = None) -> None:
        """Refuse writes, answer every parked blocking query, and write the snapshot, at once.

        The snapshot is written now rather than only at the end, because the
        end may never come in order: a client that pipelines requests and never
        reads holds its connection past any grace period. `exit_after` (the
        servers pass `SHUTDOWN_GRACE_SECONDS`) arms a hard exit at that
        deadline, code 0, for whatever is still open then; tests that drive a
        runtime in-process leave it None.
        """
        self.api.draining = True
        self.parked.release_all()
        self.streams.close_all()
        log.info(logfmt("draining"))
        self.final_snapshot()
        self._drain_snapshot_written = True
        if exit_after is not None:
            self._exit_timer = threading.Timer(exit_after, _exit_at_deadline, (exit_after,))
            self._exit_timer.daemon = True
            self._exit_timer.start()

    def end_drain(self) -> None:
        """The server stopped by itself: no hard exit needed any more."""
        if self._exit_timer is not None:
            self._exit_timer.cancel()
            self._exit_timer = None

    # ----------------------------------------------------------- snapshots

    def restore_state(self) -> None:
        """Claim and load the snapshot file, if one is configured (once, before serving)."""
        path = self.state_file
        if path is None:
            return
        if not claim(path):
            self.state_file = None
            return
        log.info(logfmt("state_file", path=path))
        restore_from_file(path, self.registry, self.clock())
        self.settle()
        self._snapshot_index = self.registry.global_index

    def take_snapshot(self, *, force: bool = False) -> dict[str, Any] | None:
        """The registry's snapshot if anything changed since the last one was taken.

        Built on the loop (one core call); encoding and writing happen in a
        thread, which is safe because the snapshot shares nothing mutable.
        """
        if self.state_file is None:
            return None
        index = self.registry.global_index
        if not force and index == self._snapshot_index:
            return None
        self._snapshot_index = index
        return self.registry.snapshot()

    def final_snapshot(self) -> None:
        """At shutdown: one last snapshot, written before the process exits.

        Once `begin_drain` wrote one, only a registry changed since is written again.
        """
        snapshot = self.take_snapshot(force=not self._drain_snapshot_written)
        if snapshot is not None:
            self.write_snapshot(snapshot)

    def write_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Blocking: call from a worker thread (or at shutdown). Failures are logged."""
        path = self.state_file
        assert path is not None
        try:
            with self._write_lock:  # the drain's write may meet the snapshot thread's
                write_atomically(path, encode_snapshot(snapshot))
        except OSError as error:
            self._snapshot_index = None  # try again next round
            log.error(logfmt("snapshot_write_failed", path=path, error=error))


def _exit_at_deadline(grace: float) -> None:
    """The grace period is over and connections are still open: exit anyway, code 0.

    Runs in the timer's thread, so it fires even when the event loop is stuck
    behind a client that never reads. The snapshot was written when draining
    began; the kernel closes whatever sockets are left.
    """
    # Logging's stream handlers flush every record, so this line is out before the exit.
    log.warning(logfmt("shutdown_deadline", grace_seconds=grace, action="exiting now"))
    os._exit(0)
