"""Runs the health probes the core hands out (trio).

A timer loop sleeps until the core's next deadline (or until woken because a
registration brought it forward), calls `on_timer`, and queues the due
probes; a fixed pool of workers in one nursery bounds how many run at once
(the same bound a `CapacityLimiter` gives, without a task per queued probe).
Every outcome, timeouts and crashes included, goes back to the core as an
event. All waits are on trio's clock, a `MockClock` in tests.
"""

from __future__ import annotations

import math

import trio

from frontends.outbound.probing import Prober, timed_out
from frontends.runtime.probe_runs import ProbeRuns
from frontends.runtime.runtime import Runtime
from sd_core import ProbeResult, RunProbe


class ProbeDriver(ProbeRuns):
    def __init__(self, runtime: Runtime, prober: Prober) -> None:
        super().__init__(runtime, prober)
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
        async for probe in self._queue_out:
            await self._run_one(probe)

    async def _probe_within(self, probe: RunProbe) -> ProbeResult:
        with trio.move_on_after(self._timeout):
            return await self._prober.probe(probe)
        return timed_out(probe, self._timeout)
