"""Builders of gateway requests: each returns a `GatewayRequest` value (path and JSON body)
for a driver to POST. The KV operations are values too (`PutOp`, `RangeOp`,
`DeleteRangeOp`), because a transaction's branches are lists of them; each knows its JSON
form both ways, so `MemoryEtcd` decodes exactly what these builders encode.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .codec import (
    FlatMessage,
    JsonObject,
    as_bytes,
    b64,
    dumps,
    get_bytes,
    get_int,
    get_list,
    get_object,
    get_str,
    int64_text,
    prefix_range_end,
    read_message,
    without_defaults,
)
from .errors import EtcdRequestError

__all__ = [
    "MAX_TXN_OPS",
    "Compare",
    "CompareResult",
    "DeleteRangeOp",
    "GatewayRequest",
    "PutOp",
    "RangeOp",
    "Target",
    "TxnOp",
    "WatchCreate",
    "compaction_request",
    "delete_range_request",
    "key_absent",
    "lease_grant_request",
    "lease_keepalive_request",
    "lease_revoke_request",
    "lease_timetolive_request",
    "mod_revision_is",
    "put_request",
    "range_request",
    "status_request",
    "txn_json",
    "txn_request",
    "watch_request",
]


# The one request header the gateway looks at: with it, a watch on a member that lost its
# leader ends with an error instead of going silently stale (etcd#10819).
REQUIRE_LEADER_HEADER = ("Grpc-Metadata-Hasleader", "true")


@dataclass(frozen=True, slots=True)
class GatewayRequest:
    """One POST to the gateway. `headers` are extra HTTP headers beside
    `Content-Type: application/json`."""

    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _range_end(key: bytes, prefix: bool, range_end: bytes) -> bytes:
    if prefix and range_end:
        raise ValueError("give prefix=True or a range_end, not both")
    return prefix_range_end(key) if prefix else range_end


@dataclass(frozen=True, slots=True)
class RangeOp(FlatMessage):
    """Read `key`, or `[key, range_end)`. `revision` pins the read to a past revision
    (0: the current one); `limit` caps the keys returned (0: no cap)."""

    key: bytes
    range_end: bytes = b""
    revision: int = 0
    limit: int = 0
    keys_only: bool = False
    count_only: bool = False

    WIRE_ORDER = ("key", "range_end", "limit", "revision", "keys_only", "count_only")


@dataclass(frozen=True, slots=True)
class PutOp(FlatMessage):
    key: bytes
    value: bytes
    lease: int = 0
    prev_kv: bool = False


@dataclass(frozen=True, slots=True)
class DeleteRangeOp(FlatMessage):
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


TxnOp = RangeOp | PutOp | DeleteRangeOp

# Each op's wrapper in a txn branch, and the wrapper of its answer.
_OP_FIELDS: dict[type[TxnOp], tuple[str, str]] = {
    RangeOp: ("request_range", "response_range"),
    PutOp: ("request_put", "response_put"),
    DeleteRangeOp: ("request_delete_range", "response_delete_range"),
}


def op_to_json(op: TxnOp) -> JsonObject:
    return {_OP_FIELDS[type(op)][0]: op.to_json()}


def op_from_json(obj: Mapping[str, Any]) -> TxnOp:
    for kind, (field, _) in _OP_FIELDS.items():
        inner = get_object(obj, field)
        if inner is not None:
            return kind.from_json(inner)
    raise EtcdRequestError(f"unknown txn operation {sorted(obj)}", http_status=400, grpc_code=3)


class Target(enum.Enum):
    """What a compare looks at, and the JSON field that holds the operand."""

    VERSION = "version"
    CREATE = "create_revision"
    MOD = "mod_revision"
    VALUE = "value"


class CompareResult(enum.Enum):
    EQUAL = "EQUAL"
    GREATER = "GREATER"
    LESS = "LESS"
    NOT_EQUAL = "NOT_EQUAL"


@dataclass(frozen=True, slots=True)
class Compare:
    """One txn guard: `target` of `key` compared (`result`) with `operand` (an int for
    VERSION/CREATE/MOD, bytes for VALUE)."""

    key: bytes
    target: Target
    result: CompareResult
    operand: int | bytes

    def to_json(self) -> JsonObject:
        operand = b64(self.operand) if isinstance(self.operand, bytes) else int64_text(self.operand)
        # The operand is written even at 0: "create_revision": 0 is how "absent" is asked.
        # `_name_`/`_value_`: enum's documented sunder names, without the property lookup
        # of `.name`/`.value` (a guard goes out with every heartbeat).
        target = self.target
        return {
            "key": b64(self.key),
            "target": target._name_,
            "result": self.result._value_,
            target._value_: operand,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Compare:
        try:
            target = Target[get_str(obj, "target") or "VERSION"]
            result = CompareResult(get_str(obj, "result") or "EQUAL")
        except (KeyError, ValueError):
            raise EtcdRequestError(f"bad compare {obj!r}", http_status=400, grpc_code=3) from None
        operand: int | bytes = (
            get_bytes(obj, target.value) if target is Target.VALUE else get_int(obj, target.value)
        )
        return cls(get_bytes(obj, "key"), target, result, operand)


def key_absent(key: str | bytes) -> Compare:
    """The guard "this key does not exist" (its create revision is 0)."""
    return Compare(as_bytes(key), Target.CREATE, CompareResult.EQUAL, 0)


def mod_revision_is(key: str | bytes, revision: int) -> Compare:
    """The guard "nobody wrote this key since `revision`" (optimistic concurrency)."""
    return Compare(as_bytes(key), Target.MOD, CompareResult.EQUAL, revision)


def _post(path: str, fields: Mapping[str, Any], *headers: tuple[str, str]) -> GatewayRequest:
    return GatewayRequest(path, dumps(fields), tuple(headers))


def range_request(
    key: str | bytes,
    *,
    prefix: bool = False,
    range_end: bytes = b"",
    revision: int = 0,
    limit: int = 0,
    keys_only: bool = False,
    count_only: bool = False,
) -> GatewayRequest:
    raw = as_bytes(key)
    op = RangeOp(raw, _range_end(raw, prefix, range_end), revision, limit, keys_only, count_only)
    return _post("/v3/kv/range", op.to_json())


def put_request(
    key: str | bytes, value: str | bytes, *, lease: int = 0, prev_kv: bool = False
) -> GatewayRequest:
    return _post("/v3/kv/put", PutOp(as_bytes(key), as_bytes(value), lease, prev_kv).to_json())


def delete_range_request(
    key: str | bytes, *, prefix: bool = False, range_end: bytes = b"", prev_kv: bool = False
) -> GatewayRequest:
    raw = as_bytes(key)
    op = DeleteRangeOp(raw, _range_end(raw, prefix, range_end), prev_kv)
    return _post("/v3/kv/deleterange", op.to_json())


#: etcd's default `--max-txn-ops`: the most operations one txn may hold.
MAX_TXN_OPS = 128


def txn_request(
    compare: Sequence[Compare], success: Sequence[TxnOp], failure: Sequence[TxnOp] = ()
) -> GatewayRequest:
    """The txn's body is written piece by piece, with the bytes `dumps` would write for
    its JSON form (`txn_json`): a node's group commit sends one per batch of heartbeats,
    each a guard and a put, and building and encoding those dicts cost more than the
    heartbeat's own work."""
    branches = (
        ("compare", [_compare_text(item) for item in compare]),
        ("success", [_op_text(op) for op in success]),
        ("failure", [_op_text(op) for op in failure]),
    )
    fields = ",".join(f'"{name}":[{",".join(items)}]' for name, items in branches if items)
    return GatewayRequest("/v3/kv/txn", ("{" + fields + "}").encode())


def txn_json(
    compare: Sequence[Compare], success: Sequence[TxnOp], failure: Sequence[TxnOp] = ()
) -> JsonObject:
    """A txn request's JSON form (what `txn_request`'s body encodes)."""
    return without_defaults(
        {
            "compare": [item.to_json() for item in compare],
            "success": [op_to_json(op) for op in success],
            "failure": [op_to_json(op) for op in failure],
        }
    )


def _compare_text(item: Compare) -> str:
    """`dumps(item.to_json())`: base64, enum names and int64 text need no escaping."""
    target, operand = item.target, item.operand
    value = b64(operand) if isinstance(operand, bytes) else int64_text(operand)
    return (
        f'{{"key":"{b64(item.key)}","target":"{target._name_}",'
        f'"result":"{item.result._value_}","{target._value_}":"{value}"}}'
    )


def _op_text(op: TxnOp) -> str:
    """`dumps(op_to_json(op))`, written directly for a put (a soft put per heartbeat)."""
    if type(op) is not PutOp:
        return dumps(op_to_json(op)).decode()
    fields = []  # as `FlatMessage.to_json`: a field at its default is left out
    if op.key:
        fields.append(f'"key":"{b64(op.key)}"')
    if op.value:
        fields.append(f'"value":"{b64(op.value)}"')
    if op.lease:
        fields.append(f'"lease":"{int64_text(op.lease)}"')
    if op.prev_kv:
        fields.append('"prev_kv":true')
    return '{"request_put":{' + ",".join(fields) + "}}"


def lease_grant_request(ttl: int, *, lease_id: int = 0) -> GatewayRequest:
    """`lease_id` 0 lets etcd choose. etcd raises a TTL below its minimum (2 s with
    default timings) to that minimum."""
    return _post(
        "/v3/lease/grant", without_defaults({"TTL": int64_text(ttl), "ID": int64_text(lease_id)})
    )


def lease_keepalive_request(lease_id: int) -> GatewayRequest:
    return _post("/v3/lease/keepalive", {"ID": int64_text(lease_id)})


def lease_revoke_request(lease_id: int) -> GatewayRequest:
    return _post("/v3/lease/revoke", {"ID": int64_text(lease_id)})


def lease_timetolive_request(lease_id: int, *, keys: bool = False) -> GatewayRequest:
    return _post(
        "/v3/lease/timetolive", without_defaults({"ID": int64_text(lease_id), "keys": keys})
    )


def watch_request(
    key: str | bytes,
    *,
    prefix: bool = False,
    range_end: bytes = b"",
    start_revision: int = 0,
    progress_notify: bool = False,
    prev_kv: bool = False,
    require_leader: bool = True,
) -> GatewayRequest:
    """One watch = one streaming POST; closing the connection cancels it. `start_revision`
    0 means "from now"; to resume, pass the last revision seen plus one."""
    raw = as_bytes(key)
    create = WatchCreate(
        raw, _range_end(raw, prefix, range_end), start_revision, progress_notify, prev_kv
    ).to_json()
    headers = (REQUIRE_LEADER_HEADER,) if require_leader else ()
    return _post("/v3/watch", {"create_request": create}, *headers)


@dataclass(frozen=True, slots=True)
class WatchCreate(FlatMessage):
    """A watch request's body, decoded (what `MemoryEtcd` reads)."""

    key: bytes
    range_end: bytes
    start_revision: int
    progress_notify: bool
    prev_kv: bool

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> WatchCreate:
        create = get_object(obj, "create_request")
        if create is None:
            raise EtcdRequestError("no create_request", http_status=400, grpc_code=3)
        return read_message(cls, create)


def compaction_request(revision: int, *, physical: bool = False) -> GatewayRequest:
    return _post(
        "/v3/kv/compaction",
        without_defaults({"revision": int64_text(revision), "physical": physical}),
    )


def status_request() -> GatewayRequest:
    return _post("/v3/maintenance/status", {})


def txn_from_json(
    obj: Mapping[str, Any],
) -> tuple[tuple[Compare, ...], tuple[TxnOp, ...], tuple[TxnOp, ...]]:
    """A txn body, decoded (what `MemoryEtcd` reads)."""
    return (
        tuple(Compare.from_json(item) for item in get_list(obj, "compare")),
        tuple(op_from_json(item) for item in get_list(obj, "success")),
        tuple(op_from_json(item) for item in get_list(obj, "failure")),
    )


def response_field(op: TxnOp) -> str:
    """The wrapper of `op`'s answer in a txn response ("response_put", ...)."""
    return _OP_FIELDS[type(op)][1]
