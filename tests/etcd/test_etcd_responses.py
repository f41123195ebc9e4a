"""Response parsers, on bodies shaped exactly as etcd 3.4's gateway writes them (see
/work/shared/CLUSTER.md and docs/cluster.md): base64, int64 strings, defaults left out."""

from __future__ import annotations

import pytest

from sd_etcd import (
    Compacted,
    DeleteRangeResult,
    EtcdError,
    EtcdProtocolError,
    EtcdRequestError,
    EtcdUnavailable,
    FutureRevision,
    Header,
    KeepAlive,
    KeyValue,
    LeaseNotFound,
    PutResult,
    RangeResult,
    parse_compaction,
    parse_delete_range,
    parse_lease_grant,
    parse_lease_keepalive,
    parse_lease_timetolive,
    parse_put,
    parse_range,
    parse_status,
    parse_txn,
)
from sd_etcd.errors import GRPC_UNKNOWN

HEADER = (
    b'"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709",'
    b'"revision":"4","raft_term":"2"}'
)
H = Header(15118495548433857066, 13668033151171901709, 4, 2)


def test_range_with_limit() -> None:
    body = (
        b"{" + HEADER + b',"kvs":[{"key":"L3AvYQ==","create_revision":"2","mod_revision":"3",'
        b'"version":"2","value":"djI="}],"more":true,"count":"2"}'
    )
    assert parse_range(200, body) == RangeResult(
        kvs=(KeyValue(b"/p/a", b"v2", 2, 3, 2),), count=2, more=True, header=H
    )


def test_an_empty_range_has_no_kvs_and_no_count() -> None:
    assert parse_range(200, b"{" + HEADER + b"}") == RangeResult((), 0, False, H)


def test_keys_only_and_empty_values_have_no_value_field() -> None:
    body = b'{"kvs":[{"key":"L3AvYg==","create_revision":"4","mod_revision":"4","version":"1",' \
        b'"lease":"1234"}],"count":"1"}'  # fmt: skip
    (kv,) = parse_range(200, body).kvs
    assert kv == KeyValue(b"/p/b", b"", 4, 4, 1, lease=1234)


def test_put_with_and_without_prev_kv() -> None:
    assert parse_put(200, b"{" + HEADER + b"}") == PutResult(H)
    body = (
        b"{" + HEADER + b',"prev_kv":{"key":"L3AvYQ==","create_revision":"2",'
        b'"mod_revision":"2","version":"1","value":"djE="}}'
    )
    assert parse_put(200, body).prev_kv == KeyValue(b"/p/a", b"v1", 2, 2, 1)


def test_delete_range() -> None:
    body = (
        b"{" + HEADER + b',"deleted":"1","prev_kvs":[{"key":"L3AvYg==",'
        b'"create_revision":"4","mod_revision":"4","version":"1"}]}'
    )
    assert parse_delete_range(200, body) == DeleteRangeResult(
        1, H, (KeyValue(b"/p/b", b"", 4, 4, 1),)
    )
    assert parse_delete_range(200, b"{" + HEADER + b"}").deleted == 0


def test_a_succeeded_txn() -> None:
    body = (
        b"{" + HEADER + b',"succeeded":true,"responses":[{"response_put":'
        b'{"header":{"revision":"5"}}}]}'
    )
    result = parse_txn(200, body)
    assert result.succeeded
    assert result.responses == (PutResult(Header(revision=5)),)


def test_a_failed_txn_has_no_succeeded_field() -> None:
    body = (
        b"{" + HEADER + b',"responses":[{"response_range":{"header":{"revision":"5"},'
        b'"kvs":[{"key":"L3AvYQ==","create_revision":"2","mod_revision":"5","version":"3",'
        b'"value":"djM="}],"count":"1"}},{"response_delete_range":{"header":{"revision":"5"}}}]}'
    )
    result = parse_txn(200, body)
    assert result.succeeded is False
    assert result.responses == (
        RangeResult((KeyValue(b"/p/a", b"v3", 2, 5, 3),), 1, False, Header(revision=5)),
        DeleteRangeResult(0, Header(revision=5)),
    )


def test_lease_grant_gives_the_ttl_etcd_chose() -> None:
    lease = parse_lease_grant(200, b"{" + HEADER + b',"ID":"4111120343447744273","TTL":"2"}')
    assert (lease.id, lease.ttl) == (4111120343447744273, 2)


def test_keepalive_is_wrapped_in_result_and_a_stream_line() -> None:
    body = b'{"result":{' + HEADER + b',"ID":"1234","TTL":"5"}}\n'
    assert parse_lease_keepalive(200, body) == KeepAlive(1234, 5, H)


def test_keepalive_on_an_expired_lease_is_200_without_ttl() -> None:
    body = b'{"result":{' + HEADER + b',"ID":"999"}}\n'
    assert parse_lease_keepalive(200, body) == KeepAlive(999, None, H)


def test_keepalive_in_band_error() -> None:
    body = b'{"error":{"grpc_code":14,"http_code":503,"message":"transport is closing"}}'
    with pytest.raises(EtcdUnavailable):
        parse_lease_keepalive(200, body)


def test_timetolive_on_an_expired_lease_says_minus_one() -> None:
    expired = parse_lease_timetolive(200, b"{" + HEADER + b',"ID":"999","TTL":"-1"}')
    assert (expired.id, expired.ttl, expired.keys) == (999, None, ())
    body = b"{" + HEADER + b',"ID":"1234","TTL":"4","grantedTTL":"5","keys":["L3AvbDE="]}'
    live = parse_lease_timetolive(200, body)
    assert (live.ttl, live.granted_ttl, live.keys) == (4, 5, (b"/p/l1",))


def test_compaction_and_status() -> None:
    assert parse_compaction(200, b"{" + HEADER + b"}").header == H
    status = parse_status(
        200,
        b"{" + HEADER + b',"version":"3.4.23","dbSize":"20480","leader":"13668033151171901709",'
        b'"raftIndex":"4","raftTerm":"2","raftAppliedIndex":"4","dbSizeInUse":"16384"}',
    )
    assert (status.version, status.leader, status.header.cluster_id) == (
        "3.4.23",
        13668033151171901709,
        15118495548433857066,
    )


def _error(message: str, code: int) -> bytes:
    return b'{"error":"%s","message":"%s","code":%d}' % (message.encode(), message.encode(), code)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (404, _error("etcdserver: requested lease not found", 5), LeaseNotFound),
        (400, _error("etcdserver: mvcc: required revision has been compacted", 11), Compacted),
        (400, _error("etcdserver: mvcc: required revision is a future revision", 11),
         FutureRevision),
        (503, _error("etcdserver: request timed out", 14), EtcdUnavailable),
        (500, _error("context deadline exceeded", 2), EtcdUnavailable),
        (500, _error("etcdserver: no leader", 2), EtcdUnavailable),
        (412, _error("etcdserver: lease already exists", 9), EtcdRequestError),
        (400, _error("etcdserver: key is not provided", 3), EtcdRequestError),
        (500, _error("something new", 2), EtcdRequestError),
        (404, b"Not Found\n", EtcdRequestError),
        (502, b"<html>bad gateway</html>", EtcdRequestError),
        (503, b"", EtcdUnavailable),
    ],
)  # fmt: skip
def test_errors_say_who_is_at_fault(status: int, body: bytes, kind: type[EtcdError]) -> None:
    with pytest.raises(EtcdError) as caught:
        parse_range(status, body)
    assert type(caught.value) is kind
    assert caught.value.http_status == status


def test_errors_keep_both_codes_and_the_message() -> None:
    with pytest.raises(EtcdUnavailable) as caught:
        parse_put(500, _error("context deadline exceeded", 2))
    assert (caught.value.http_status, caught.value.grpc_code) == (500, GRPC_UNKNOWN)
    assert caught.value.message == "context deadline exceeded"


def test_a_compacted_range_does_not_know_the_compact_revision() -> None:
    with pytest.raises(Compacted) as caught:
        parse_range(400, _error("etcdserver: mvcc: required revision has been compacted", 11))
    assert caught.value.compact_revision is None


@pytest.mark.parametrize("body", [b"nope", b'{"kvs":"x"}', b'{"kvs":[{"key":"!!"}]}'])
def test_unreadable_answers_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(EtcdProtocolError):
        parse_range(200, body)


def test_keepalive_without_quorum_is_503_with_the_in_band_body() -> None:
    body = (
        b'{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader",'
        b'"http_status":"Service Unavailable"}}'
    )
    with pytest.raises(EtcdUnavailable) as caught:
        parse_lease_keepalive(503, body)
    assert (caught.value.grpc_code, caught.value.message) == (14, "etcdserver: no leader")
