"""What the DNS interface answers, decided by `sd_core.dns` on a fake clock."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from sd_core.cluster.testing import SimulatedCluster
from sd_core.dns import DnsAnswerer, DnsConfig
from tests.dns.dns_support import addresses, answerer, ask, register, registry_with, rrset_of

WEB = (
    ("web", "w1", "10.0.0.1", 8001, ("blue",)),
    ("web", "w2", "10.0.0.2", 8002, ()),
    ("web", "w3", "fd00::3", 8003, ("blue",)),
    ("web", "w4", "api.example.com", 8004, ("blue", "green")),
)


def test_a_lists_healthy_ipv4_instances_and_aaaa_the_ipv6_ones() -> None:
    dns_ = answerer(registry_with(*WEB))
    response = ask(dns_, "web.service.discovery.")
    assert response.rcode() == dns.rcode.NOERROR and response.flags & dns.flags.AA
    assert sorted(addresses(response)) == ["10.0.0.1", "10.0.0.2"]
    assert addresses(ask(dns_, "web.service.discovery.", "AAAA")) == ["fd00::3"]


def test_unhealthy_and_drained_instances_are_left_out() -> None:
    sim = registry_with(*WEB)
    dns_ = answerer(sim)
    assert len(addresses(ask(dns_, "web.service.discovery."))) == 2
    sim.set_probe("web", "w1", healthy=False)
    sim.advance(120)
    sim.registry.start_maintenance("web", "w2", "deploy", sim.clock.now)
    response = ask(dns_, "web.service.discovery.")
    assert response.rcode() == dns.rcode.NOERROR and response.answer == []
    assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_srv_in_both_forms_with_addresses_in_the_additional_section() -> None:
    dns_ = answerer(registry_with(*WEB))
    for name in ("web.service.discovery.", "_web._tcp.service.discovery."):
        response = ask(dns_, name, "SRV")
        srv = rrset_of(response, "SRV")
        assert srv is not None
        targets = {r.target.to_text(): r.port for r in srv}
        assert targets == {
            "0a000001.addr.service.discovery.": 8001,
            "0a000002.addr.service.discovery.": 8002,
            "fd000000000000000000000000000003.addr.service.discovery.": 8003,
            "api.example.com.": 8004,
        }
        glue = {r.name.to_text(): r[0].to_text() for r in response.additional}
        assert glue == {
            "0a000001.addr.service.discovery.": "10.0.0.1",
            "0a000002.addr.service.discovery.": "10.0.0.2",
            "fd000000000000000000000000000003.addr.service.discovery.": "fd00::3",
        }


def test_each_srv_record_has_its_own_additional_record() -> None:
    """Instances sharing a host: HAProxy pairs SRV and additional records one to one."""
    sim = registry_with(*(("one-host", f"i{n}", "127.0.0.1", 8000 + n, ()) for n in range(3)))
    query = dns.message.make_query("_one-host._tcp.service.discovery.", "SRV")
    wire = answerer(sim).answer(query.to_wire()) or b""
    response = dns.message.from_wire(wire, one_rr_per_rrset=True)
    assert len(response.answer) == 3 and len(response.additional) == 3
    assert {r.name.to_text() for r in response.additional} == {"7f000001.addr.service.discovery."}


def test_the_synthetic_target_names_are_answered_too() -> None:
    dns_ = answerer(registry_with(*WEB))
    assert addresses(ask(dns_, "0A000001.addr.service.discovery.")) == ["10.0.0.1"]
    v6 = "fd000000000000000000000000000003.addr.service.discovery."
    assert addresses(ask(dns_, v6, "AAAA")) == ["fd00::3"]
    empty = ask(dns_, v6, "A")
    assert empty.rcode() == dns.rcode.NOERROR and empty.answer == []
    assert ask(dns_, "0a0001.addr.service.discovery.").rcode() == dns.rcode.NXDOMAIN


def test_a_tag_narrows_in_both_forms_and_tcp_is_no_tag() -> None:
    dns_ = answerer(registry_with(*WEB))

    def ports(name: str) -> set[int]:
        srv = rrset_of(ask(dns_, name, "SRV"), "SRV")
        return {r.port for r in srv} if srv is not None else set()

    assert ports("blue.web.service.discovery.") == {8001, 8003, 8004}
    assert ports("_web._GREEN.service.discovery.") == {8004}
    assert ports("_web._tcp.service.discovery.") == {8001, 8002, 8003, 8004}
    none = ask(dns_, "red.web.service.discovery.", "SRV")
    assert none.rcode() == dns.rcode.NOERROR and none.answer == []


def test_names_are_matched_without_regard_to_case_and_echoed_as_asked() -> None:
    sim = registry_with(("Game.Eu", "g1", "10.0.0.9", 9000, ()), *WEB)
    dns_ = answerer(sim)
    response = ask(dns_, "gAME.eu.Service.Discovery.")
    assert addresses(response) == ["10.0.0.9"]
    assert response.answer[0].name.to_text() == "gAME.eu.Service.Discovery."
    assert len(addresses(ask(dns_, "WEB.SERVICE.DISCOVERY."))) == 2


def test_unknown_names_are_nxdomain_and_a_service_without_instances_empty() -> None:
    sim = registry_with(*WEB)
    dns_ = answerer(sim)
    for name in ("nope.service.discovery.", "a.b.web.service.discovery.", "_x.service.discovery."):
        response = ask(dns_, name)
        assert response.rcode() == dns.rcode.NXDOMAIN, name
        assert response.authority[0].rdtype == dns.rdatatype.SOA
    for instance_id in ("w1", "w2", "w3", "w4"):
        sim.set_probe("web", instance_id, healthy=False)
    sim.advance(120)
    response = ask(dns_, "web.service.discovery.", "SRV")
    assert response.rcode() == dns.rcode.NOERROR and response.answer == []


def test_other_zones_and_classes_are_refused() -> None:
    dns_ = answerer(registry_with(*WEB))
    assert ask(dns_, "web.example.com.").rcode() == dns.rcode.REFUSED
    query = dns.message.make_query("web.service.discovery.", "A", rdclass="CH")
    wire = dns_.answer(query.to_wire())
    assert wire is not None and dns.message.from_wire(wire).rcode() == dns.rcode.REFUSED


def test_the_apex_has_an_soa() -> None:
    dns_ = answerer(registry_with(*WEB))
    assert rrset_of(ask(dns_, "service.discovery.", "SOA"), "SOA") is not None


def test_the_domain_and_ttl_are_settings() -> None:
    dns_ = answerer(registry_with(*WEB), domain="consul.example.", ttl=5)
    response = ask(dns_, "web.CONSUL.example.")
    assert response.answer[0].ttl == 5 and len(addresses(response)) == 2
    assert ask(dns_, "web.service.discovery.").rcode() == dns.rcode.REFUSED


def test_answers_are_shuffled() -> None:
    instances = [("big", f"b{n}", f"10.1.0.{n}", 80, ()) for n in range(1, 9)]
    dns_ = answerer(registry_with(*instances))
    orders = [tuple(addresses(ask(dns_, "big.service.discovery."))) for _ in range(8)]
    assert all(len(order) == 8 for order in orders)
    assert orders[0] != orders[1]  # the first hit already hands out another order


def test_a_cached_answer_follows_the_registry() -> None:
    sim = registry_with(*WEB)
    dns_ = answerer(sim)
    query = dns.message.make_query("web.service.discovery.", "A")
    first = dns_.answer(query.to_wire())
    query.id = (query.id + 1) % 65536
    second = dns_.answer(query.to_wire())
    assert first is not None and second is not None
    assert dns.message.from_wire(second).id == query.id and dns_.cached_bytes > 0
    register(sim, "web", "w5", "10.0.0.5", 8005)
    sim.advance(1)
    assert "10.0.0.5" in addresses(dns.message.from_wire(dns_.answer(query.to_wire()) or b""))
    sim.unregister("web", "w5")
    assert "10.0.0.5" not in addresses(dns.message.from_wire(dns_.answer(query.to_wire()) or b""))


def test_a_name_that_becomes_a_service_is_not_answered_from_cache() -> None:
    """`blue.web` answered as tag `blue` of `web` until a service named `blue.web` exists."""
    sim = registry_with(*WEB)
    dns_ = answerer(sim)
    assert len(addresses(ask(dns_, "blue.web.service.discovery."))) == 1
    register(sim, "blue.web", "bw", "10.9.9.9", 80)
    assert addresses(ask(dns_, "blue.web.service.discovery.")) == ["10.9.9.9"]


def test_the_cache_is_bounded_in_bytes() -> None:
    instances = [(f"s{n}", "i", f"10.2.{n // 250}.{n % 250}", 80, ()) for n in range(300)]
    dns_ = answerer(registry_with(*instances), cache_bytes=20_000)
    for n in range(300):
        assert addresses(ask(dns_, f"s{n}.service.discovery.", "SRV")) != []
    assert 0 < dns_.cached_bytes <= 20_000


def test_udp_answers_over_512_bytes_are_truncated_and_tcp_ones_whole() -> None:
    instances = [("big", f"b{n}", f"10.3.0.{n}", 80, ()) for n in range(1, 101)]
    dns_ = answerer(registry_with(*instances))
    for rdtype in ("A", "SRV"):
        query = dns.message.make_query("big.service.discovery.", rdtype)
        wire = dns_.answer(query.to_wire()) or b""
        response = dns.message.from_wire(wire)
        assert len(wire) <= 512 and response.flags & dns.flags.TC
        assert 0 < len(response.answer[0]) < 100
        whole = ask(dns_, "big.service.discovery.", rdtype, tcp=True)
        assert not whole.flags & dns.flags.TC and len(whole.answer[0]) == 100


def test_edns_raises_the_udp_limit_to_the_clients_size() -> None:
    instances = [("big", f"b{n}", f"10.3.0.{n}", 80, ()) for n in range(1, 101)]
    dns_ = answerer(registry_with(*instances))
    response = ask(dns_, "big.service.discovery.", use_edns=0, payload=4096)
    assert not response.flags & dns.flags.TC and len(addresses(response)) == 100
    small = ask(dns_, "big.service.discovery.", use_edns=0, payload=1232)
    assert small.flags & dns.flags.TC and len(small.to_wire()) <= 1232


def test_a_cluster_node_answers_from_its_own_mirror() -> None:
    cluster = SimulatedCluster(nodes=2)
    cluster.register(0, "api", "a1", host="10.4.0.1", port=81)
    cluster.advance(5)
    node = cluster.nodes[1]
    dns_ = DnsAnswerer(node.registry, DnsConfig())
    assert addresses(ask(dns_, "api.service.discovery.")) == ["10.4.0.1"]
    cluster.unregister(0, "api", "a1")
    cluster.advance(5)
    assert ask(dns_, "api.service.discovery.").rcode() == dns.rcode.NXDOMAIN


def test_a_store_that_started_over_empties_the_cache() -> None:
    """After `restart_indexes` (etcd lost its data) an index can come round again: an answer
    cached at index 2 must not be taken for the registry at a new index 2."""
    sim = registry_with()
    dns_ = answerer(sim)
    register(sim, "web", "w1", "10.0.0.1", 80)
    sim.advance(10)
    index = sim.registry.service_index("web")
    assert addresses(ask(dns_, "web.service.discovery.")) == ["10.0.0.1"]
    register(sim, "web", "w2", "10.0.0.2", 80)
    sim.advance(10)
    sim.registry.restart_indexes()
    sim.registry.mark_service("web", index)  # the new store's revision reaches the old index
    assert sim.registry.service_index("web") == index
    assert sorted(addresses(ask(dns_, "web.service.discovery."))) == ["10.0.0.1", "10.0.0.2"]


def test_a_large_answer_is_rendered_in_fewer_orders() -> None:
    """Rendering is the cost of a miss: past 1,000 records over all shuffled orders, fewer
    orders (here one) are kept, the same bytes handed out each time until the next change."""
    instances = [("big", f"b{n}", f"10.5.{n // 250}.{n % 250}", 80, ()) for n in range(600)]
    dns_ = answerer(registry_with(*instances))
    first, second = (addresses(ask(dns_, "big.service.discovery.", tcp=True)) for _ in range(2))
    assert len(first) == 600 and first == second


def test_every_spelling_of_a_name_shares_one_cached_answer_and_gets_its_own_echo() -> None:
    """Resolvers randomise a name's case and check the answer repeats it (DNS 0x20)."""
    dns_ = answerer(registry_with(*WEB))
    spellings = ["WEB.service.discovery.", "web.service.discovery.", "wEb.SERVICE.Discovery."]
    first = ask(dns_, spellings[0], "SRV")
    cached = dns_.cached_bytes
    for spelling in spellings:
        response = ask(dns_, spelling, "SRV")
        assert response.question[0].name.to_text() == spelling
        assert response.answer[0].name.to_text() == spelling
        assert len(response.answer[0]) == 4 and len(response.additional) == 3
    assert dns_.cached_bytes == cached and first.answer[0] == response.answer[0]


def test_names_differing_only_in_case_answer_alike_whatever_the_spelling_asked() -> None:
    sim = registry_with(("Api", "a1", "10.6.0.1", 80, ()))
    dns_ = answerer(sim)
    assert addresses(ask(dns_, "API.service.discovery.")) == ["10.6.0.1"]
    register(sim, "APi", "a2", "10.6.0.2", 80)  # sorts before `Api`: answers from now on
    sim.advance(10)
    assert addresses(ask(dns_, "api.service.discovery.")) == ["10.6.0.2"]
    register(sim, "api", "a3", "10.6.0.3", 80)  # the lower-case name wins
    sim.advance(10)
    for spelling in ("Api", "API", "api"):
        assert addresses(ask(dns_, f"{spelling}.service.discovery.")) == ["10.6.0.3"]
