"""The gateway's JSON conventions: base64, int64 as strings, defaults left out, prefixes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sd_etcd import EtcdProtocolError, prefix_range_end
from sd_etcd.codec import (
    ALL_KEYS_END,
    b64,
    get_bool,
    get_bytes,
    get_int,
    loads_object,
    unb64,
    without_defaults,
)


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        (b"/service-discovery/", b"/service-discovery0"),
        (b"a", b"b"),
        (b"a\xff", b"b"),
        (b"a\xfe", b"a\xff"),
        (b"\xff\xff", ALL_KEYS_END),
        (b"", ALL_KEYS_END),
    ],
)
def test_prefix_range_end(prefix: bytes, end: bytes) -> None:
    assert prefix_range_end(prefix) == end


@given(st.binary(min_size=1), st.binary())
def test_prefix_range_end_covers_exactly_the_prefix(prefix: bytes, suffix: bytes) -> None:
    end = prefix_range_end(prefix)
    assert prefix + suffix < end or end == ALL_KEYS_END


@given(st.binary())
def test_base64_round_trips(data: bytes) -> None:
    assert unb64(b64(data)) == data


@pytest.mark.parametrize(
    ("obj", "value"),
    [({"revision": "12"}, 12), ({"revision": 12}, 12), ({}, 0), ({"revision": "-1"}, -1)],
)
def test_int64_fields_come_as_strings_or_not_at_all(obj: dict[str, object], value: int) -> None:
    assert get_int(obj, "revision") == value


@pytest.mark.parametrize("bad", [{"revision": "x"}, {"revision": True}, {"revision": 1.5}])
def test_a_malformed_int64_is_a_protocol_error(bad: dict[str, object]) -> None:
    with pytest.raises(EtcdProtocolError):
        get_int(bad, "revision")


def test_missing_fields_read_as_their_defaults() -> None:
    assert get_bool({}, "succeeded") is False
    assert get_bytes({}, "value") == b""
    assert get_bytes({"value": "djE="}, "value") == b"v1"


@pytest.mark.parametrize("body", [b"not json", b"[1]", b"\xff", b""])
def test_a_body_that_is_not_an_object_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(EtcdProtocolError):
        loads_object(body)


def test_bad_base64_is_a_protocol_error() -> None:
    with pytest.raises(EtcdProtocolError):
        unb64("!!!")


def test_defaults_are_left_out_like_the_gateway_does() -> None:
    fields = {"a": 0, "b": "0", "c": "", "d": False, "e": None, "f": [], "g": "1", "h": True}
    assert json.dumps(without_defaults(fields)) == '{"g": "1", "h": true}'
