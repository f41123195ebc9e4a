"""Where a probe may connect: names resolved here, every address checked against the policy.

Both probers connect to an address returned from here (with the original Host
header), never to the name, so a DNS answer that changes between check and
connect (rebinding) cannot steer a probe somewhere the probe policy forbids.
"""

from __future__ import annotations

import socket

import anyio

from sd_core import ProbeFailed, RunProbe
from sd_core.probe_address_policy import ProbePolicy, is_ip_literal

from .prober import failed

# How many resolved addresses to try before giving up on connecting.
MAX_ADDRESSES = 3


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
