"""The hand-written encoders and decoders of the heartbeat path say exactly what the
generic JSON ones say: same bytes out, same values (and the same errors) in."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sd_etcd
from sd_etcd import EtcdProtocolError
from sd_etcd.codec import b64, dumps, get_bytes, get_int
from sd_etcd.requests import txn_json

keys = st.binary(max_size=40)
revisions = st.integers(min_value=-(2**63), max_value=2**63 - 1)
compares = st.builds(
    sd_etcd.Compare,
    keys,
    st.sampled_from(sd_etcd.Target),
    st.sampled_from(sd_etcd.CompareResult),
    st.one_of(revisions, keys),
)
ops = st.one_of(
    st.builds(sd_etcd.PutOp, keys, keys, st.integers(min_value=0, max_value=2**62), st.booleans()),
    st.builds(sd_etcd.RangeOp, keys, keys, revisions, revisions, st.booleans(), st.booleans()),
    st.builds(sd_etcd.DeleteRangeOp, keys, keys, st.booleans()),
)


@given(st.lists(compares, max_size=3), st.lists(ops, max_size=4), st.lists(ops, max_size=3))
def test_a_txn_body_is_its_json_form_dumped(
    compare: list[sd_etcd.Compare], success: list[sd_etcd.TxnOp], failure: list[sd_etcd.TxnOp]
) -> None:
    body = sd_etcd.txn_request(compare, success, failure).body
    assert body == dumps(txn_json(compare, success, failure))


def _generic_key_value(obj: dict[str, Any]) -> sd_etcd.KeyValue:
    """`KeyValue` read field by field with the codec's readers (what `from_json` unrolls)."""
    return sd_etcd.KeyValue(
        get_bytes(obj, "key"),
        get_bytes(obj, "value"),
        *(get_int(obj, name) for name in ("create_revision", "mod_revision", "version", "lease")),
    )


int_fields = st.one_of(
    st.integers(min_value=0, max_value=2**63 - 1).map(str),
    st.integers(min_value=-5, max_value=2**40),
    st.sampled_from(["-3", " 7", "7 ", "x", "", "1.5", "\u0663", True, False, None, 1.5, [1]]),
)


@given(
    st.dictionaries(
        st.sampled_from(["create_revision", "mod_revision", "version", "lease"]), int_fields
    ),
    st.one_of(st.none(), keys.map(b64), st.sampled_from(["QQ", "not base64", "QQ==QQ==", 5])),
    st.one_of(st.none(), keys.map(b64)),
)
def test_a_key_value_reads_as_the_generic_reader_does(
    ints: dict[str, Any], key: Any, value: Any
) -> None:
    obj: dict[str, Any] = dict(ints)
    if key is not None:
        obj["key"] = key
    if value is not None:
        obj["value"] = value
    try:
        expected: sd_etcd.KeyValue | type[EtcdProtocolError] = _generic_key_value(obj)
    except EtcdProtocolError:
        expected = EtcdProtocolError
    if expected is EtcdProtocolError:
        with pytest.raises(EtcdProtocolError):
            sd_etcd.KeyValue.from_json(obj)
    else:
        assert sd_etcd.KeyValue.from_json(obj) == expected


def test_a_txn_outcome_is_the_txn_without_its_responses() -> None:
    body = (
        b'{"header":{"cluster_id":"9","revision":"42"},"succeeded":true,'
        b'"responses":[{"response_put":{"header":{"revision":"42"}}}]}'
    )
    full = sd_etcd.parse_txn(200, body)
    outcome = sd_etcd.parse_txn_outcome(200, body)
    assert (outcome.succeeded, outcome.header, outcome.responses) == (True, full.header, ())
    assert not sd_etcd.parse_txn_outcome(200, b'{"header":{"revision":"3"}}').succeeded
    with pytest.raises(EtcdProtocolError):
        sd_etcd.parse_txn_outcome(200, b'{"responses":{}}')
    with pytest.raises(sd_etcd.EtcdError):
        sd_etcd.parse_txn_outcome(503, b'{"error":"etcdserver: request timed out","code":14}')
