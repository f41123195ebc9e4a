"""What a probe driver needs from an HTTP client, and the failures every prober reports."""

from __future__ import annotations

from typing import Protocol

from sd_core import ProbeFailed, ProbeResult, RunProbe


class Prober(Protocol):
    """Fetches and judges one health endpoint; the driver puts the deadline around it."""

    async def probe(self, probe: RunProbe) -> ProbeResult: ...

    async def aclose(self) -> None: ...


def failed(probe: RunProbe, reason: str) -> ProbeFailed:
    return ProbeFailed(probe.service_name, probe.instance_id, probe.generation, reason[:200])


def timed_out(probe: RunProbe, seconds: float) -> ProbeFailed:
    return failed(probe, f"timeout after {seconds:g}s")


def crashed(probe: RunProbe, error: Exception) -> ProbeFailed:
    """A prober that raised: a bug, reported as a failed probe rather than killing a worker."""
    return failed(probe, f"probe error: {type(error).__name__}")
