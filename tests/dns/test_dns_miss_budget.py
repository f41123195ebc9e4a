"""Misses (parse and render) are held to a share of each second; hits never are.

A flood of queries the cache cannot answer (distinct names, EDNS options, cases)
would otherwise cost milliseconds each for a large service and take the loop
from HTTP. The clock here is a fake one that each render moves forward.
"""

from __future__ import annotations

import dns.message
import dns.rcode
from dns_support import DOMAIN, registry_with

from frontends.runtime.dns_server import DnsService
from frontends.runtime.dns_settings import DnsSettings
from sd_core.dns import DnsAnswerer, DnsConfig


class RenderClock:
    """Seconds that pass only while rendering: 200 ms a render, plus `now` moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.answerer: DnsAnswerer | None = None

    def __call__(self) -> float:
        assert self.answerer is not None
        return self.now + 0.2 * self.answerer.renders


def _service() -> tuple[DnsService, RenderClock]:
    sim = registry_with(
        ("web", "w-1", "10.0.0.1", 80, ()),
        ("api", "a-1", "10.0.0.2", 80, ()),
        ("db", "d-1", "10.0.0.3", 80, ()),
    )
    clock = RenderClock()
    service = DnsService(DnsSettings(0, DnsConfig(), miss_share=0.25), sim.registry, clock)
    clock.answerer = service.answerer
    return service, clock


def _ask(service: DnsService, name: str) -> int:
    query = dns.message.make_query(f"{name}.{DOMAIN}", "A")
    wire = service.answer(query.to_wire(), False)
    assert wire is not None
    return dns.message.from_wire(wire).rcode()


def test_misses_past_the_share_get_servfail_until_the_second_is_over() -> None:
    service, clock = _service()
    assert _ask(service, "web") == dns.rcode.NOERROR  # 0.2 s spent
    assert _ask(service, "api") == dns.rcode.NOERROR  # under 0.25 before it: 0.4 s spent
    assert _ask(service, "db") == dns.rcode.SERVFAIL  # over: not rendered
    assert service.answerer.renders == 2
    assert service.counters.busy == 1
    assert _ask(service, "web") == dns.rcode.NOERROR  # a hit is served all the same
    clock.now += 1.0  # the next second
    assert _ask(service, "db") == dns.rcode.NOERROR
    assert service.answerer.renders == 3
    assert service.counters.busy == 1


def test_unknown_names_count_against_the_share_too() -> None:
    service, clock = _service()
    for n in range(2):
        assert _ask(service, f"nothing-{n}") == dns.rcode.NXDOMAIN
    assert _ask(service, "nothing-2") == dns.rcode.SERVFAIL
    clock.now += 1.0
    assert _ask(service, "nothing-2") == dns.rcode.NXDOMAIN
