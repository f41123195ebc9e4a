"""The httpx prober (`SERVICE_DISCOVERY_PROBE_CLIENT=httpx`).

The alternative to the leaner `builtin_client.PlainProbeClient`, for anyone
who prefers a widely used HTTP stack; both run on both loops.

The whole-probe deadline is the driver's job (`asyncio.timeout` or
`trio.move_on_after`): httpx's own timeouts are per operation, so a peer that
trickles one byte a second would never trip them. The request goes to an
address `addresses.allowed_addresses` checked, with the original Host header.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import cast

import httpx

from frontends.outbound.probing.addresses import MAX_ADDRESSES, allowed_addresses
from frontends.outbound.probing.prober import failed
from frontends.outbound.probing.resolver import HostResolver
from sd_core import ProbeFailed, ProbeResult, RunProbe, judge_probe
from sd_core.probe_address_policy import ProbePolicy


def make_probe_client(*, timeout: float, concurrency: int) -> httpx.AsyncClient:
    """One pooled client for every probe: no redirects, no proxies from the environment."""
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        headers={"accept-encoding": "identity", "user-agent": "service-discovery-probe/0.1"},
        trust_env=False,
    )


async def probe_once(
    client: httpx.AsyncClient,
    probe: RunProbe,
    max_body: int,
    policy: ProbePolicy,
    resolver: HostResolver,
) -> ProbeResult:
    """Fetch and judge one health endpoint; every failure becomes a failed result."""
    try:
        url = httpx.URL(probe.url)
    except httpx.InvalidURL as error:
        return failed(probe, f"cannot resolve host: {error}")
    port = url.port or 80
    allowed = await allowed_addresses(probe, url.host, port, policy, resolver)
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


class HttpxProber:
    """httpx behind the `Prober` interface (`SERVICE_DISCOVERY_PROBE_CLIENT=httpx`)."""

    def __init__(
        self,
        *,
        timeout: float,
        concurrency: int,
        max_body: int,
        policy: ProbePolicy,
        resolver: HostResolver | None = None,
    ):
        self._client = make_probe_client(timeout=timeout, concurrency=concurrency)
        self._max_body = max_body
        self._policy = policy
        self._resolver = resolver or HostResolver()

    async def probe(self, probe: RunProbe) -> ProbeResult:
        return await probe_once(self._client, probe, self._max_body, self._policy, self._resolver)

    async def aclose(self) -> None:
        await self._client.aclose()
