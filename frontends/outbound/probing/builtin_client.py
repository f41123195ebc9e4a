"""The built-in probe client: one HTTP/1.1 GET, read within bounds, over anyio.

Why not httpx here: a probe is always the same tiny request, and the registry
makes a thousand of them a second. httpx spends about a millisecond of CPU on
each, which capped probing at a few hundred instances a second (see
docs/performance.md). The exchange itself (kept-alive connections, bounded
reads) is `http1_pool`'s, shared with the etcd gateway client; this adds what
a probe needs: only plain http:// URLs, the probe address policy, no
redirects, no proxies, no decompression (`accept-encoding: identity`), and no
timeouts of its own (the driver puts one deadline around the whole probe).
Connections are dropped once idle for `idle_seconds`, shorter than the
keep-alive timeout of most servers (5 s), so a probe rarely meets a
connection the peer has closed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio

from frontends.outbound.http1_pool import TRANSPORT_ERRORS, ConnectionPool, ProtocolError
from frontends.outbound.probing.addresses import MAX_ADDRESSES, allowed_addresses
from frontends.outbound.probing.prober import failed
from frontends.outbound.probing.resolver import HostResolver
from sd_core import ProbeFailed, ProbeResult, RunProbe, judge_probe
from sd_core.probe_address_policy import ProbePolicy

USER_AGENT = "service-discovery-probe/0.1"


@dataclass(eq=False, kw_only=True)
class PlainProbeClient:
    """Fetches and judges health endpoints; one instance serves every probe of a server."""

    max_body: int
    policy: ProbePolicy
    max_idle: int = 100
    idle_seconds: float = 4.0
    clock: Callable[[], float] = time.monotonic
    #: Names are resolved here (shared with the TCP prober); IP literals never are.
    resolver: HostResolver = field(default_factory=HostResolver)
    _pool: ConnectionPool = field(init=False)

    def __post_init__(self) -> None:
        self._pool = ConnectionPool(
            max_idle=self.max_idle, idle_seconds=self.idle_seconds, clock=self.clock
        )

    @property
    def idle_connections(self) -> int:
        return self._pool.idle_connections

    async def probe(self, probe: RunProbe) -> ProbeResult:
        """Every outcome, refusal and transport failure included, is a result."""
        try:
            parts = urlsplit(probe.url)
            host = parts.hostname or ""
            port = parts.port or 80
        except ValueError as error:
            return failed(probe, f"bad URL: {error}")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = parts.netloc.rpartition("@")[2]
        if parts.scheme != "http" or not host or _unsafe(target) or _unsafe(authority):
            return failed(probe, "bad URL: only plain http:// URLs can be probed")
        addresses = await allowed_addresses(probe, host, port, self.policy, self.resolver)
        if isinstance(addresses, ProbeFailed):
            return addresses
        request = (
            f"GET {target} HTTP/1.1\r\nhost: {authority}\r\nuser-agent: {USER_AGENT}\r\n"
            "accept: application/json, */*\r\naccept-encoding: identity\r\n\r\n"
        ).encode("ascii")
        reason = "no address to connect to"
        for address in addresses[:MAX_ADDRESSES]:
            try:
                stream, kept = await self._pool.connection((address, port))
            except OSError as error:  # refused or unreachable: try the next address
                reason = _describe(error, "ConnectError")
                continue
            try:
                answer = await self._pool.exchange(
                    (address, port), stream, kept, request, self.max_body
                )
            except ProtocolError as error:
                return failed(probe, f"bad response: {error}")
            except TRANSPORT_ERRORS as error:
                return failed(probe, _describe(error, "ReadError"))
            return judge_probe(probe, answer.status, answer.body, truncated=answer.truncated)
        return failed(probe, reason)

    async def aclose(self) -> None:
        await self._pool.aclose()


def _unsafe(text: str) -> bool:
    return any(c in text for c in "\r\n \t\x00")


def _describe(error: BaseException, kind: str) -> str:
    detail = str(error).strip()
    if isinstance(error, anyio.EndOfStream | anyio.BrokenResourceError):
        detail = detail or "connection closed by the peer"
    return f"{kind}: {detail}" if detail else kind
