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
import logging

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
            deadline = asyncio.timeout(self._timeout)
            try:
                async with deadline:
                    return await self._prober.probe(probe)
            except TimeoutError:
                if not deadline.expired():
                    raise  # the prober itself raised it: a crash, not our timeout
                return timed_out(probe, self._timeout)
        except Exception as error:  # a bug in a probe must not kill the worker
            log.exception(logfmt("probe_crashed", url=probe.url))
            return crashed(probe, error)
