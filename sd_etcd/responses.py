"""Parsers of gateway answers: `(status, body)` in, a typed value out, or the exception
that says who is at fault (see `errors`). They never look at anything but the bytes, so
they read a real etcd's answers and `MemoryEtcd`'s alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .codec import (
    JsonObject,
    b64,
    dumps,
    get_bool,
    get_int,
    get_list,
    get_object,
    get_str,
    int64_text,
    loads_object,
    unb64,
    without_defaults,
)
from .errors import EtcdError, EtcdProtocolError, error_from_status
from .values import (
    Acknowledged,
    DeleteRangeResult,
    Header,
    KeepAlive,
    KeyValue,
    LeaseGrant,
    LeaseTimeToLive,
    PutResult,
    RangeResult,
    Status,
    TxnResponse,
    TxnResult,
    kvs_from_json,
)

__all__ = [
    "error_from_body",
    "parse_compaction",
    "parse_delete_range",
    "parse_lease_grant",
    "parse_lease_keepalive",
    "parse_lease_revoke",
    "parse_lease_timetolive",
    "parse_put",
    "parse_range",
    "parse_status",
    "parse_txn",
    "parse_txn_outcome",
]


def error_from_body(status: int, body: bytes) -> EtcdError:
    """The exception for a non-200 answer. The gateway's error body is
    `{"error": msg, "message": msg, "code": grpc_code}`; anything else (a plain-text 404
    for an unknown path, an HTML proxy page) keeps its status and its text."""
    try:
        obj = loads_object(body)
        nested = get_object(obj, "error") if isinstance(obj.get("error"), dict) else None
        if nested is not None:  # a streaming endpoint (keepalive) failing: 503 + in-band shape
            return _in_band_error(nested)
        message = get_str(obj, "message") or get_str(obj, "error")
        code = get_int(obj, "code")
    except EtcdProtocolError:
        message, code = body[:200].decode(errors="replace").strip(), 0
    return error_from_status(status, code, message or f"HTTP {status}")


def _in_band_error(error: Mapping[str, Any]) -> EtcdError:
    """`{"error": {"grpc_code", "http_code", "message", "http_status"}}`: how a streaming
    endpoint (keepalive, watch) reports failure."""
    return error_from_status(
        get_int(error, "http_code"), get_int(error, "grpc_code"), get_str(error, "message")
    )


def _answer(status: int, body: bytes) -> JsonObject:
    if status != 200:
        raise error_from_body(status, body)
    return loads_object(body)


def _result(obj: JsonObject) -> JsonObject:
    """Unwrap a streaming endpoint's `{"result": ...}` (keepalive), raising its in-band
    `{"error": ...}` if that is what came instead."""
    error = get_object(obj, "error")
    if error is not None:
        raise _in_band_error(error)
    result = get_object(obj, "result")
    if result is None:
        raise EtcdProtocolError(f"expected a result, got {sorted(obj)}")
    return result


def _header(obj: Mapping[str, Any]) -> Header:
    return Header.from_json(get_object(obj, "header"))


def _optional_kv(obj: Mapping[str, Any], field: str) -> KeyValue | None:
    inner = get_object(obj, field)
    return None if inner is None else KeyValue.from_json(inner)


def range_from_json(obj: Mapping[str, Any]) -> RangeResult:
    return RangeResult(
        kvs=kvs_from_json(get_list(obj, "kvs")),
        count=get_int(obj, "count"),
        more=get_bool(obj, "more"),
        header=_header(obj),
    )


def put_from_json(obj: Mapping[str, Any]) -> PutResult:
    return PutResult(header=_header(obj), prev_kv=_optional_kv(obj, "prev_kv"))


def delete_range_from_json(obj: Mapping[str, Any]) -> DeleteRangeResult:
    return DeleteRangeResult(
        deleted=get_int(obj, "deleted"),
        header=_header(obj),
        prev_kvs=kvs_from_json(get_list(obj, "prev_kvs")),
    )


_TXN_RESPONSES: dict[str, Callable[[Mapping[str, Any]], TxnResponse]] = {
    "response_range": range_from_json,
    "response_put": put_from_json,
    "response_delete_range": delete_range_from_json,
}


def _txn_response(obj: Mapping[str, Any]) -> TxnResponse:
    for field, parse in _TXN_RESPONSES.items():
        inner = get_object(obj, field)
        if inner is not None:
            return parse(inner)
    raise EtcdProtocolError(f"unknown txn response {sorted(obj)}")


def parse_range(status: int, body: bytes) -> RangeResult:
    return range_from_json(_answer(status, body))


def parse_put(status: int, body: bytes) -> PutResult:
    return put_from_json(_answer(status, body))


def parse_delete_range(status: int, body: bytes) -> DeleteRangeResult:
    return delete_range_from_json(_answer(status, body))


def parse_txn(status: int, body: bytes) -> TxnResult:
    obj = _answer(status, body)
    return TxnResult(
        succeeded=get_bool(obj, "succeeded"),
        responses=tuple(_txn_response(item) for item in get_list(obj, "responses")),
        header=_header(obj),
    )


def parse_txn_outcome(status: int, body: bytes) -> TxnResult:
    """`parse_txn` without the per-operation responses (`responses` is empty): for a
    caller that reads only whether the guards held and the header (the group commit,
    whose txns carry a put per heartbeat)."""
    obj = _answer(status, body)
    get_list(obj, "responses")  # present or not, of the right type
    return TxnResult(succeeded=get_bool(obj, "succeeded"), responses=(), header=_header(obj))


def parse_lease_grant(status: int, body: bytes) -> LeaseGrant:
    obj = _answer(status, body)
    return LeaseGrant(id=get_int(obj, "ID"), ttl=get_int(obj, "TTL"), header=_header(obj))


def parse_lease_keepalive(status: int, body: bytes) -> KeepAlive:
    """A keepalive is a streaming endpoint: its one answer comes wrapped in `result`. An
    expired or unknown lease is a 200 without `TTL` (TTL 0 would be the same thing)."""
    obj = _result(_answer(status, body))
    ttl = get_int(obj, "TTL")
    return KeepAlive(id=get_int(obj, "ID"), ttl=ttl if ttl > 0 else None, header=_header(obj))


def parse_lease_timetolive(status: int, body: bytes) -> LeaseTimeToLive:
    obj = _answer(status, body)
    ttl = get_int(obj, "TTL")
    return LeaseTimeToLive(
        id=get_int(obj, "ID"),
        ttl=None if ttl < 0 else ttl,
        granted_ttl=get_int(obj, "grantedTTL"),
        keys=tuple(unb64(key) for key in get_list(obj, "keys")),
        header=_header(obj),
    )


def parse_acknowledged(status: int, body: bytes) -> Acknowledged:
    """Lease revoke and compaction answer with a header only."""
    return Acknowledged(header=_header(_answer(status, body)))


parse_lease_revoke = parse_acknowledged
parse_compaction = parse_acknowledged


def parse_status(status: int, body: bytes) -> Status:
    obj = _answer(status, body)
    return Status(
        version=get_str(obj, "version"),
        leader=get_int(obj, "leader"),
        raft_index=get_int(obj, "raftIndex"),
        db_size=get_int(obj, "dbSize"),
        header=_header(obj),
    )


# The inverse direction: a result as the gateway writes it (what `MemoryEtcd.handle`
# answers). Fields at their default value are left out, as grpc-gateway does.


def _with_header(header: Header, fields: Mapping[str, Any]) -> bytes:
    return dumps({"header": header.to_json(), **without_defaults(fields)})


def _range_fields(result: RangeResult) -> JsonObject:
    return {
        "kvs": [kv.to_json() for kv in result.kvs],
        "more": result.more,
        "count": int64_text(result.count),
    }


def _put_fields(result: PutResult) -> JsonObject:
    return {"prev_kv": None if result.prev_kv is None else result.prev_kv.to_json()}


def _delete_fields(result: DeleteRangeResult) -> JsonObject:
    return {
        "deleted": int64_text(result.deleted),
        "prev_kvs": [kv.to_json() for kv in result.prev_kvs],
    }


def render_range(result: RangeResult) -> bytes:
    return _with_header(result.header, _range_fields(result))


def render_put(result: PutResult) -> bytes:
    return _with_header(result.header, _put_fields(result))


def render_delete_range(result: DeleteRangeResult) -> bytes:
    return _with_header(result.header, _delete_fields(result))


def _txn_response_json(response: TxnResponse) -> JsonObject:
    # Inside a txn the gateway writes each answer's header with its revision only.
    header = {"revision": int64_text(response.header.revision)}
    if isinstance(response, RangeResult):
        field, fields = "response_range", _range_fields(response)
    elif isinstance(response, PutResult):
        field, fields = "response_put", _put_fields(response)
    else:
        field, fields = "response_delete_range", _delete_fields(response)
    return {field: {"header": header, **without_defaults(fields)}}


def render_txn(result: TxnResult) -> bytes:
    return _with_header(
        result.header,
        {
            "succeeded": result.succeeded,
            "responses": [_txn_response_json(item) for item in result.responses],
        },
    )


def render_lease_grant(result: LeaseGrant) -> bytes:
    return _with_header(result.header, {"ID": int64_text(result.id), "TTL": int64_text(result.ttl)})


def render_lease_keepalive(result: KeepAlive) -> bytes:
    fields = without_defaults({"ID": int64_text(result.id), "TTL": int64_text(result.ttl or 0)})
    return dumps({"result": {"header": result.header.to_json(), **fields}}) + b"\n"


def render_lease_timetolive(result: LeaseTimeToLive) -> bytes:
    return _with_header(
        result.header,
        {
            "ID": int64_text(result.id),
            # -1 is not a default, so an unknown lease's TTL is written.
            "TTL": int64_text(-1 if result.ttl is None else result.ttl),
            "grantedTTL": int64_text(result.granted_ttl),
            "keys": [b64(key) for key in result.keys],
        },
    )


def render_acknowledged(result: Acknowledged) -> bytes:
    return _with_header(result.header, {})


def render_status(result: Status) -> bytes:
    return _with_header(
        result.header,
        {
            "version": result.version,
            "dbSize": int64_text(result.db_size),
            "leader": int64_text(result.leader),
            "raftIndex": int64_text(result.raft_index),
            "raftTerm": int64_text(result.header.raft_term),
        },
    )


def render_error(error: EtcdError, *, streaming: bool = False) -> tuple[int, bytes]:
    """An error as the gateway writes it: `{"error","message","code"}`, or for a streaming
    endpoint (keepalive) the in-band shape with the same status."""
    status = error.http_status or 500
    if streaming:
        inner = {"grpc_code": error.grpc_code, "http_code": status, "message": error.message}
        return status, dumps({"error": inner})
    body = {"error": error.message, "message": error.message, "code": error.grpc_code}
    return status, dumps(body)
