"""The records instances stand for, and a response rendered within a size limit.

An instance with an IP host is an A or AAAA record; in SRV answers its target
is the address's synthetic name (`names.addr_label`), whose A or AAAA goes
into the additional section, so a client needs no second query. An instance
with a host name is SRV only (the target is that name, for the client's own
resolver to look up): this server answers only for its own domain.

Rendering is the cost of a cache miss, so a `Records` builds each record once
per miss, whatever shuffled order uses it, and knows an upper bound of the
bytes each one adds: `fit` picks how many fit from those bounds and renders
once, instead of rendering, measuring and trying again.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.rrset

from ..instance import Instance
from .names import ADDR_LABEL, IPAddress, addr_label

__all__ = [
    "MAX_MESSAGE", "SMALLEST", "Records", "Target", "address_name", "address_rrset", "fit",
    "target_of",
]  # fmt: skip

#: The largest DNS message (TCP's 2-byte length prefix).
MAX_MESSAGE = 65535
#: An answer record's fixed part: type, class, TTL, length, and a 2-byte owner pointer.
_FIXED = 12
#: The smallest record: an A record (how many records could fit at most).
SMALLEST = _FIXED + 4
IN = dns.rdataclass.IN


@dataclass(frozen=True, slots=True)
class Target:
    """What one instance contributes: its port, and its address or its host name."""

    port: int
    ip: IPAddress | None
    host: str


def target_of(instance: Instance) -> Target:
    host = instance.host
    try:
        return Target(instance.port, ipaddress.ip_address(host.strip("[]")), host)
    except ValueError:
        return Target(instance.port, None, host)


def address_name(ip: IPAddress, domain: dns.name.Name) -> dns.name.Name:
    """`<hex>.addr.<domain>`, the name this server answers with `ip`."""
    return dns.name.Name((addr_label(ip), ADDR_LABEL, *domain.labels))


def address_rdata(ip: IPAddress) -> dns.rdata.Rdata:
    """An A or AAAA record's data (dnspython's constructors are not annotated)."""
    rdata: dns.rdata.Rdata
    if ip.version == 4:
        rdata = dns.rdtypes.IN.A.A(IN, dns.rdatatype.A, str(ip))  # type: ignore[no-untyped-call]
    else:
        rdata = dns.rdtypes.IN.AAAA.AAAA(  # type: ignore[no-untyped-call]
            IN, dns.rdatatype.AAAA, str(ip)
        )
    return rdata


def address_rrset(name: dns.name.Name, ttl: int, ip: IPAddress) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(name, ttl, [address_rdata(ip)])


class Records:
    """One miss's records for `targets` (those of the query's type only), each made once."""

    def __init__(
        self, owner: dns.name.Name, rdtype: int, targets: Sequence[Target],
        domain: dns.name.Name, ttl: int,
    ) -> None:  # fmt: skip
        self.owner, self.rdtype, self.targets = owner, rdtype, targets
        self._domain, self._ttl = domain, ttl
        self._made: dict[int, tuple[dns.rdata.Rdata, dns.rrset.RRset | None]] = {}
        srv = rdtype == dns.rdatatype.SRV
        self.sizes = [self._size(t) if srv else _FIXED + (4 if t.ip and t.ip.version == 4 else 16)
                      for t in targets]  # fmt: skip

    def _size(self, target: Target) -> int:
        """An SRV record's bytes at most, with its additional address record."""
        if target.ip is None:  # the name in full (it may share no suffix with anything)
            return _FIXED + 6 + len(target.host.rstrip(".")) + 2
        label = 8 if target.ip.version == 4 else 32
        # target: its label, `addr`, a pointer to the domain; glue: pointer + fixed + address
        return _FIXED + 6 + (1 + label + 5 + 2) + _FIXED + (4 if target.ip.version == 4 else 16)

    def _make(self, position: int) -> tuple[dns.rdata.Rdata, dns.rrset.RRset | None]:
        made = self._made.get(position)
        if made is None:
            target = self.targets[position]
            if self.rdtype != dns.rdatatype.SRV:
                assert target.ip is not None
                made = (address_rdata(target.ip), None)
            elif target.ip is None:
                name = dns.name.from_text(target.host.rstrip(".") + ".")
                made = (_srv(target.port, name), None)
            else:
                name = address_name(target.ip, self._domain)
                made = (_srv(target.port, name), address_rrset(name, self._ttl, target.ip))
            self._made[position] = made
        return made

    def add_to(self, response: dns.message.Message, positions: Iterable[int]) -> None:
        """The records of `targets[p]` for each p, in that order, into `response`.

        One additional address record per SRV record, even when several SRV records
        name one address (instances on one host): HAProxy 2.6 pairs them one to one,
        and leaves the servers of an SRV record without its own pair unresolved."""
        rdatas = []
        glue: list[dns.rrset.RRset] = []
        for position in positions:
            rdata, extra = self._make(position)
            rdatas.append(rdata)
            if extra is not None:
                glue.append(extra)
        if rdatas:
            response.answer.append(dns.rrset.from_rdata_list(self.owner, self._ttl, rdatas))
            response.additional.extend(glue)


def _srv(port: int, target: dns.name.Name) -> dns.rdata.Rdata:
    """Priority 1, weight 1: every instance alike (the client spreads the load)."""
    srv: dns.rdata.Rdata = dns.rdtypes.IN.SRV.SRV(  # type: ignore[no-untyped-call]
        IN, dns.rdatatype.SRV, 1, 1, port, target
    )
    return srv


def fit(build: Callable[[int], dns.message.Message], sizes: Sequence[int], base: int,
        limit: int, total: int) -> bytes:  # fmt: skip
    """`build(n)` (a response with the first `n` of `total` records) in `limit` bytes: every
    record if they fit, else as many as fit, with TC set (RFC 2181 9: the client asks
    again over TCP).

    `base` is the response's size with no record, `sizes` an upper bound of the bytes of
    each of the first records (at least as many as can fit), so the count chosen fits
    when rendered: one render, with a measured retry kept for a bound that would be wrong."""
    most, length = 0, base
    for size in sizes:
        length += size
        if length > limit:
            break
        most += 1
    while True:
        message = build(most)
        if most < total:
            message.flags |= dns.flags.TC
        try:
            wire = message.to_wire(max_size=MAX_MESSAGE)
        except dns.exception.TooBig:
            wire = b""
        if wire and len(wire) <= limit:
            return wire
        if most == 0:  # a question too long for the limit alone: send it truncated
            return message.to_wire(max_size=limit, prefer_truncation=True)
        most //= 2
