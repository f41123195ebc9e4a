"""One probe run, as both loops' probe drivers do it.

A driver (each frontend's `probe_driver.ProbeDriver`) owns the loop side: the
timer, the queue and the pool of workers. What happens to one queued probe is
the same on both loops and lives here: skip it if the instance moved on while
it waited, time it, bound it by the health check timeout, turn a crash into a
failed result rather than a dead worker, and report the outcome to the core.
Only the timeout itself is the loop's (`_probe_within`).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

from frontends.outbound.probing import Prober, crashed
from frontends.runtime.logs import logfmt
from frontends.runtime.runtime import Runtime
from sd_core import ProbeResult, RunProbe

log = logging.getLogger("sd.registry")


class ProbeRuns(ABC):
    """The half of a probe driver that does not depend on the loop (see the module)."""

    def __init__(self, runtime: Runtime, prober: Prober) -> None:
        """Limits come from the runtime's settings; `prober` does the HTTP."""
        self._runtime = runtime
        self._prober = prober
        self._timeout = runtime.settings.registry.health_check_timeout

    async def _run_one(self, probe: RunProbe) -> None:
        runtime = self._runtime
        if not runtime.registry.probe_is_current(probe):
            return  # unregistered or moved while queued: send nothing
        started = runtime.clock()
        result = await self._probe(probe)
        runtime.metrics.probe_seconds.observe(max(0.0, runtime.clock() - started))
        runtime.record_probe_result(result)

    async def _probe(self, probe: RunProbe) -> ProbeResult:
        try:
            return await self._probe_within(probe)
        except Exception as error:  # a bug in a probe must not kill the worker
            log.exception(logfmt("probe_crashed", url=probe.url))
            return crashed(probe, error)

    @abstractmethod
    async def _probe_within(self, probe: RunProbe) -> ProbeResult:
        """The prober's result, or `timed_out` once `self._timeout` passes on the loop's clock.

        An exception the prober raises (a `TimeoutError` of its own included) is a crash.
        """
