"""Where a probe may connect: names resolved here, every address checked against the policy.

Both probers connect to an address returned from here (with the original Host
header), never to the name, so a DNS answer that changes between check and
connect (rebinding) cannot steer a probe somewhere the probe policy forbids.
Names are resolved by the prober's own `resolver.HostResolver` (IP literals
never reach it), never by the loop's default executor.
"""

from __future__ import annotations

from frontends.outbound.probing.prober import failed
from frontends.outbound.probing.resolver import HostResolver
from sd_core import ProbeFailed, RunProbe
from sd_core.probe_address_policy import ProbePolicy

# How many resolved addresses to try before giving up on connecting.
MAX_ADDRESSES = 3


async def allowed_addresses(
    probe: RunProbe, host: str, port: int, policy: ProbePolicy, resolver: HostResolver
) -> list[str] | ProbeFailed:
    """The addresses of `host` the policy allows, or the failure to report instead."""
    try:
        addresses = await resolver.addresses(host, port)
    except (OSError, UnicodeError) as error:
        return failed(probe, f"cannot resolve host: {error}")
    allowed = [a for a in addresses if policy.refusal(a) is None]
    if not allowed:
        refusal = policy.refusal(addresses[0]) if addresses else "no address"
        return failed(probe, f"refused: {refusal}")
    return allowed
