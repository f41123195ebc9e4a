"""Which addresses the registry may send health probes to (SSRF protection).

Anyone with the write token can register any host, and the registry will
dutifully make HTTP requests to it: without a policy that is a way to reach
cloud metadata endpoints or internal admin ports from inside the network.
The check is on IP addresses; the driver resolves names itself and connects
to the very address it checked, so DNS rebinding cannot slip past it.

An IPv4 address has IPv6 spellings that reach it too (IPv4-mapped, NAT64,
SIIT's IPv4-translated, the old IPv4-compatible form): each is judged as the
IPv4 address it carries. A registered host can also be a number that the
resolver reads as an address (`0xa9fea9fe` is 169.254.169.254 to
`inet_aton`); the core has no DNS, so it parses those forms itself to warn at
registration.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: IPv6 forms whose last 32 bits are an IPv4 address a packet ends up at:
#: NAT64's well-known prefix (RFC 6052), SIIT's IPv4-translated addresses
#: (RFC 2765) and the deprecated IPv4-compatible ones (RFC 4291), the last
#: without `::` and `::1`, which are IPv6's own. IPv4-mapped is `ipv4_mapped`.
EMBEDDING_IPV4: tuple[ipaddress.IPv6Network, ...] = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
    ipaddress.IPv6Network("::/96"),
)
_LOW_32_BITS = 0xFFFFFFFF

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
            numeric = inet_aton_address(host)
            if numeric is None:
                return None
            refusal = self._refusal_of(numeric)
            if refusal is None:
                return None
            return f"{host!r} is the IPv4 address {numeric} written as a number; {refusal}"
        return self._refusal_of(ip)

    def _refusal_of(self, ip: Address) -> str | None:
        ip = unwrap(ip)
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


def unwrap(ip: Address) -> Address:
    """The IPv4 address an IPv6 address carries (see `EMBEDDING_IPV4`), else `ip` itself."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if int(ip) > 1 and any(ip in network for network in EMBEDDING_IPV4):
        return ipaddress.IPv4Address(int(ip) & _LOW_32_BITS)
    return ip


def inet_aton_address(host: str) -> ipaddress.IPv4Address | None:
    """`host` as `inet_aton` (and so a resolver) reads a numeric address, or None.

    One to four parts, each decimal, octal (leading `0`) or hexadecimal
    (`0x`); the last part fills the bytes the others leave: `2852039166`,
    `0xa9fea9fe`, `169.254.43518` and `0251.0376.0251.0376` are all
    169.254.169.254.
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _aton_part(part)
        if value is None:
            return None
        values.append(value)
    *leading, last = values
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (5 - len(values))):
        return None
    number = last
    for position, value in enumerate(leading):
        number |= value << (8 * (3 - position))
    return ipaddress.IPv4Address(number)


def _aton_part(part: str) -> int | None:
    if part[:2].lower() == "0x":
        digits, base = part[2:], 16
        allowed = "0123456789abcdefABCDEF"
    elif len(part) > 1 and part[0] == "0":
        digits, base, allowed = part[1:], 8, "01234567"
    else:
        digits, base, allowed = part, 10, "0123456789"
    if not digits or len(digits) > 12 or any(c not in allowed for c in digits):
        return None
    return int(digits, base)


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
