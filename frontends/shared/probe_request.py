"""The HTTP half of a health probe, shared by both drivers (httpx runs on both loops).

The whole-probe deadline is the driver's job (`asyncio.timeout` or
`trio.move_on_after`): httpx's own timeouts are per operation, so a peer that
trickles one byte a second would never trip them.
"""

from __future__ import annotations

import httpx

from sd_core import ProbeFailed, ProbeResult, RunProbe, judge_probe


def make_probe_client(*, timeout: float, concurrency: int) -> httpx.AsyncClient:
    """One pooled client for every probe: no redirects, no proxies from the environment."""
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        headers={"accept-encoding": "identity", "user-agent": "service-discovery-probe/0.1"},
        trust_env=False,
    )


async def probe_once(client: httpx.AsyncClient, probe: RunProbe, max_body: int) -> ProbeResult:
    """Fetch and judge one health endpoint; I/O errors become a failed result."""
    try:
        async with client.stream("GET", probe.url) as response:
            if not 200 <= response.status_code < 300:
                return judge_probe(probe, response.status_code, b"")
            body = bytearray()
            # Raw bytes: we asked for identity encoding, and decoding a
            # compressed body could expand past the limit in one chunk.
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > max_body:
                    return judge_probe(probe, response.status_code, b"", truncated=True)
            return judge_probe(probe, response.status_code, bytes(body))
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        reason = f"{type(error).__name__}: {error}".strip()
        return ProbeFailed(probe.service_name, probe.instance_id, probe.generation, reason[:200])


def timed_out(probe: RunProbe, seconds: float) -> ProbeFailed:
    return ProbeFailed(
        probe.service_name, probe.instance_id, probe.generation, f"timeout after {seconds:g}s"
    )
