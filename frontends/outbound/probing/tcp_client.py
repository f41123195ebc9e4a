"""The TCP prober: a check passes when a TCP connection opens within the deadline.

For instances with `"check": {"type": "tcp"}` (a database, a cache, anything
without an HTTP health endpoint), as Consul's TCP checks do. The address
rules are the HTTP probers' (`addresses.allowed_addresses`): names are
resolved here, every address is checked against the probe policy, and the
connection goes to an address that passed, so the allowlist holds for TCP
checks too. The connection is closed at once; nothing is sent. The deadline
is the driver's, around the whole probe.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import anyio

from frontends.outbound.probing.addresses import MAX_ADDRESSES, allowed_addresses
from frontends.outbound.probing.prober import failed
from frontends.outbound.probing.resolver import HostResolver
from sd_core import ProbeFailed, ProbePassed, ProbeResult, RunProbe
from sd_core.probe_address_policy import ProbePolicy


class TcpProber:
    """Connects to `tcp://host:port`; one instance serves every TCP probe of a server."""

    def __init__(self, *, policy: ProbePolicy, resolver: HostResolver | None = None) -> None:
        self._policy = policy
        self._resolver = resolver or HostResolver()

    async def probe(self, probe: RunProbe) -> ProbeResult:
        try:
            parts = urlsplit(probe.url)
            host = parts.hostname or ""
            port = parts.port
        except ValueError as error:
            return failed(probe, f"bad address: {error}")
        if parts.scheme != "tcp" or not host or port is None:
            return failed(probe, "bad address: a TCP check needs tcp://host:port")
        addresses = await allowed_addresses(probe, host, port, self._policy, self._resolver)
        if isinstance(addresses, ProbeFailed):
            return addresses
        reason = "no address to connect to"
        for address in addresses[:MAX_ADDRESSES]:
            try:
                stream = await anyio.connect_tcp(address, port)
            except OSError as error:  # refused or unreachable: try the next address
                reason = f"cannot connect: {error.strerror or type(error).__name__}"
                continue
            await anyio.aclose_forcefully(stream)
            return ProbePassed(probe.service_name, probe.instance_id, probe.generation)
        return failed(probe, reason)

    async def aclose(self) -> None:
        """Nothing is kept open between probes."""
