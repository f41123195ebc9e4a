"""The DNS interface's decision: from a query's bytes and the registry, the answer's bytes.

I/O-free and loop-free, like the rest of `sd_core`: a frontend reads a datagram
(or a TCP-framed message), calls `DnsAnswerer.answer`, and sends what comes
back (None: send nothing). It reads the registry it is given, the one the HTTP
reads use: one process's `Registry`, or a cluster node's mirror of the store.

Hostile input costs little and never raises: a packet too short for a header,
or with QR set (a response: answering it could loop two servers), is dropped;
an opcode other than QUERY gets NOTIMP, anything but one question FORMERR,
anything dnspython cannot parse FORMERR, all from the header alone. Names
outside the domain get REFUSED (this is no recursive resolver).

Answers for known services are cached (`cache`), in a few shuffled variants,
until an index of a service they were rendered from moves; a hit never parses.
A miss parses and renders, which costs milliseconds for a large service, so the
caller may forbid it (`may_render=False`: SERVFAIL from the header alone, which
resolvers retry); `renders` counts the misses that did render, so a caller can
charge their time to a budget (`frontends/runtime/dns_server.py`).
"""

from __future__ import annotations

import random
from functools import partial

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from ..instance import Instance
from ..registry import Registry
from ..status import Status
from .cache import AnswerCache, CachedAnswer, folded
from .config import DnsConfig
from .lookup import ServiceFinder
from .names import Address, candidates
from .records import SMALLEST, Records, address_rrset, fit, target_of

__all__ = ["UDP_LIMIT", "DnsAnswerer"]

#: The UDP answer limit without EDNS (RFC 1035 4.2.1).
UDP_LIMIT = 512
#: The largest UDP payload offered (and accepted from a client's EDNS).
EDNS_PAYLOAD = 4096
_HEADER = 12
_QR = 0x80  # in the third byte
#: Records rendered per cache miss at most, over its variants: a service of thousands
#: asked over TCP gets fewer shuffled orders rather than seconds of rendering.
_RENDER_BUDGET = 1000
_ADDRESS_TYPES = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}


class DnsAnswerer:
    """Answers queries for `config.domain` from `registry`; `rng` shuffles the instances."""

    __slots__ = (
        "_caches",
        "_domain",
        "_epoch",
        "_finder",
        "_registry",
        "_rng",
        "_soa",
        "config",
        "renders",
    )

    def __init__(
        self, registry: Registry, config: DnsConfig, rng: random.Random | None = None
    ) -> None:
        self.config = config
        self._registry = registry
        self._rng = rng or random.Random()
        self._domain = dns.name.from_text(config.domain)
        self._finder = ServiceFinder(registry)
        half = config.cache_bytes // 2
        self._caches = (AnswerCache(half), AnswerCache(half))  # by transport: UDP, TCP
        self._epoch = registry.index_epoch
        self.renders = 0  # misses parsed and rendered (see the module docstring)
        domain = self._domain
        self._soa = dns.rrset.from_text(
            domain, config.ttl, "IN", "SOA",
            f"ns.{domain} hostmaster.{domain} 1 3600 600 86400 {config.ttl}",
        )  # fmt: skip

    def answer(self, wire: bytes, *, tcp: bool = False, may_render: bool = True) -> bytes | None:
        """The answer to the message `wire` (TCP: without the length prefix), or None.

        `may_render` False: a query the cache cannot answer gets SERVFAIL instead."""
        cache = self._caches[tcp]
        entry = cache.get(wire[2:])  # a question's name in lower case: its own key
        if entry is not None and self._current(entry):
            return wire[:2] + entry.next_variant()
        lowered = folded(wire)
        if lowered is not None and lowered[0] != wire:
            entry = cache.get(lowered[0][2:])
            if entry is not None and self._current(entry):
                variant, end = entry.next_variant(), lowered[1]
                return wire[:2] + variant[:10] + wire[12:end] + variant[end - 2 :]
        return self._miss(wire, tcp, lowered, may_render)

    def _current(self, entry: CachedAnswer) -> bool:
        registry = self._registry
        return registry.index_epoch == self._epoch and entry.current(registry.service_index)

    @property
    def cached_bytes(self) -> int:
        return sum(cache.size for cache in self._caches)

    # --------------------------------------------------------------- misses

    def _miss(
        self, wire: bytes, tcp: bool, lowered: tuple[bytes, int] | None, may_render: bool
    ) -> bytes | None:
        epoch = self._registry.index_epoch
        if epoch != self._epoch:  # the store started over: an index may come round again
            for cache in self._caches:
                cache.clear()
            self._epoch = epoch
        if len(wire) < _HEADER or wire[2] & _QR:
            return None
        opcode = (wire[2] >> 3) & 0x0F
        if opcode != dns.opcode.QUERY:
            return _header_only(wire, dns.rcode.NOTIMP)
        if wire[4:6] != b"\x00\x01":
            return _header_only(wire, dns.rcode.FORMERR)
        if not may_render:
            return _header_only(wire, dns.rcode.SERVFAIL)
        self.renders += 1
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # dnspython's parse errors are of many types, none a bug of ours
            return _header_only(wire, dns.rcode.FORMERR)
        limit = 65535 if tcp else _udp_limit(query)
        variants, depends = self._decide(query, limit)
        if depends and lowered is not None:
            key, end = lowered
            stored = tuple(v[2:12] + v[12:end].lower() + v[end:] for v in variants)
            self._caches[tcp].put(key[2:], CachedAnswer(stored, depends))
        return variants[0]

    def _decide(
        self, query: dns.message.Message, limit: int
    ) -> tuple[tuple[bytes, ...], tuple[tuple[str, int], ...]]:
        """The answer's variants, and what they depend on (empty: not to be cached)."""
        question = query.question[0]
        response = _response(query)
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
            return (response.to_wire(),), ()
        if question.rdclass != dns.rdataclass.IN or not question.name.is_subdomain(self._domain):
            response.set_rcode(dns.rcode.REFUSED)
            return (response.to_wire(),), ()
        response.flags |= dns.flags.AA
        labels = question.name.relativize(self._domain).labels
        if not labels:  # the apex: its SOA, nothing else
            section = (
                response.answer if question.rdtype == dns.rdatatype.SOA else response.authority
            )
            section.append(self._soa)
            return (response.to_wire(),), ()
        tried: list[str] = []
        for meaning in candidates(labels):
            if isinstance(meaning, Address):
                return (self._address(query, meaning),), ()
            found = self._finder.find(meaning.service, tried)
            if found is not None:
                # Found under another spelling: not kept (see `lookup`).
                cacheable = found == meaning.service.lower()
                index = self._registry.service_index
                depends = tuple((name, index(name)) for name in tried) if cacheable else ()
                instances = self._instances(found, meaning.tag)
                return self._service(query, instances, limit), depends
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(self._soa)
        return (response.to_wire(),), ()

    def _instances(self, service_name: str, tag: str | None) -> list[Instance]:
        service = self._registry.views.services[service_name]
        wanted = None if tag is None else tag.lower()
        return [
            instance
            for instance in service.sorted_instances()
            if _serving(instance)
            and (wanted is None or any(t.lower() == wanted for t in instance.tags))
        ]

    def _service(
        self, query: dns.message.Message, instances: list[Instance], limit: int
    ) -> tuple[bytes, ...]:
        """The variants of a known service's answer (one when its order cannot change)."""
        question = query.question[0]
        rdtype = question.rdtype
        targets = [target_of(i) for i in instances]
        if rdtype in _ADDRESS_TYPES:
            version = _ADDRESS_TYPES[rdtype]
            targets = [t for t in targets if t.ip is not None and t.ip.version == version]
        elif rdtype != dns.rdatatype.SRV:
            targets = []
        records = Records(question.name, rdtype, targets, self._domain, self.config.ttl)
        base = len(_response(query).to_wire())

        def build(order: list[int], count: int) -> dns.message.Message:
            response = _response(query)
            response.flags |= dns.flags.AA
            if count:
                records.add_to(response, order[:count])
            else:
                response.authority.append(self._soa)
            return response

        total = len(targets)
        sampled = min(total, limit // SMALLEST + 1)  # more could never fit
        count = 1 if total < 2 else max(1, min(self.config.variants, _RENDER_BUDGET // sampled))
        variants = []
        for _ in range(count):
            order = self._rng.sample(range(total), sampled)
            sizes = [records.sizes[position] for position in order]
            variants.append(fit(partial(build, order), sizes, base, limit, total))
        return tuple(variants)

    def _address(self, query: dns.message.Message, address: Address) -> bytes:
        """One record at most: always within any limit."""
        question = query.question[0]
        response = _response(query)
        response.flags |= dns.flags.AA
        if _ADDRESS_TYPES.get(question.rdtype) == address.ip.version:
            response.answer.append(address_rrset(question.name, self.config.ttl, address.ip))
        else:
            response.authority.append(self._soa)
        return response.to_wire()


def _serving(instance: Instance) -> bool:
    """Where traffic goes: healthy and not in maintenance (what `.../healthy` lists)."""
    return instance.status is Status.HEALTHY and instance.maintenance is None


def _response(query: dns.message.Message) -> dns.message.Message:
    return dns.message.make_response(query, our_payload=EDNS_PAYLOAD)


def _udp_limit(query: dns.message.Message) -> int:
    """512 bytes, or the client's EDNS payload size up to ours (RFC 6891 6.2.5)."""
    if query.edns < 0:
        return UDP_LIMIT
    return max(UDP_LIMIT, min(query.payload, EDNS_PAYLOAD))


def _header_only(wire: bytes, rcode: dns.rcode.Rcode) -> bytes:
    """An answer that echoes the query's id, opcode and RD flag, with no sections."""
    flags = int.from_bytes(wire[2:4], "big")
    message = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
    message.flags = dns.flags.QR | (flags & dns.flags.RD)
    message.set_opcode(dns.opcode.from_flags(flags))
    message.set_rcode(rcode)
    return message.to_wire()
