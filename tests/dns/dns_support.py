"""A simulated registry with a DNS answerer on it, and a client's side of the wire."""

from __future__ import annotations

import random
from collections.abc import Sequence

import dns.message
import dns.rdatatype
import dns.rrset

from sd_core import RegisterRequest
from sd_core.dns import DnsAnswerer, DnsConfig
from sd_core.testing import SimulatedRegistry

DOMAIN = "service.discovery."


def registry_with(*instances: tuple[str, str, str, int, Sequence[str]]) -> SimulatedRegistry:
    """A registry (fake clock) whose instances (service, id, host, port, tags) passed a probe."""
    sim = SimulatedRegistry()
    for service, instance_id, host, port, tags in instances:
        register(sim, service, instance_id, host, port, tags)
    sim.advance(10)  # first probes pass (at most 100 a second start)
    return sim


def register(
    sim: SimulatedRegistry, service: str, instance_id: str, host: str, port: int,
    tags: Sequence[str] = (),
) -> None:  # fmt: skip
    request = RegisterRequest(
        service_name=service, instance_id=instance_id, host=host, port=port, tags=tuple(tags)
    )
    sim.registry.register(request, sim.clock.now)
    sim.advance(0)


def answerer(sim: SimulatedRegistry, **config: int | str) -> DnsAnswerer:
    return DnsAnswerer(sim.registry, DnsConfig(**config), random.Random(7))  # type: ignore[arg-type]


def ask(
    answerer: DnsAnswerer, name: str, rdtype: str = "A", *, tcp: bool = False,
    use_edns: int | bool = False, payload: int = 1232,
) -> dns.message.Message:  # fmt: skip
    """Send one query through the answerer and parse what comes back."""
    query = dns.message.make_query(name, rdtype, use_edns=use_edns, payload=payload)
    wire = answerer.answer(query.to_wire(), tcp=tcp)
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.id == query.id
    return response


def addresses(response: dns.message.Message) -> list[str]:
    return [r.to_text() for rrset in response.answer for r in rrset]


def rrset_of(response: dns.message.Message, rdtype: str) -> dns.rrset.RRset | None:
    wanted = dns.rdatatype.from_text(rdtype)
    return next((r for r in response.answer if r.rdtype == wanted), None)
