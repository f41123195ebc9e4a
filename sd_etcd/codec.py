"""The gateway's JSON conventions, in both directions.

etcd's v3 JSON gateway is gRPC's protobuf rendered by grpc-gateway, which means:
bytes fields (keys, values) are base64; int64 fields (revisions, lease ids, TTLs, counts)
are JSON strings; and every field at its default value (0, false, empty, unset enum) is
left out, so a missing field is never an error, it is the default.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from .errors import EtcdProtocolError

JsonObject = dict[str, Any]

# Range end meaning "every key from `key` on" (etcd's "\0" convention).
ALL_KEYS_END = b"\x00"


def as_bytes(key: str | bytes) -> bytes:
    """Keys and values are bytes in etcd; text is taken as UTF-8."""
    return key.encode() if isinstance(key, str) else key


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise EtcdProtocolError(f"expected base64 text, got {text!r}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise EtcdProtocolError(f"bad base64 {text!r}: {error}") from None


def prefix_range_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with `prefix`: the prefix with its
    last byte plus one (trailing 0xff bytes dropped first, as etcd's clientv3 does).
    An empty or all-0xff prefix has no such end: it means every key."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return ALL_KEYS_END


def int64_text(value: int) -> str:
    """int64 fields go out as strings too (the gateway accepts both; strings are exact)."""
    return str(value)


def dumps(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def loads_object(body: bytes) -> JsonObject:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise EtcdProtocolError(f"not JSON: {body[:200]!r} ({error})") from None
    if not isinstance(value, dict):
        raise EtcdProtocolError(f"expected a JSON object, got {body[:200]!r}")
    return value


# Readers for one field of a decoded object, each answering the default when it is left out.


def get_int(obj: Mapping[str, Any], field: str) -> int:
    value = obj.get(field, 0)
    if isinstance(value, bool):
        raise EtcdProtocolError(f"{field}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise EtcdProtocolError(f"{field}: expected an integer, got {value!r}")


def get_bool(obj: Mapping[str, Any], field: str) -> bool:
    value = obj.get(field, False)
    if not isinstance(value, bool):
        raise EtcdProtocolError(f"{field}: expected a boolean, got {value!r}")
    return value


def get_bytes(obj: Mapping[str, Any], field: str) -> bytes:
    return unb64(obj[field]) if field in obj else b""


def get_str(obj: Mapping[str, Any], field: str) -> str:
    value = obj.get(field, "")
    if not isinstance(value, str):
        raise EtcdProtocolError(f"{field}: expected a string, got {value!r}")
    return value


def get_object(obj: Mapping[str, Any], field: str) -> JsonObject | None:
    value = obj.get(field)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise EtcdProtocolError(f"{field}: expected an object, got {value!r}")
    return value


def get_list(obj: Mapping[str, Any], field: str) -> list[Any]:
    value = obj.get(field, [])
    if not isinstance(value, list):
        raise EtcdProtocolError(f"{field}: expected a list, got {value!r}")
    return value


def without_defaults(fields: Mapping[str, Any]) -> JsonObject:
    """Drop fields at their default value, as the gateway does on the way out."""
    return {
        name: value
        for name, value in fields.items()
        if value not in (0, "0", "", False, None, [], {})
    }
