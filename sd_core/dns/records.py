"""The records an instance stands for, and rendering a response within a size limit.

An instance with an IP host is an A or AAAA record; in SRV answers its target
is the address's synthetic name (`names.addr_label`), whose A or AAAA goes
into the additional section, so a client needs no second query. An instance
with a host name is SRV only (the target is that name, for the client's own
resolver to look up): this server answers only for its own domain.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from ..instance import Instance
from .names import ADDR_LABEL, IPAddress, addr_label

__all__ = ["Target", "fit", "target_of"]

#: The smallest an answer record can be on the wire (a compressed A record).
_SMALLEST_RECORD = 16
#: The largest DNS message (TCP's 2-byte length prefix).
MAX_MESSAGE = 65535


@dataclass(frozen=True, slots=True)
class Target:
    """What one instance contributes: its port, its address (None for a host name),
    and the name an SRV record points at."""

    port: int
    ip: IPAddress | None
    srv_name: dns.name.Name


def target_of(instance: Instance, domain: dns.name.Name) -> Target:
    """`instance` as DNS shows it (host names are made absolute)."""
    host = instance.host
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return Target(instance.port, None, dns.name.from_text(host.rstrip(".") + "."))
    return Target(instance.port, ip, address_name(ip, domain))


def address_name(ip: IPAddress, domain: dns.name.Name) -> dns.name.Name:
    """`<hex>.addr.<domain>`, the name this server answers with `ip`."""
    return dns.name.Name((addr_label(ip), ADDR_LABEL, *domain.labels))


def address_rrset(name: dns.name.Name, ttl: int, ips: Sequence[IPAddress]) -> dns.rrset.RRset:
    """One A or AAAA RRset (every address of one version) named `name`."""
    kind = "A" if ips[0].version == 4 else "AAAA"
    return dns.rrset.from_text_list(name, ttl, "IN", kind, [str(ip) for ip in ips])


def srv_rrsets(
    name: dns.name.Name, ttl: int, targets: Sequence[Target]
) -> tuple[dns.rrset.RRset, list[dns.rrset.RRset]]:
    """The SRV RRset (priority 1, weight 1 each) and the additional addresses it names."""
    srv = dns.rrset.from_text_list(
        name, ttl, "IN", "SRV", [f"1 1 {t.port} {t.srv_name}" for t in targets]
    )
    extra = [address_rrset(t.srv_name, ttl, [t.ip]) for t in targets if t.ip is not None]
    return srv, extra


def fit(build: Callable[[int], dns.message.Message], count: int, limit: int) -> bytes:
    """`build(n)` (a response with its first `n` records) rendered in `limit` bytes: all
    `count` if they fit, else as many as fit with TC set (RFC 2181 9: the client asks
    again over TCP). Each try renders once; at most a handful of tries."""
    most = min(count, limit // _SMALLEST_RECORD + 1)  # more could never fit
    while True:
        message = build(most)
        if most < count:
            message.flags |= dns.flags.TC
        try:
            wire = message.to_wire(max_size=MAX_MESSAGE)
        except dns.exception.TooBig:
            most //= 2
            continue
        if len(wire) <= limit:
            return wire
        if most == 0:  # a question too long for the limit alone: send it truncated
            return message.to_wire(max_size=limit, prefer_truncation=True)
        most = min(most - 1, most * limit // len(wire))
