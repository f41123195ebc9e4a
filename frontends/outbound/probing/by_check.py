"""The prober a driver holds: each probe goes to the prober for its check type.

The core says which kind of probe to run (`RunProbe.kind`); this keeps the
choice in one place, so both frontends' probe drivers stay as they are and
run HTTP and TCP checks alike under one concurrency limit and one deadline.
"""

from __future__ import annotations

from frontends.outbound.probing.prober import Prober, failed
from frontends.outbound.probing.resolver import HostResolver
from sd_core import ProbeResult, RunProbe
from sd_core.checks import CheckType


class ProberByCheck:
    """HTTP probes to `http`, TCP probes to `tcp`; a ttl check is never probed.

    `resolver`, when given, is the one both resolve names with: closed (its
    threads abandoned, never waited for) with them.
    """

    def __init__(self, *, http: Prober, tcp: Prober, resolver: HostResolver | None = None) -> None:
        self.http = http
        self.tcp = tcp
        self.resolver = resolver

    async def probe(self, probe: RunProbe) -> ProbeResult:
        if probe.kind is CheckType.HTTP:
            return await self.http.probe(probe)
        if probe.kind is CheckType.TCP:
            return await self.tcp.probe(probe)
        return failed(probe, f"no prober for {probe.kind} checks")

    async def aclose(self) -> None:
        try:
            await self.http.aclose()
        finally:
            try:
                await self.tcp.aclose()
            finally:
                if self.resolver is not None:
                    self.resolver.close()
