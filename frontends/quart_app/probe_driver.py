"""Runs the health probes the core hands out (asyncio).

A timer loop sleeps until the core's next deadline (or until woken because a
registration brought it forward), calls `on_timer`, and queues the due
probes; a fixed pool of workers bounds how many run at once. Every outcome,
timeouts and crashes included, goes back to the core as an event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sd_core import ProbeFailed, ProbeResult, RunProbe

from ..shared.logs import logfmt
from ..shared.probe_request import timed_out
from ..shared.runtime import Runtime
from .watchers import first_of

log = logging.getLogger("sd.registry")
Fetch = Callable[[RunProbe], Awaitable[ProbeResult]]
Sleep = Callable[[float], Awaitable[None]]


class ProbeDriver:
    def __init__(
        self,
        runtime: Runtime,
        fetch: Fetch,
        *,
        concurrency: int,
        timeout: float,
        sleep: Sleep | None = None,
    ) -> None:
        """`sleep` replaces the loop's timer (for fake-clock tests); `fetch` does the HTTP."""
        self._runtime = runtime
        self._fetch = fetch
        self._concurrency = concurrency
        self._timeout = timeout
        self._sleep = sleep
        self._queue: asyncio.Queue[RunProbe] = asyncio.Queue()
        self._woken = asyncio.Event()

    def submit(self, probe: RunProbe) -> None:
        self._queue.put_nowait(probe)

    def wake(self) -> None:
        self._woken.set()

    async def run(self) -> None:
        """Run until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            for _ in range(self._concurrency):
                tasks.create_task(self._worker())
            await self._timer_loop()

    async def _timer_loop(self) -> None:
        runtime = self._runtime
        while True:
            self._woken.clear()
            runtime.on_timer()
            deadline = runtime.registry.next_deadline()
            runtime.driver_sleeps_until = deadline
            if deadline is None:
                await self._woken.wait()
                continue
            delay = max(0.0, deadline - runtime.clock())
            if self._sleep is None:
                try:
                    async with asyncio.timeout(delay):
                        await self._woken.wait()
                except TimeoutError:
                    pass
            else:
                await first_of(self._woken.wait(), self._sleep(delay))

    async def _worker(self) -> None:
        runtime = self._runtime
        while True:
            probe = await self._queue.get()
            if not runtime.registry.probe_is_current(probe):
                continue  # unregistered or moved while queued: send nothing
            started = runtime.clock()
            result = await self._probe(probe)
            runtime.metrics.probe_seconds.observe(max(0.0, runtime.clock() - started))
            runtime.record_probe_result(result)

    async def _probe(self, probe: RunProbe) -> ProbeResult:
        try:
            if self._sleep is None:
                deadline = asyncio.timeout(self._timeout)
                try:
                    async with deadline:
                        return await self._fetch(probe)
                except TimeoutError:
                    if not deadline.expired():
                        raise  # the fetch itself raised it: a crash, not our timeout
                    return timed_out(probe, self._timeout)
            fetching = asyncio.ensure_future(self._fetch(probe))
            sleeping = asyncio.ensure_future(self._sleep(self._timeout))
            try:
                await asyncio.wait({fetching, sleeping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeping.cancel()
                if not fetching.done():
                    fetching.cancel()
            if fetching.done() and not fetching.cancelled():
                return fetching.result()
            return timed_out(probe, self._timeout)
        except Exception as error:  # a bug in a probe must not kill the worker
            log.exception(logfmt("probe_crashed", url=probe.url))
            reason = f"probe error: {type(error).__name__}"
            return ProbeFailed(probe.service_name, probe.instance_id, probe.generation, reason)
