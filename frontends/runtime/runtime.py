"""The core plus what every frontend wraps around it, minus any event loop.

A frontend turns a request into `Runtime.handle(...)` (one synchronous core
call), waits when told to, and writes the bytes back. The runtime is built
with its frontend's `LoopParts` (the event loop's probe driver and watchers)
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

from frontends.outbound.cluster_member import CLUSTER_EFFECTS, ClusterMember
from frontends.outbound.probing import Prober, make_prober
from frontends.runtime.logs import log_effect, logfmt
from frontends.runtime.metrics import Counters, Metrics
from frontends.runtime.pages import load_pages
from frontends.runtime.settings import Settings
from frontends.runtime.state_file import claim, encode_snapshot, restore_from_file, write_atomically
from frontends.runtime.watch_streams import StreamHub
from sd_core import (
    INTERNAL_ERROR,
    BlockingWait,
    HttpApi,
    HttpRequest,
    HttpResponse,
    IndexRaised,
    ProbeResult,
    Registry,
    RequestError,
    RunProbe,
    __version__,
    openapi_bytes,
)
from sd_core.cluster import CaughtUp, catch_up_scope
from sd_core.http_api import PendingWrite, error_response
from sd_core.watch_stream import StreamEvents

log = logging.getLogger("sd.registry")


class ProbeDriver(Protocol):
    """Runs the probes the core hands out (each frontend's `probe_driver.ProbeDriver`)."""

    def submit(self, probe: RunProbe) -> None: ...
    def wake(self) -> None: ...
    async def run(self) -> None: ...


class Watchers(Protocol):
    """Parked blocking queries (each frontend's `watchers.Watchers`)."""

    def wake(self, services: frozenset[str]) -> None: ...
    def wake_exactly(self, scopes: frozenset[str]) -> None: ...
    def release_all(self) -> None: ...
    async def wait(self, scope: str | None, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class LoopParts:
    """What one event loop's frontend supplies; the runtime builds both parts around itself."""

    frontend: str  # the name `/health` reports
    probe_driver: Callable[[Runtime, Prober], ProbeDriver]
    watchers: Callable[[Runtime], Watchers]


class Runtime:
    """Owns the registry, the counters, the prober, and the loop's probe driver and watchers."""

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
        now = clock()
        self.counters = Counters()
        self._openapi: bytes | None = None
        pages = load_pages()
        self._page_paths = tuple(pages)
        # Cluster mode: the node owns the registry and its HTTP mapping (see cluster_member).
        self.cluster: ClusterMember | None = None
        if settings.cluster is not None:
            self.cluster = ClusterMember(
                settings.cluster,
                settings.registry,
                frontend=parts.frontend,
                clock=clock,
                # Read together (not against `now`, taken before the pages were
                # loaded): every node must stamp the same wall time for one instant.
                wall_offset=wall_clock() - clock(),
                settle=self.settle,
                secret=settings.secret,
                read_token=settings.read_token,
                metrics=lambda: self.metrics.render(),
                openapi=self._openapi_bytes,
                pages=pages,
            )
            self.registry = self.cluster.node.registry
            self.api = self.cluster.node.api
            self.metrics = Metrics(self.registry, self.counters)
        else:
            self.registry = Registry(settings.registry, now=now, wall_offset=wall_clock() - now)
            self.metrics = Metrics(self.registry, self.counters)
            self.api = HttpApi(
                self.registry,
                secret=settings.secret,
                read_token=settings.read_token,
                frontend=parts.frontend,
                version=__version__,
                metrics=self.metrics.render,
                openapi=self._openapi_bytes,
                pages=pages,
            )
        self.counters.auth_failures = self.api.auth_failures
        self.driver_sleeps_until: float | None = None
        self._snapshot_index: int | None = None
        self._drain_snapshot_written = False
        self._write_lock = threading.Lock()
        self._exit_timer: threading.Timer | None = None
        self.prober = prober if prober is not None else make_prober(settings)
        self.watchers = parts.watchers(self)
        self.streams = StreamHub(StreamEvents(self.registry))
        if self.cluster is not None:
            node = self.cluster.node
            self.streams.hold = lambda since: node.hold_until(since, self.clock())
        self.driver = parts.probe_driver(self, self.prober)

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
    ) -> HttpResponse | BlockingWait | PendingWrite:
        """One core call for one request; a bug answers 500 without details.

        `PendingWrite` (cluster mode only): await `written` for the answer."""
        result: HttpResponse | BlockingWait | PendingWrite
        try:
            if self.cluster is not None:
                result = self.cluster.node.handle(request, self.clock(), may_block=may_block)
            else:
                result = self.api.handle(request, self.clock(), may_block=may_block)
        except Exception:
            log.exception(logfmt("internal_error", method=request.method, path=request.path[:200]))
            result = INTERNAL_ERROR
        self.settle()
        if isinstance(result, HttpResponse):
            self.count(result)
        elif isinstance(result, PendingWrite):
            pass  # counted when answered
        elif self.counters.parked_queries >= self.settings.max_blocking_queries:
            result = self.api.overloaded(request.method, request.path, "blocking queries")
            self.count(result)
        return result

    async def written(self, pending: PendingWrite) -> HttpResponse:
        """The answer to a write parked in the store (cluster mode)."""
        assert self.cluster is not None
        response = await self.cluster.written(pending)
        self.count(response)
        return response

    async def run_cluster(self) -> None:
        """Cluster mode: the store driver, until cancelled (then the node leaves). One
        process, no cluster: returns at once."""
        if self.cluster is not None:
            await self.cluster.run()

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

    def refuse_unauthorized(
        self, method: str, path: str, authorization: str | None
    ) -> HttpResponse | None:
        """The 401/403 decided from the headers alone (counted), or None to go on."""
        response = self.api.refuse_unauthorized(method, path, authorization)
        if response is not None:
            self.count(response)
        return response

    def body_timeout(self, method: str, path: str) -> HttpResponse:
        """408: the body did not arrive within `body_timeout` (routed as a 413 would be)."""
        seconds = self.settings.body_timeout
        error = RequestError(
            "request_timeout", 408, f"The request body did not arrive within {seconds:g} s"
        )
        response = error_response(error, self.api.payload_too_large(method, path).route)
        self.count(response)
        return response

    def too_large(self, method: str, path: str) -> HttpResponse:
        response = self.api.payload_too_large(method, path)
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
        if self.cluster is not None:
            self.cluster.node.on_timer(self.clock())
        else:
            self.registry.on_timer(self.clock())
        self.settle()
        self.driver_sleeps_until = deadline = self._next_deadline()
        return deadline

    def _next_deadline(self) -> float | None:
        if self.cluster is not None:
            return self.cluster.node.next_deadline()
        return self.registry.next_deadline()

    def record_probe_result(self, result: ProbeResult) -> None:
        if self.cluster is not None:
            self.cluster.node.probe_result(result, self.clock())
        else:
            self.registry.record_probe(result, self.clock())
        self.settle()
        # A failed first probe may bring a retry forward without any effect to settle.
        self._rearm()

    def settle(self) -> None:
        """Route everything the core decided to the driver and watchers, then re-arm the driver."""
        cluster = self.cluster
        effects = self.registry.drain_effects() if cluster is None else cluster.node.drain_effects()
        if cluster is not None:  # also without effects: a watch's creation makes it ok
            cluster.state_changed()
        if effects:
            for effect in effects:
                if isinstance(effect, RunProbe):
                    self.driver.submit(effect)
                elif isinstance(effect, IndexRaised):
                    self.watchers.wake(effect.services)
                    self.streams.changed(effect.services)
                elif isinstance(effect, CaughtUp):
                    self.watchers.wake_exactly(frozenset(map(catch_up_scope, effect.reached)))
                    self.streams.caught_up(effect.reached, effect.expired)
                elif isinstance(effect, CLUSTER_EFFECTS):
                    assert cluster is not None
                    cluster.route(effect)
                else:
                    log_effect(effect)
            self._rearm()

    def _rearm(self) -> None:
        """Wake the probe driver if the core's next deadline came before its wake-up."""
        deadline = self._next_deadline()
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
        self.watchers.release_all()
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
        if path is None or self.cluster is not None:
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
        if self.state_file is None or self.cluster is not None:
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
