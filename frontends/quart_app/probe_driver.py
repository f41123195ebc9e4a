"""Runs the health probes the core hands out (asyncio).

A timer loop sleeps until the core's next deadline (or until woken because a
registration brought it forward), calls `on_timer`, and queues the due
probes; a fixed pool of workers bounds how many run at once. Every outcome,
timeouts and crashes included, goes back to the core as an event. All waits
are on the loop's clock (`asyncio.timeout`), which tests jump.
"""

from __future__ import annotations

import asyncio
import contextlib

from frontends.outbound.probing import Prober, timed_out
from frontends.runtime.probe_runs import ProbeRuns
from frontends.runtime.runtime import Runtime
from sd_core import ProbeResult, RunProbe


class ProbeDriver(ProbeRuns):
    def __init__(self, runtime: Runtime, prober: Prober) -> None:
        super().__init__(runtime, prober)
        self._queue: asyncio.Queue[RunProbe] = asyncio.Queue()
        self._woken = asyncio.Event()

    def submit(self, probe: RunProbe) -> None:
        self._queue.put_nowait(probe)

    def wake(self) -> None:
        self._woken.set()

    async def run(self) -> None:
        """Run until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            for _ in range(self._runtime.settings.max_concurrent_probes):
                tasks.create_task(self._worker())
            await self._timer_loop()

    async def _timer_loop(self) -> None:
        runtime = self._runtime
        while True:
            self._woken.clear()
            deadline = runtime.on_timer()
            if deadline is None:
                await self._woken.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - runtime.clock())):
                    await self._woken.wait()

    async def _worker(self) -> None:
        while True:
            await self._run_one(await self._queue.get())

    async def _probe_within(self, probe: RunProbe) -> ProbeResult:
        deadline = asyncio.timeout(self._timeout)
        try:
            async with deadline:
                return await self._prober.probe(probe)
        except TimeoutError:
            if not deadline.expired():
                raise  # the prober itself raised it: a crash, not our timeout
            return timed_out(probe, self._timeout)
