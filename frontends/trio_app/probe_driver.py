"""Runs the health probes the core hands out (trio).

A timer loop sleeps until the core's next deadline (or until woken because a
registration brought it forward), calls `on_timer`, and queues the due
probes; a fixed pool of workers in one nursery bounds how many run at once
(the same bound a `CapacityLimiter` gives, without a task per queued probe).
Every outcome, timeouts and crashes included, goes back to the core as an
event. All waits are on trio's clock, a `MockClock` in tests.
"""

from __future__ import annotations

import logging
import math

import trio

from sd_core import ProbeResult, RunProbe

from ..shared.logs import logfmt
from ..shared.probing import Prober, crashed, timed_out
from ..shared.runtime import Runtime

log = logging.getLogger("sd.registry")


class ProbeDriver:
    def __init__(self, runtime: Runtime, prober: Prober) -> None:
        """Limits come from the runtime's settings; `prober` does the HTTP."""
        self._runtime = runtime
        self._prober = prober
        self._timeout = runtime.settings.registry.health_check_timeout
        self._queue_in, self._queue_out = trio.open_memory_channel[RunProbe](math.inf)
        self._woken = trio.Event()

    def submit(self, probe: RunProbe) -> None:
        self._queue_in.send_nowait(probe)

    def wake(self) -> None:
        self._woken.set()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled."""
        async with trio.open_nursery() as tasks:
            for _ in range(self._runtime.settings.max_concurrent_probes):
                tasks.start_soon(self._worker)
            task_status.started()
            await self._timer_loop()

    async def _timer_loop(self) -> None:
        runtime = self._runtime
        while True:
            self._woken = trio.Event()
            deadline = runtime.on_timer()
            if deadline is None:
                await self._woken.wait()
                continue
            with trio.move_on_at(deadline):
                await self._woken.wait()

    async def _worker(self) -> None:
        runtime = self._runtime
        async for probe in self._queue_out:
            if not runtime.registry.probe_is_current(probe):
                continue  # unregistered or moved while queued: send nothing
            started = runtime.clock()
            result = await self._probe(probe)
            runtime.metrics.probe_seconds.observe(max(0.0, runtime.clock() - started))
            runtime.record_probe_result(result)

    async def _probe(self, probe: RunProbe) -> ProbeResult:
        try:
            with trio.move_on_after(self._timeout):
                return await self._prober.probe(probe)
            return timed_out(probe, self._timeout)
        except Exception as error:  # a bug in a probe must not kill the worker
            log.exception(logfmt("probe_crashed", url=probe.url))
            return crashed(probe, error)
