"""Executes a `ClusterNode`'s store effects on whichever loop runs it (anyio).

One task per store call, one per watch, all in one task group, so a slow etcd never
blocks a request or another call. Every call has our own deadline (`call_timeout`,
about 3 s, below etcd's 7 s "no quorum"), every watch a read timeout, and every way a
call or a watch can end is reported back as an event: `answered`/`failed`,
`watch_data`/`watch_ended`. Nothing here raises into the loop: an etcd failure is a
report, and a bug in a report is logged, not allowed to take the task group (and the
server) down. Why the store cannot be used (a refused TLS handshake, a wrong password,
the gateway answering 503) is reported when it changes, as `problem`, so a node that
never joins says why instead of staying silently "connecting".
"""

from __future__ import annotations

import logging
from typing import Protocol

import anyio
from anyio.abc import TaskGroup

from frontends.outbound.etcd_client import EtcdClient, StoreUnreachable
from frontends.outbound.log_lines import logfmt
from sd_core.cluster import CloseWatch, OpenWatch, StoreCall

log = logging.getLogger("sd.registry")


class StoreReports(Protocol):
    """Where the driver's outcomes go (the `ClusterMember`, which tells the node)."""

    def answered(self, token: int, status: int, body: bytes) -> None: ...
    def failed(self, token: int) -> None: ...
    def watch_data(self, watch: int, data: bytes) -> None: ...
    def watch_ended(self, watch: int) -> None: ...
    def problem(self, reason: str | None) -> None: ...


class StoreDriver:
    """Runs `StoreCall`, `OpenWatch` and `CloseWatch` through one `EtcdClient`."""

    def __init__(self, client: EtcdClient, reports: StoreReports, *, call_timeout: float) -> None:
        self.client = client
        self._reports = reports
        self._call_timeout = call_timeout
        self._group: TaskGroup | None = None
        self._queued: list[StoreCall | OpenWatch | CloseWatch] = []
        self._watches: dict[int, anyio.CancelScope] = {}
        self._problem: str | None = None

    def submit(self, effect: StoreCall | OpenWatch | CloseWatch) -> None:
        """Start executing `effect` (queued until `run` has started)."""
        group = self._group
        if group is None:
            self._queued.append(effect)
        elif isinstance(effect, StoreCall):
            group.start_soon(self._call, effect)
        elif isinstance(effect, OpenWatch):
            # The scope exists before the task runs, so a CloseWatch that comes
            # first still cancels it.
            scope = self._watches[effect.watch] = anyio.CancelScope()
            group.start_soon(self._watch, effect, scope)
        else:
            found = self._watches.pop(effect.watch, None)
            if found is not None:
                found.cancel()

    async def run(self) -> None:
        """Execute effects until cancelled."""
        async with anyio.create_task_group() as group:
            self._group = group
            queued, self._queued = self._queued, []
            for effect in queued:
                self.submit(effect)
            try:
                await anyio.sleep_forever()
            finally:
                self._group = None

    async def call_once(self, call: StoreCall) -> None:
        """One call, answer ignored (at shutdown, when no one is left to tell)."""
        with anyio.move_on_after(self._call_timeout):
            try:
                await self.client.call(call.request)
            except StoreUnreachable as error:
                log.warning(logfmt("store_call_failed", path=call.request.path, error=error))

    async def _call(self, call: StoreCall) -> None:
        answer: tuple[int, bytes] | None = None
        with anyio.move_on_after(self._call_timeout) as deadline:
            try:
                answer = await self.client.call(call.request)
            except StoreUnreachable as error:
                log.debug(logfmt("store_call_failed", path=call.request.path, error=error))
                self._report_problem(str(error))
            except Exception:  # a bug in the client: fail the call, keep serving
                log.exception(logfmt("store_call_crashed", path=call.request.path))
        if deadline.cancelled_caught:
            self.client.failover()  # a stalled member: try another one next time
            self._report_problem(f"no answer within {self._call_timeout:g} s")
        elif answer is not None:
            self._report_answer(*answer)
        try:
            if answer is None:
                self._reports.failed(call.token)
            else:
                self._reports.answered(call.token, *answer)
        except Exception:
            log.exception(logfmt("store_report_crashed", path=call.request.path))

    async def _watch(self, watch: OpenWatch, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                async with self.client.stream(watch.request) as chunks:
                    async for chunk in chunks:
                        self._reports.watch_data(watch.watch, chunk)
            except StoreUnreachable as error:
                log.debug(logfmt("store_watch_ended", error=error))
                self._report_problem(str(error))
            except Exception:
                log.exception(logfmt("store_watch_crashed"))
        if scope.cancel_called:
            return  # closed on the node's request: nothing to report
        self._watches.pop(watch.watch, None)
        try:
            self._reports.watch_ended(watch.watch)
        except Exception:
            log.exception(logfmt("store_report_crashed", path=watch.request.path))

    def _report_answer(self, status: int, body: bytes) -> None:
        """A 200 clears the problem; an answer meaning "cannot serve" is one. Other
        errors (a compacted revision, a failed comparison) are the node's business."""
        if status == 200:
            self._report_problem(None)
        elif status >= 500 or status in (401, 403):
            self._report_problem(f"HTTP {status}: {body[:200].decode(errors='replace')}")

    def _report_problem(self, reason: str | None) -> None:
        """Tell a new reason; log when a problem starts (a lasting one whose wording
        alternates, a call's and the watch's, is logged once, not at every retry)."""
        if reason == self._problem:
            return
        level = logging.WARNING if self._problem is None else logging.DEBUG
        self._problem = reason
        if reason is not None:
            endpoint = self.client.endpoint
            log.log(level, logfmt("store_problem", endpoint=endpoint, error=reason))
        try:
            self._reports.problem(reason)
        except Exception:
            log.exception(logfmt("store_report_crashed", path="problem"))
