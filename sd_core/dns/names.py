"""What a name under the DNS domain asks for: a service (maybe narrowed by a tag), or an address.

The forms (labels before the domain, compared without regard to case):

- `<service>`: the service; `<tag>.<service>`: its instances with that tag;
- `_<service>._tcp` (RFC 2782, what HAProxy's `server-template` asks for) and
  `_<service>._<tag>`: the same two, as SRV owners are spelled; `_tcp` is the
  protocol label, not a tag, as in Consul;
- `<hex>.addr`: the address an SRV target names (8 hex digits for IPv4, 32 for
  IPv6), so every SRV target of an IP host is a name this server answers itself.

Service names may contain dots (`[A-Za-z0-9._-]`), so a plain name is tried whole
first and as `<tag>.<rest>` second: `candidates` yields both, the caller keeps
the first that names a known service. A name that is none of these is unknown.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["ADDR_LABEL", "Address", "ServiceQuery", "addr_label", "candidates"]

#: The label under the domain that holds the synthetic SRV targets.
ADDR_LABEL = b"addr"
#: The RFC 2782 protocol label that means "no tag".
_PROTOCOL = b"_tcp"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class ServiceQuery:
    """A service's name as asked (case kept: the exact spelling is tried first), maybe a tag."""

    service: str
    tag: str | None


@dataclass(frozen=True, slots=True)
class Address:
    """`<hex>.addr.<domain>`: the IP address encoded in the name."""

    ip: IPAddress


def addr_label(ip: IPAddress) -> bytes:
    """The label of an address's synthetic name (Consul's form: the packed address in hex)."""
    return ip.packed.hex().encode("ascii")


def candidates(labels: Sequence[bytes]) -> Iterator[ServiceQuery | Address]:
    """What the labels under the domain may mean, most specific first (nothing: unknown)."""
    if not labels or any(not label.isascii() for label in labels):
        return
    if len(labels) == 2 and labels[1].lower() == ADDR_LABEL:
        address = _decode_address(labels[0])
        if address is not None:
            yield address
            return
    text = [label.decode("ascii") for label in labels]
    first, last = labels[0], labels[-1]
    if len(labels) >= 2 and first.startswith(b"_") and last.startswith(b"_"):
        service = ".".join(text[:-1])[1:]
        tag = None if last.lower() == _PROTOCOL else text[-1][1:]
        if service and tag != "":
            yield ServiceQuery(service, tag)
        return
    yield ServiceQuery(".".join(text), None)
    if len(labels) >= 2:
        yield ServiceQuery(".".join(text[1:]), text[0])


def _decode_address(label: bytes) -> Address | None:
    if len(label) not in (8, 32):
        return None
    try:
        packed = bytes.fromhex(label.decode("ascii"))
    except ValueError:
        return None
    return Address(ipaddress.ip_address(packed))
