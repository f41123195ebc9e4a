"""IPv4 addresses in other spellings: judged as the address a probe would reach.

Under the default policy, probes connected to `64:ff9b::a9fe:a9fe` (NAT64)
and `::ffff:0:a9fe:a9fe` (SIIT), which reach the metadata address through a
translator; and a host such as `0xa9fea9fe` is that address to a resolver.
"""

from __future__ import annotations

import ipaddress

import pytest
from core_support import REGISTER, Core, register_body

from sd_core.probe_address_policy import ProbePolicy, inet_aton_address, parse_networks, unwrap

# (address, allowed networks or None for the default, refused?)
FORMS: list[tuple[str, str | None, bool]] = [
    ("64:ff9b::a9fe:a9fe", None, True),  # NAT64 well-known prefix
    ("64:ff9b::169.254.169.254", None, True),
    ("[64:ff9b::a9fe:a9fe]", None, True),
    ("::ffff:0:a9fe:a9fe", None, True),  # SIIT, IPv4-translated
    ("::ffff:0:169.254.0.1", None, True),
    ("::a9fe:a9fe", None, True),  # IPv4-compatible (deprecated)
    ("::169.254.169.254", None, True),
    ("64:ff9b::a00:1", None, False),  # 10.0.0.1 behind NAT64: not link-local
    ("64:ff9b::a00:1", "10.0.0.0/8", False),
    ("64:ff9b::c0a8:101", "10.0.0.0/8", True),  # 192.168.1.1: outside the list
    ("::1", None, False),  # loopback stays IPv6's own, not 0.0.0.1
    ("::1", "::1/128", False),
    ("::", "::/128", False),
    ("64:ff9b::a9fe:a9fe", "169.254.169.254/32", False),  # named explicitly
    ("64:ff9b:1::a9fe:a9fe", None, False),  # not the well-known prefix
]


@pytest.mark.parametrize(("address", "networks", "refused"), FORMS)
def test_ipv6_forms_of_an_ipv4_address_are_judged_as_it(
    address: str, networks: str | None, refused: bool
) -> None:
    policy = ProbePolicy() if networks is None else ProbePolicy(parse_networks(networks))
    reason = policy.refusal(address)
    assert (reason is not None) is refused, reason
    assert (policy.literal_refusal(address) is not None) is refused


def test_unwrap() -> None:
    v4 = ipaddress.IPv4Address("169.254.169.254")
    for text in ("::ffff:a9fe:a9fe", "64:ff9b::a9fe:a9fe", "::ffff:0:a9fe:a9fe", "::a9fe:a9fe"):
        assert unwrap(ipaddress.ip_address(text)) == v4
    assert unwrap(v4) == v4
    assert unwrap(ipaddress.IPv6Address("2001:db8::1")) == ipaddress.IPv6Address("2001:db8::1")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("0xa9fea9fe", "169.254.169.254"),
        ("0XA9FEA9FE", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("169.16689662", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("10.1", "10.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x", None),
        ("08", None),  # not octal
        ("0xg1", None),
        ("256.1.1.1", None),
        ("1.2.3.4.5", None),
        ("1.2.65536", None),
        ("4294967296", None),
        ("example.com", None),
        ("deadbeef", None),  # hex needs its 0x
        ("", None),
    ],
)
def test_inet_aton_forms(host: str, address: str | None) -> None:
    parsed = inet_aton_address(host)
    assert (None if parsed is None else str(parsed)) == address


@pytest.mark.parametrize("host", ["0xa9fea9fe", "0xa9.0xfe.0xa9.0xfe", "169.0xfe.0xa9fe"])
def test_registering_a_numeric_form_of_a_refused_address_warns(host: str) -> None:
    core = Core()
    reply = core.send("POST", REGISTER, register_body("svc", "i-1", host=host))
    assert reply.status == 200
    message = reply.body["message"]
    assert "; health checks refused: " in message
    assert "169.254.169.254" in message
    assert core.present("svc", "i-1")


@pytest.mark.parametrize("host", ["0x0a000001", "0xa9fea9fe.example.com", "service-a"])
def test_other_hosts_register_without_a_warning(host: str) -> None:
    reply = Core().send("POST", REGISTER, register_body("svc", "i-1", host=host))
    assert reply.status == 200
    assert "refused" not in reply.body["message"]


@pytest.mark.parametrize("host", ["2852039166", "169.254.43518", "0251.0376.0251.0376"])
def test_all_digit_numeric_forms_are_refused_as_bad_ipv4(host: str) -> None:
    """All-digit hosts must be dotted quads already: these never register at all."""
    reply = Core().send("POST", REGISTER, register_body("svc", "i-1", host=host))
    assert (reply.status, reply.detail_fields) == (422, ["host"])


@pytest.mark.parametrize("host", ["64:ff9b::a9fe:a9fe", "[::ffff:0:a9fe:a9fe]"])
def test_registering_an_ipv6_form_of_a_refused_address_warns(host: str) -> None:
    reply = Core().send("POST", REGISTER, register_body("svc", "i-1", host=host))
    assert reply.status == 200
    assert "; health checks refused: 169.254.169.254 is link-local" in reply.body["message"]
