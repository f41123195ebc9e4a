"""Malformed and hostile queries: bounded work, never an exception, never an answer to an answer."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.dns.dns_support import answerer, registry_with

DNS = answerer(registry_with(("web", "w1", "10.0.0.1", 80, ())))


def _rcode(wire: bytes | None) -> int:
    assert wire is not None
    return dns.message.from_wire(wire).rcode()


def _query(**changes: int) -> bytes:
    query = dns.message.make_query("web.service.discovery.", "A")
    for name, value in changes.items():
        setattr(query, name, value)
    return query.to_wire()


def test_short_packets_and_responses_get_nothing() -> None:
    assert DNS.answer(b"") is None and DNS.answer(b"\x12\x34\x01") is None
    response = dns.message.make_response(dns.message.make_query("web.service.discovery.", "A"))
    assert DNS.answer(response.to_wire()) is None


def test_other_opcodes_are_not_implemented() -> None:
    query = dns.message.make_query("web.service.discovery.", "SOA")
    query.set_opcode(dns.opcode.NOTIFY)
    wire = DNS.answer(query.to_wire())
    assert _rcode(wire) == dns.rcode.NOTIMP
    answer = dns.message.from_wire(wire or b"")
    assert answer.id == query.id and answer.flags & dns.flags.QR


def test_anything_but_one_question_is_a_format_error() -> None:
    two = dns.message.make_query("web.service.discovery.", "A")
    two.question.append(two.question[0])
    none = dns.message.make_query("web.service.discovery.", "A")
    none.question.clear()
    assert _rcode(DNS.answer(two.to_wire())) == dns.rcode.FORMERR
    assert _rcode(DNS.answer(none.to_wire())) == dns.rcode.FORMERR


def test_an_unparsable_query_is_a_format_error() -> None:
    wire = _query()
    assert _rcode(DNS.answer(wire[:-3])) == dns.rcode.FORMERR  # question cut short
    assert _rcode(DNS.answer(wire + b"junk")) == dns.rcode.FORMERR


def test_an_unknown_edns_version_is_badvers() -> None:
    query = dns.message.make_query("web.service.discovery.", "A", use_edns=1)
    assert _rcode(DNS.answer(query.to_wire())) == dns.rcode.BADVERS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.booleans())
def test_random_bytes_never_raise(wire: bytes, tcp: bool) -> None:
    answer = DNS.answer(wire, tcp=tcp)
    if answer is not None:
        assert len(answer) <= (65535 if tcp else 512)
        assert dns.message.from_wire(answer, ignore_trailing=True).flags & dns.flags.QR


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 11), st.integers(0, 2**16 - 1))
def test_a_valid_query_with_any_byte_flipped_never_raises(position: int, value: int) -> None:
    wire = bytearray(_query())
    wire[position] = value & 0xFF
    DNS.answer(bytes(wire))
