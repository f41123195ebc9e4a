"""The values etcd answers with, each beside its JSON form in both directions.

Reading (`from_json`) is what a client needs; writing (`to_json`) is what `MemoryEtcd`
needs to answer exactly like the gateway. Keeping both on one class puts every field name
in one place, and round-trip tests keep the two directions honest.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from .codec import (
    FlatMessage,
    JsonObject,
    get_int,
    get_object,
    get_str,
    read_message,
    unb64,
)

__all__ = [
    "Acknowledged",
    "DeleteRangeResult",
    "EventType",
    "Header",
    "KeepAlive",
    "KeyValue",
    "KvEvent",
    "LeaseGrant",
    "LeaseTimeToLive",
    "PutResult",
    "RangeResult",
    "Status",
    "TxnResponse",
    "TxnResult",
]


@dataclass(frozen=True, slots=True)
class Header(FlatMessage):
    """Every answer's header. `revision` is the store's revision when it answered;
    `cluster_id` names the etcd cluster (what `X-Discovery-Cluster` reports)."""

    cluster_id: int = 0
    member_id: int = 0
    revision: int = 0
    raft_term: int = 0

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> Header:
        return cls() if obj is None else read_message(cls, obj)


@dataclass(frozen=True, slots=True)
class KeyValue(FlatMessage):
    """One key at one revision. A deleted key in a watch event carries only `key` and
    `mod_revision` (the deletion's revision); every other field is then 0/empty."""

    key: bytes
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    # Protobuf field-number order: `value` is field 5 though it is read second.
    WIRE_ORDER = ("key", "create_revision", "mod_revision", "version", "value", "lease")

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """`FlatMessage.from_json` unrolled (every watched change and listed key comes
        through here): the same fields, defaults and errors."""
        revisions: list[int] = []
        for name in _KV_INTS:
            value = obj.get(name, _ABSENT)
            if value is _ABSENT:  # left out: the default
                revisions.append(0)
            elif type(value) is str and value.isdecimal():  # the gateway's int64 text
                revisions.append(int(value))
            else:
                revisions.append(get_int(obj, name))
        key = unb64(obj["key"]) if "key" in obj else b""
        value = unb64(obj["value"]) if "value" in obj else b""
        return cls(key, value, *revisions)


#: `KeyValue`'s int64 fields, in declaration order.
_KV_INTS = ("create_revision", "mod_revision", "version", "lease")
_ABSENT = object()


def kvs_from_json(items: list[Any]) -> tuple[KeyValue, ...]:
    return tuple(KeyValue.from_json(item) for item in items)


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class KvEvent:
    """One change seen by a watch. `prev_kv` is there only when the watch asked for it
    and the key existed before."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> KvEvent:
        # PUT is the enum's default, so the gateway leaves it out: only DELETE is written.
        kind = EventType(get_str(obj, "type") or "PUT") if "type" in obj else EventType.PUT
        kv = get_object(obj, "kv")
        prev = get_object(obj, "prev_kv")
        return cls(
            type=kind,
            kv=KeyValue.from_json(kv or {}),
            prev_kv=None if prev is None else KeyValue.from_json(prev),
        )

    def to_json(self) -> JsonObject:
        out: JsonObject = {}
        if self.type is EventType.DELETE:
            out["type"] = "DELETE"
        out["kv"] = self.kv.to_json()
        if self.prev_kv is not None:
            out["prev_kv"] = self.prev_kv.to_json()
        return out


@dataclass(frozen=True, slots=True)
class RangeResult:
    """`count` is the number of keys in the whole range (not only those returned);
    `more` says `limit` cut the answer short."""

    kvs: tuple[KeyValue, ...]
    count: int
    more: bool
    header: Header


@dataclass(frozen=True, slots=True)
class PutResult:
    header: Header
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class DeleteRangeResult:
    deleted: int
    header: Header
    prev_kvs: tuple[KeyValue, ...] = ()


TxnResponse = RangeResult | PutResult | DeleteRangeResult


@dataclass(frozen=True, slots=True)
class TxnResult:
    """`succeeded` says whether every compare held (and so which branch ran). The headers
    of `responses` carry only the revision, as the gateway's do."""

    succeeded: bool
    responses: tuple[TxnResponse, ...]
    header: Header


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """A new lease: `id` is the one asked for, or etcd's choice when the request named none;
    `ttl` is what etcd granted, which may be above the TTL asked for (etcd raises a TTL
    to its minimum, 1.5 election timeouts)."""

    id: int
    ttl: int
    header: Header


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """`ttl` is None when the lease expired or never existed: etcd answers 200 without a
    TTL, not an error, so this is the caller's "re-register" signal."""

    id: int
    ttl: int | None
    header: Header


@dataclass(frozen=True, slots=True)
class LeaseTimeToLive:
    """`ttl` is None when the lease expired or never existed (etcd says "-1")."""

    id: int
    ttl: int | None
    granted_ttl: int
    keys: tuple[bytes, ...]
    header: Header


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """An answer with nothing but a header (lease revoke, compaction)."""

    header: Header


@dataclass(frozen=True, slots=True)
class Status:
    """`/v3/maintenance/status`: read for the cluster id and the leader."""

    version: str
    leader: int
    raft_index: int
    db_size: int
    header: Header
