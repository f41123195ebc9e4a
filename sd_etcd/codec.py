"""The gateway's JSON conventions, in both directions.

etcd's v3 JSON gateway is gRPC's protobuf rendered by grpc-gateway, which means:
bytes fields (keys, values) are base64; int64 fields (revisions, lease ids, TTLs, counts)
are JSON strings; and every field at its default value (0, false, empty, unset enum) is
left out, so a missing field is never an error, it is the default.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import Field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar, cast

from .errors import EtcdProtocolError

__all__ = [
    "prefix_range_end",
]


if TYPE_CHECKING:
    from _typeshed import DataclassInstance

JsonObject = dict[str, Any]

# Range end meaning "every key from `key` on" (etcd's "\0" convention).
ALL_KEYS_END = b"\x00"


def as_bytes(key: str | bytes) -> bytes:
    """Keys and values are bytes in etcd; text is taken as UTF-8."""
    return key.encode() if isinstance(key, str) else key


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise EtcdProtocolError(f"expected base64 text, got {text!r}")
    try:
        # Strict mode refuses what `b64decode(validate=True)` refuses, without its regex
        # (every watched key and value comes through here).
        return binascii.a2b_base64(text, strict_mode=True)
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


# Flat messages: dataclasses whose fields are all bytes, int or bool, which is most of what
# the gateway sends and reads. Their JSON form follows from the field types alone, so it is
# written once here instead of field by field in every class.

Reader = Callable[[Mapping[str, Any], str], object]
_READERS: dict[str, Reader] = {
    "bytes": get_bytes,
    "int": get_int,
    "bool": get_bool,
}


M = TypeVar("M", bound="FlatMessage")


class FlatMessage:
    """Base of the flat message dataclasses: `from_json` reads each field by its declared
    type (the annotation's name: those modules postpone annotations), a left-out field
    being its default; `to_json` writes bytes as base64 and ints as int64 text, leaving
    defaults out. `WIRE_ORDER` names the fields in protobuf field-number order where the
    dataclass declares them otherwise, so the bytes match what the gateway writes."""

    __slots__ = ()
    WIRE_ORDER: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        return read_message(cls, obj)

    def to_json(self) -> JsonObject:
        out: JsonObject = {}
        for name in _wire_names(type(self)):
            value = getattr(self, name)
            if value:  # a default (0, empty, False) is left out, as `without_defaults` does
                out[name] = _wire_value(value)
        return out


def read_message(cls: type[M], obj: Mapping[str, Any]) -> M:
    """`FlatMessage.from_json`, for a class that reads its fields from a nested object."""
    return cls(*[read(obj, name) for name, read in _readers(cls)])


_CLASS_READERS: dict[type[FlatMessage], tuple[tuple[str, Reader], ...]] = {}


def _readers(cls: type[FlatMessage]) -> tuple[tuple[str, Reader], ...]:
    """Each field's name and reader, worked out once per class."""
    if cls not in _CLASS_READERS:
        _CLASS_READERS[cls] = tuple((field.name, _reader(field.type)) for field in _fields(cls))
    return _CLASS_READERS[cls]


_CLASS_NAMES: dict[type[FlatMessage], tuple[str, ...]] = {}


def _wire_names(cls: type[FlatMessage]) -> tuple[str, ...]:
    """The fields `to_json` writes, in wire order, worked out once per class."""
    names = _CLASS_NAMES.get(cls)
    if names is None:
        names = _CLASS_NAMES[cls] = cls.WIRE_ORDER or tuple(f.name for f in _fields(cls))
    return names


def _fields(message: object) -> tuple[Field[Any], ...]:
    return fields(cast("DataclassInstance", message))


def _reader(annotation: object) -> Reader:
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return _READERS[name]


def _wire_value(value: bytes | int) -> str | bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, bytes):
        return b64(value)
    return int64_text(value)
