"""`dig` (Debian's dnsutils) against the DNS interface of each server kind: A, SRV,
NXDOMAIN and TC, asked of every node (a cluster node answers from its own view)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from tests.consumers.dns_registries import KINDS, Registry, registry, tool_or_skip, until

DOMAIN = "service.discovery"


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[Registry]:
    tool_or_skip("dig")
    with registry(request.param) as running:
        yield running


def dig(port: int, *args: str) -> str:
    command = ["dig", "@127.0.0.1", "-p", str(port), "+time=5", "+tries=1", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout


def on_every_node(server: Registry, args: tuple[str, ...], wanted: str) -> None:
    """Each node answers `wanted` (its view follows the store: polled, not waited for)."""
    for port in server.dns_ports:
        until(_answers(port, args, wanted), f"{wanted!r} from {args}")


def _answers(port: int, args: tuple[str, ...], wanted: str) -> Callable[[], bool]:
    return lambda: wanted in dig(port, *args)


def test_a_records_list_the_instances(server: Registry) -> None:
    for n in (1, 2):
        server.register("dig-a", f"a{n}", f"127.0.0.{n}", 8000 + n, check={"type": "ttl"})
    for port in server.dns_ports:
        until(partial(both, port), "both A records")


def both(port: int) -> bool:
    return sorted(dig(port, "+short", f"dig-a.{DOMAIN}", "A").split()) == ["127.0.0.1", "127.0.0.2"]


def test_srv_records_name_the_port_and_an_address_answered_alongside(server: Registry) -> None:
    server.register("dig-srv", "s1", "127.0.0.3", 8443, check={"type": "ttl"})
    target = f"7f000003.addr.{DOMAIN}."
    on_every_node(server, ("+short", f"_dig-srv._tcp.{DOMAIN}", "SRV"), f"1 1 8443 {target}")
    additional = dig(server.dns_ports[0], "+noall", "+additional", f"_dig-srv._tcp.{DOMAIN}", "SRV")
    assert target in additional and "127.0.0.3" in additional
    assert dig(server.dns_ports[0], "+short", target, "A").split() == ["127.0.0.3"]


def test_unknown_names_are_nxdomain(server: Registry) -> None:
    for port in server.dns_ports:
        assert "status: NXDOMAIN" in dig(port, f"no-such-service.{DOMAIN}", "A")


def test_a_large_udp_answer_is_truncated_and_tcp_gives_it_whole(server: Registry) -> None:
    for n in range(60):
        server.register("dig-big", f"b{n}", f"127.0.1.{n}", 9000, check={"type": "ttl"})
    name = f"dig-big.{DOMAIN}"
    on_every_node(server, ("+short", "+tcp", name, "A"), "127.0.1.59")
    port = server.dns_ports[0]
    until(lambda: len(dig(port, "+short", "+tcp", name, "A").split()) == 60, "all 60 over TCP")
    truncated = dig(port, "+noedns", "+ignore", name, "A")
    assert "flags: qr aa tc" in truncated or " tc" in truncated.split("flags:")[1].split(";")[0]
