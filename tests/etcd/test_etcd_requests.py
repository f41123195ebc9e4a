"""Request builders: the paths and JSON bodies the gateway expects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sd_etcd import (
    Compare,
    CompareResult,
    DeleteRangeOp,
    GatewayRequest,
    PutOp,
    RangeOp,
    Target,
    WatchCreate,
    compaction_request,
    delete_range_request,
    key_absent,
    lease_grant_request,
    lease_keepalive_request,
    lease_revoke_request,
    lease_timetolive_request,
    mod_revision_is,
    put_request,
    range_request,
    status_request,
    txn_request,
    watch_request,
)
from sd_etcd.requests import txn_from_json

CASES: list[tuple[GatewayRequest, str, dict[str, Any]]] = [
    (range_request("/a"), "/v3/kv/range", {"key": "L2E="}),
    (
        range_request("/p/", prefix=True, revision=7, limit=100, keys_only=True),
        "/v3/kv/range",
        {"key": "L3Av", "range_end": "L3Aw", "limit": "100", "revision": "7", "keys_only": True},
    ),
    (range_request("/p/", prefix=True, count_only=True), "/v3/kv/range",
     {"key": "L3Av", "range_end": "L3Aw", "count_only": True}),
    (put_request("/p/a", "v1"), "/v3/kv/put", {"key": "L3AvYQ==", "value": "djE="}),
    (
        put_request(b"/p/a", b"", lease=1234, prev_kv=True),
        "/v3/kv/put",
        {"key": "L3AvYQ==", "lease": "1234", "prev_kv": True},
    ),
    (delete_range_request("/p/", prefix=True, prev_kv=True), "/v3/kv/deleterange",
     {"key": "L3Av", "range_end": "L3Aw", "prev_kv": True}),
    (lease_grant_request(10), "/v3/lease/grant", {"TTL": "10"}),
    (lease_grant_request(10, lease_id=77), "/v3/lease/grant", {"TTL": "10", "ID": "77"}),
    (lease_keepalive_request(77), "/v3/lease/keepalive", {"ID": "77"}),
    (lease_revoke_request(77), "/v3/lease/revoke", {"ID": "77"}),
    (lease_timetolive_request(77, keys=True), "/v3/lease/timetolive", {"ID": "77", "keys": True}),
    (compaction_request(10), "/v3/kv/compaction", {"revision": "10"}),
    (compaction_request(10, physical=True), "/v3/kv/compaction",
     {"revision": "10", "physical": True}),
    (status_request(), "/v3/maintenance/status", {}),
    (
        watch_request("/p/", prefix=True, start_revision=5, progress_notify=True, prev_kv=True),
        "/v3/watch",
        {
            "create_request": {
                "key": "L3Av",
                "range_end": "L3Aw",
                "start_revision": "5",
                "progress_notify": True,
                "prev_kv": True,
            }
        },
    ),
]  # fmt: skip


@pytest.mark.parametrize(("request_", "path", "body"), CASES)
def test_builder(request_: GatewayRequest, path: str, body: dict[str, Any]) -> None:
    assert request_.path == path
    assert path.startswith("/v3/")
    assert json.loads(request_.body) == body


def test_watch_requires_a_leader_unless_told_not_to() -> None:
    assert watch_request("/p/").headers == (("Grpc-Metadata-Hasleader", "true"),)
    assert watch_request("/p/", require_leader=False).headers == ()


def test_prefix_and_range_end_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        range_request("/p/", prefix=True, range_end=b"/q")


def test_txn_body() -> None:
    request = txn_request(
        [key_absent("/p/a"), mod_revision_is("/p/b", 3)],
        [PutOp(b"/p/a", b"v", lease=5), DeleteRangeOp(b"/p/b")],
        [RangeOp(b"/p/a")],
    )
    assert request.path == "/v3/kv/txn"
    assert json.loads(request.body) == {
        "compare": [
            # the operand 0 is written: it is how "the key is absent" is asked
            {"key": "L3AvYQ==", "target": "CREATE", "result": "EQUAL", "create_revision": "0"},
            {"key": "L3AvYg==", "target": "MOD", "result": "EQUAL", "mod_revision": "3"},
        ],
        "success": [
            {"request_put": {"key": "L3AvYQ==", "value": "dg==", "lease": "5"}},
            {"request_delete_range": {"key": "L3AvYg=="}},
        ],
        "failure": [{"request_range": {"key": "L3AvYQ=="}}],
    }


@pytest.mark.parametrize(
    ("compare", "field", "operand"),
    [
        (Compare(b"k", Target.VALUE, CompareResult.NOT_EQUAL, b"x"), "value", "eA=="),
        (Compare(b"k", Target.VERSION, CompareResult.GREATER, 2), "version", "2"),
        (Compare(b"k", Target.MOD, CompareResult.LESS, 9), "mod_revision", "9"),
    ],
)
def test_compare_operands(compare: Compare, field: str, operand: str) -> None:
    body = compare.to_json()
    assert body[field] == operand
    assert Compare.from_json(body) == compare


def test_txn_decodes_to_what_was_built() -> None:
    compare = (key_absent("/a"), Compare(b"/b", Target.VALUE, CompareResult.EQUAL, b"x"))
    success = (PutOp(b"/a", b"1", lease=3, prev_kv=True), RangeOp(b"/a", b"/b", 4, 2, True))
    failure = (DeleteRangeOp(b"/a", b"/z", True),)
    body = json.loads(txn_request(compare, success, failure).body)
    assert txn_from_json(body) == (compare, success, failure)


def test_watch_create_decodes_to_what_was_built() -> None:
    request = watch_request("/p/", prefix=True, start_revision=9, prev_kv=True)
    assert WatchCreate.from_json(json.loads(request.body)) == WatchCreate(
        b"/p/", b"/p0", 9, False, True
    )
