"""The HTTP half of a health probe with httpx, and the address checks every client shares.

httpx is the alternative client (`SERVICE_DISCOVERY_PROBE_CLIENT=httpx`); the
default is the leaner `probe_client.PlainProbeClient`. Both run on both loops.

The whole-probe deadline is the driver's job (`asyncio.timeout` or
`trio.move_on_after`): httpx's own timeouts are per operation, so a peer that
trickles one byte a second would never trip them.

Names are resolved here, every address is checked against the probe policy,
and the request goes to the checked address itself (with the original Host
header), so a DNS answer that changes between check and connect (rebinding)
cannot steer a probe somewhere the policy forbids.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncGenerator
from typing import Protocol, cast

import anyio
import httpx

from sd_core import ProbeFailed, ProbeResult, RunProbe, judge_probe
from sd_core.probe_policy import ProbePolicy, is_ip_literal

# How many resolved addresses to try before giving up on connecting.
MAX_ADDRESSES = 3


def make_probe_client(*, timeout: float, concurrency: int) -> httpx.AsyncClient:
    """One pooled client for every probe: no redirects, no proxies from the environment."""
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        headers={"accept-encoding": "identity", "user-agent": "service-discovery-probe/0.1"},
        trust_env=False,
    )


def failed(probe: RunProbe, reason: str) -> ProbeFailed:
    return ProbeFailed(probe.service_name, probe.instance_id, probe.generation, reason[:200])


async def _addresses(host: str, port: int) -> list[str]:
    if is_ip_literal(host):
        return [host.strip("[]")]
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


async def allowed_addresses(
    probe: RunProbe, host: str, port: int, policy: ProbePolicy
) -> list[str] | ProbeFailed:
    """The addresses of `host` the policy allows, or the failure to report instead."""
    try:
        addresses = await _addresses(host, port)
    except (OSError, UnicodeError) as error:
        return failed(probe, f"cannot resolve host: {error}")
    allowed = [a for a in addresses if policy.refusal(a) is None]
    if not allowed:
        refusal = policy.refusal(addresses[0]) if addresses else "no address"
        return failed(probe, f"refused: {refusal}")
    return allowed


async def probe_once(
    client: httpx.AsyncClient, probe: RunProbe, max_body: int, policy: ProbePolicy
) -> ProbeResult:
    """Fetch and judge one health endpoint; every failure becomes a failed result."""
    try:
        url = httpx.URL(probe.url)
    except httpx.InvalidURL as error:
        return failed(probe, f"cannot resolve host: {error}")
    port = url.port or 80
    allowed = await allowed_addresses(probe, url.host, port, policy)
    if isinstance(allowed, ProbeFailed):
        return allowed
    host_header = url.netloc.decode("ascii")
    reason = "no address to connect to"
    for address in allowed[:MAX_ADDRESSES]:
        try:
            return await _fetch(client, probe, url.copy_with(host=address), host_header, max_body)
        except httpx.ConnectError as failure:  # try the next address
            reason = f"{type(failure).__name__}: {failure}".strip()
        except (httpx.HTTPError, httpx.InvalidURL) as failure:
            return failed(probe, f"{type(failure).__name__}: {failure}".strip())
    return failed(probe, reason)


async def _fetch(
    client: httpx.AsyncClient, probe: RunProbe, url: httpx.URL, host: str, max_body: int
) -> ProbeResult:
    async with client.stream("GET", url, headers={"host": host}) as response:
        if not 200 <= response.status_code < 300:
            return judge_probe(probe, response.status_code, b"")
        body = bytearray()
        # Raw bytes: we asked for identity encoding, and decoding a compressed
        # body could expand past the limit in one chunk.
        raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())
        async with contextlib.aclosing(raw) as chunks:
            async for chunk in chunks:
                body += chunk
                if len(body) > max_body:
                    return judge_probe(probe, response.status_code, b"", truncated=True)
        return judge_probe(probe, response.status_code, bytes(body))


def timed_out(probe: RunProbe, seconds: float) -> ProbeFailed:
    return failed(probe, f"timeout after {seconds:g}s")


class Prober(Protocol):
    """What a probe driver needs from an HTTP client."""

    async def probe(self, probe: RunProbe) -> ProbeResult: ...

    async def aclose(self) -> None: ...


class HttpxProber:
    """httpx behind the `Prober` interface (`SERVICE_DISCOVERY_PROBE_CLIENT=httpx`)."""

    def __init__(self, *, timeout: float, concurrency: int, max_body: int, policy: ProbePolicy):
        self._client = make_probe_client(timeout=timeout, concurrency=concurrency)
        self._max_body = max_body
        self._policy = policy

    async def probe(self, probe: RunProbe) -> ProbeResult:
        return await probe_once(self._client, probe, self._max_body, self._policy)

    async def aclose(self) -> None:
        await self._client.aclose()
