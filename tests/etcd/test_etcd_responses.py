"""Response parsers, on bodies shaped exactly as etcd 3.4's gateway writes them (see
/work/shared/CLUSTER.md and docs/cluster.md): base64, int64 strings, defaults left out."""

from __future__ import annotations

import pytest

import sd_etcd
from sd_etcd.errors import GRPC_UNKNOWN

HEADER = (
    b'"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709",'
    b'"revision":"4","raft_term":"2"}'
)
H = sd_etcd.Header(15118495548433857066, 13668033151171901709, 4, 2)


def test_range_with_limit() -> None:
    body = (
        b"{" + HEADER + b',"kvs":[{"key":"L3AvYQ==","create_revision":"2","mod_revision":"3",'
        b'"version":"2","value":"djI="}],"more":true,"count":"2"}'
    )
    assert sd_etcd.parse_range(200, body) == sd_etcd.RangeResult(
        kvs=(sd_etcd.KeyValue(b"/p/a", b"v2", 2, 3, 2),), count=2, more=True, header=H
    )


def test_an_empty_range_has_no_kvs_and_no_count() -> None:
    assert sd_etcd.parse_range(200, b"{" + HEADER + b"}") == sd_etcd.RangeResult((), 0, False, H)


def test_keys_only_and_empty_values_have_no_value_field() -> None:
    body = b'{"kvs":[{"key":"L3AvYg==","create_revision":"4","mod_revision":"4","version":"1",' \
        b'"lease":"1234"}],"count":"1"}'  # fmt: skip
    (kv,) = sd_etcd.parse_range(200, body).kvs
    assert kv == sd_etcd.KeyValue(b"/p/b", b"", 4, 4, 1, lease=1234)


def test_put_with_and_without_prev_kv() -> None:
    assert sd_etcd.parse_put(200, b"{" + HEADER + b"}") == sd_etcd.PutResult(H)
    body = (
        b"{" + HEADER + b',"prev_kv":{"key":"L3AvYQ==","create_revision":"2",'
        b'"mod_revision":"2","version":"1","value":"djE="}}'
    )
    assert sd_etcd.parse_put(200, body).prev_kv == sd_etcd.KeyValue(b"/p/a", b"v1", 2, 2, 1)


def test_delete_range() -> None:
    body = (
        b"{" + HEADER + b',"deleted":"1","prev_kvs":[{"key":"L3AvYg==",'
        b'"create_revision":"4","mod_revision":"4","version":"1"}]}'
    )
    assert sd_etcd.parse_delete_range(200, body) == sd_etcd.DeleteRangeResult(
        1, H, (sd_etcd.KeyValue(b"/p/b", b"", 4, 4, 1),)
    )
    assert sd_etcd.parse_delete_range(200, b"{" + HEADER + b"}").deleted == 0


def test_a_succeeded_txn() -> None:
    body = (
        b"{" + HEADER + b',"succeeded":true,"responses":[{"response_put":'
        b'{"header":{"revision":"5"}}}]}'
    )
    result = sd_etcd.parse_txn(200, body)
    assert result.succeeded
    assert result.responses == (sd_etcd.PutResult(sd_etcd.Header(revision=5)),)


def test_a_failed_txn_has_no_succeeded_field() -> None:
    body = (
        b"{" + HEADER + b',"responses":[{"response_range":{"header":{"revision":"5"},'
        b'"kvs":[{"key":"L3AvYQ==","create_revision":"2","mod_revision":"5","version":"3",'
        b'"value":"djM="}],"count":"1"}},{"response_delete_range":{"header":{"revision":"5"}}}]}'
    )
    result = sd_etcd.parse_txn(200, body)
    assert result.succeeded is False
    assert result.responses == (
        sd_etcd.RangeResult(
            (sd_etcd.KeyValue(b"/p/a", b"v3", 2, 5, 3),), 1, False, sd_etcd.Header(revision=5)
        ),
        sd_etcd.DeleteRangeResult(0, sd_etcd.Header(revision=5)),
    )


def test_lease_grant_gives_the_ttl_etcd_chose() -> None:
    lease = sd_etcd.parse_lease_grant(
        200, b"{" + HEADER + b',"ID":"4111120343447744273","TTL":"2"}'
    )
    assert (lease.id, lease.ttl) == (4111120343447744273, 2)


def test_keepalive_is_wrapped_in_result_and_a_stream_line() -> None:
    body = b'{"result":{' + HEADER + b',"ID":"1234","TTL":"5"}}\n'
    assert sd_etcd.parse_lease_keepalive(200, body) == sd_etcd.KeepAlive(1234, 5, H)


def test_keepalive_on_an_expired_lease_is_200_without_ttl() -> None:
    body = b'{"result":{' + HEADER + b',"ID":"999"}}\n'
    assert sd_etcd.parse_lease_keepalive(200, body) == sd_etcd.KeepAlive(999, None, H)


def test_keepalive_in_band_error() -> None:
    body = b'{"error":{"grpc_code":14,"http_code":503,"message":"transport is closing"}}'
    with pytest.raises(sd_etcd.EtcdUnavailable):
        sd_etcd.parse_lease_keepalive(200, body)


def test_timetolive_on_an_expired_lease_says_minus_one() -> None:
    expired = sd_etcd.parse_lease_timetolive(200, b"{" + HEADER + b',"ID":"999","TTL":"-1"}')
    assert (expired.id, expired.ttl, expired.keys) == (999, None, ())
    body = b"{" + HEADER + b',"ID":"1234","TTL":"4","grantedTTL":"5","keys":["L3AvbDE="]}'
    live = sd_etcd.parse_lease_timetolive(200, body)
    assert (live.ttl, live.granted_ttl, live.keys) == (4, 5, (b"/p/l1",))


def test_compaction_and_status() -> None:
    assert sd_etcd.parse_compaction(200, b"{" + HEADER + b"}").header == H
    status = sd_etcd.parse_status(
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
        (404, _error("etcdserver: requested lease not found", 5), sd_etcd.LeaseNotFound),
        (400, _error("etcdserver: mvcc: required revision has been compacted", 11),
         sd_etcd.Compacted),
        (400, _error("etcdserver: mvcc: required revision is a future revision", 11),
         sd_etcd.FutureRevision),
        (503, _error("etcdserver: request timed out", 14), sd_etcd.EtcdUnavailable),
        (500, _error("context deadline exceeded", 2), sd_etcd.EtcdUnavailable),
        (500, _error("etcdserver: no leader", 2), sd_etcd.EtcdUnavailable),
        (412, _error("etcdserver: lease already exists", 9), sd_etcd.EtcdRequestError),
        (400, _error("etcdserver: key is not provided", 3), sd_etcd.EtcdRequestError),
        (500, _error("something new", 2), sd_etcd.EtcdRequestError),
        (404, b"Not Found\n", sd_etcd.EtcdRequestError),
        (502, b"<html>bad gateway</html>", sd_etcd.EtcdRequestError),
        (503, b"", sd_etcd.EtcdUnavailable),
    ],
)  # fmt: skip
def test_errors_say_who_is_at_fault(
    status: int, body: bytes, kind: type[sd_etcd.EtcdError]
) -> None:
    with pytest.raises(sd_etcd.EtcdError) as caught:
        sd_etcd.parse_range(status, body)
    assert type(caught.value) is kind
    assert caught.value.http_status == status


def test_errors_keep_both_codes_and_the_message() -> None:
    with pytest.raises(sd_etcd.EtcdUnavailable) as caught:
        sd_etcd.parse_put(500, _error("context deadline exceeded", 2))
    assert (caught.value.http_status, caught.value.grpc_code) == (500, GRPC_UNKNOWN)
    assert caught.value.message == "context deadline exceeded"


def test_a_compacted_range_does_not_know_the_compact_revision() -> None:
    with pytest.raises(sd_etcd.Compacted) as caught:
        sd_etcd.parse_range(
            400, _error("etcdserver: mvcc: required revision has been compacted", 11)
        )
    assert caught.value.compact_revision is None


@pytest.mark.parametrize("body", [b"nope", b'{"kvs":"x"}', b'{"kvs":[{"key":"!!"}]}'])
def test_unreadable_answers_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(sd_etcd.EtcdProtocolError):
        sd_etcd.parse_range(200, body)


def test_keepalive_without_quorum_is_503_with_the_in_band_body() -> None:
    body = (
        b'{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader",'
        b'"http_status":"Service Unavailable"}}'
    )
    with pytest.raises(sd_etcd.EtcdUnavailable) as caught:
        sd_etcd.parse_lease_keepalive(503, body)
    assert (caught.value.grpc_code, caught.value.message) == (14, "etcdserver: no leader")
