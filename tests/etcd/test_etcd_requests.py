"""Request builders: the paths and JSON bodies the gateway expects."""

from __future__ import annotations

import json
from typing import Any

import pytest

import sd_etcd
from sd_etcd.requests import txn_from_json

CASES: list[tuple[sd_etcd.GatewayRequest, str, dict[str, Any]]] = [
    (sd_etcd.range_request("/a"), "/v3/kv/range", {"key": "L2E="}),
    (
        sd_etcd.range_request("/p/", prefix=True, revision=7, limit=100, keys_only=True),
        "/v3/kv/range",
        {"key": "L3Av", "range_end": "L3Aw", "limit": "100", "revision": "7", "keys_only": True},
    ),
    (sd_etcd.range_request("/p/", prefix=True, count_only=True), "/v3/kv/range",
     {"key": "L3Av", "range_end": "L3Aw", "count_only": True}),
    (sd_etcd.put_request("/p/a", "v1"), "/v3/kv/put", {"key": "L3AvYQ==", "value": "djE="}),
    (
        sd_etcd.put_request(b"/p/a", b"", lease=1234, prev_kv=True),
        "/v3/kv/put",
        {"key": "L3AvYQ==", "lease": "1234", "prev_kv": True},
    ),
    (sd_etcd.delete_range_request("/p/", prefix=True, prev_kv=True), "/v3/kv/deleterange",
     {"key": "L3Av", "range_end": "L3Aw", "prev_kv": True}),
    (sd_etcd.lease_grant_request(10), "/v3/lease/grant", {"TTL": "10"}),
    (sd_etcd.lease_grant_request(10, lease_id=77), "/v3/lease/grant", {"TTL": "10", "ID": "77"}),
    (sd_etcd.lease_keepalive_request(77), "/v3/lease/keepalive", {"ID": "77"}),
    (sd_etcd.lease_revoke_request(77), "/v3/lease/revoke", {"ID": "77"}),
    (sd_etcd.lease_timetolive_request(77, keys=True), "/v3/lease/timetolive",
     {"ID": "77", "keys": True}),
    (sd_etcd.compaction_request(10), "/v3/kv/compaction", {"revision": "10"}),
    (sd_etcd.compaction_request(10, physical=True), "/v3/kv/compaction",
     {"revision": "10", "physical": True}),
    (sd_etcd.status_request(), "/v3/maintenance/status", {}),
    (
        sd_etcd.watch_request(
            "/p/", prefix=True, start_revision=5, progress_notify=True, prev_kv=True
        ),
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
def test_builder(request_: sd_etcd.GatewayRequest, path: str, body: dict[str, Any]) -> None:
    assert request_.path == path
    assert path.startswith("/v3/")
    assert json.loads(request_.body) == body


def test_watch_requires_a_leader_unless_told_not_to() -> None:
    assert sd_etcd.watch_request("/p/").headers == (("Grpc-Metadata-Hasleader", "true"),)
    assert sd_etcd.watch_request("/p/", require_leader=False).headers == ()


def test_prefix_and_range_end_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        sd_etcd.range_request("/p/", prefix=True, range_end=b"/q")


def test_txn_body() -> None:
    request = sd_etcd.txn_request(
        [sd_etcd.key_absent("/p/a"), sd_etcd.mod_revision_is("/p/b", 3)],
        [sd_etcd.PutOp(b"/p/a", b"v", lease=5), sd_etcd.DeleteRangeOp(b"/p/b")],
        [sd_etcd.RangeOp(b"/p/a")],
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
        (
            sd_etcd.Compare(b"k", sd_etcd.Target.VALUE, sd_etcd.CompareResult.NOT_EQUAL, b"x"),
            "value",
            "eA==",
        ),
        (
            sd_etcd.Compare(b"k", sd_etcd.Target.VERSION, sd_etcd.CompareResult.GREATER, 2),
            "version",
            "2",
        ),
        (
            sd_etcd.Compare(b"k", sd_etcd.Target.MOD, sd_etcd.CompareResult.LESS, 9),
            "mod_revision",
            "9",
        ),
    ],
)
def test_compare_operands(compare: sd_etcd.Compare, field: str, operand: str) -> None:
    body = compare.to_json()
    assert body[field] == operand
    assert sd_etcd.Compare.from_json(body) == compare


def test_txn_decodes_to_what_was_built() -> None:
    compare = (
        sd_etcd.key_absent("/a"),
        sd_etcd.Compare(b"/b", sd_etcd.Target.VALUE, sd_etcd.CompareResult.EQUAL, b"x"),
    )
    success = (
        sd_etcd.PutOp(b"/a", b"1", lease=3, prev_kv=True),
        sd_etcd.RangeOp(b"/a", b"/b", 4, 2, True),
    )
    failure = (sd_etcd.DeleteRangeOp(b"/a", b"/z", True),)
    body = json.loads(sd_etcd.txn_request(compare, success, failure).body)
    assert txn_from_json(body) == (compare, success, failure)


def test_watch_create_decodes_to_what_was_built() -> None:
    request = sd_etcd.watch_request("/p/", prefix=True, start_revision=9, prev_kv=True)
    assert sd_etcd.WatchCreate.from_json(json.loads(request.body)) == sd_etcd.WatchCreate(
        b"/p/", b"/p0", 9, False, True
    )
