"""Which addresses the registry may send health probes to (SSRF protection).

Anyone with the write token can register any host, and the registry will
dutifully make HTTP requests to it: without a policy that is a way to reach
cloud metadata endpoints or internal admin ports from inside the network.
The check is on IP addresses; the driver resolves names itself and connects
to the very address it checked, so DNS rebinding cannot slip past it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused unless a configured network inside them names them explicitly.
LINK_LOCAL: tuple[Network, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # includes 169.254.169.254, the metadata address
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),  # the IPv6 metadata address on EC2
)


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 127.0.0.1` -> networks; raises ValueError naming the bad entry."""
    networks: list[Network] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP network (CIDR) or address") from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class ProbePolicy:
    """`allowed` None means every address except link-local and metadata ones."""

    allowed: tuple[Network, ...] | None = None

    def refusal(self, address: str) -> str | None:
        """Why a probe to `address` (an IP literal) is refused, or None when allowed."""
        try:
            ip: Address = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return f"{address!r} is not an IP address"
        return self._refusal_of(ip)

    def literal_refusal(self, host: str) -> str | None:
        """For a registered host: the refusal if it is a refused IP literal, else None.

        Host names are judged at probe time, after resolution.
        """
        if not host or not (host[0].isdigit() or ":" in host):
            return None  # a host name (names cannot start with a digit and be an IP)
        try:
            ip: Address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return None
        return self._refusal_of(ip)

    def _refusal_of(self, ip: Address) -> str | None:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        explicit = [n for n in self.allowed or () if ip in n]
        if any(ip in net for net in LINK_LOCAL):
            if any(_inside_link_local(n) for n in explicit):
                return None
            return (
                f"{ip} is link-local or a metadata address; "
                "list it in HEALTH_CHECK_ALLOWED_NETWORKS to allow it"
            )
        if self.allowed is None or explicit:
            return None
        return f"{ip} is not in HEALTH_CHECK_ALLOWED_NETWORKS"


def _inside_link_local(network: Network) -> bool:
    return any(
        network.version == ll.version and network.subnet_of(ll)  # type: ignore[arg-type]
        for ll in LINK_LOCAL
    )


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
