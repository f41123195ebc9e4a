"""The watch stream: a chunked HTTP body of newline-terminated JSON objects, parsed as
bytes arrive.

Chunk boundaries mean nothing (one object may span chunks, one chunk may hold several),
so the parser splits on newlines only (etcd#16239). Each `{"result": ...}` line becomes one
or two messages; an in-band `{"error": ...}` (etcd shutting down) becomes `WatchError`;
`end()` says whether the body stopped cleanly or mid-object (etcd killed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import codec
from .errors import EtcdProtocolError
from .values import Header, KvEvent

__all__ = [
    "ProgressNotify",
    "WatchCanceled",
    "WatchClosed",
    "WatchCreated",
    "WatchError",
    "WatchEvents",
    "WatchFramer",
    "WatchMessage",
]


@dataclass(frozen=True, slots=True)
class WatchCreated:
    """The watch is registered; events from its start revision follow."""

    watch_id: int
    header: Header


@dataclass(frozen=True, slots=True)
class WatchEvents:
    """Changes, in revision order. The header's revision is the store's revision when
    they were sent (at least the last event's)."""

    watch_id: int
    events: tuple[KvEvent, ...]
    header: Header


@dataclass(frozen=True, slots=True)
class ProgressNotify:
    """No change on the watched range up to `revision` (the store's current revision):
    a view that has seen everything before can call itself synced to it."""

    watch_id: int
    revision: int
    header: Header


@dataclass(frozen=True, slots=True)
class WatchCanceled:
    """The store ended the watch. With `compact_revision`, the start revision was
    compacted: re-list, then watch again. The HTTP stream stays open: close it."""

    watch_id: int
    compact_revision: int | None
    reason: str
    header: Header


@dataclass(frozen=True, slots=True)
class WatchError:
    """An in-band error that ends the stream (etcd stopping, leader lost)."""

    http_code: int
    grpc_code: int
    message: str


@dataclass(frozen=True, slots=True)
class WatchClosed:
    """The body ended (from `end()`). `truncated`: it stopped mid-object, the way a
    killed etcd's stream does."""

    truncated: bool


WatchMessage = (
    WatchCreated | WatchEvents | ProgressNotify | WatchCanceled | WatchError | WatchClosed
)


def messages_from_json(obj: Mapping[str, Any]) -> list[WatchMessage]:
    """The messages one line of the stream holds."""
    error = codec.get_object(obj, "error")
    if error is not None:
        return [
            WatchError(
                http_code=codec.get_int(error, "http_code"),
                grpc_code=codec.get_int(error, "grpc_code"),
                message=codec.get_str(error, "message"),
            )
        ]
    result = codec.get_object(obj, "result")
    if result is None:
        raise EtcdProtocolError(f"watch line without result or error: {sorted(obj)}")
    watch_id = codec.get_int(result, "watch_id")
    header = Header.from_json(codec.get_object(result, "header"))
    messages: list[WatchMessage] = []
    created = codec.get_bool(result, "created")
    if created:
        messages.append(WatchCreated(watch_id, header))
    events = codec.get_list(result, "events")
    if events:
        messages.append(WatchEvents(watch_id, tuple(KvEvent.from_json(e) for e in events), header))
    if codec.get_bool(result, "canceled"):
        compact = codec.get_int(result, "compact_revision")
        messages.append(
            WatchCanceled(watch_id, compact or None, codec.get_str(result, "cancel_reason"), header)
        )
    elif not created and not events:
        messages.append(ProgressNotify(watch_id, header.revision, header))
    return messages


def message_to_json(message: WatchMessage) -> codec.JsonObject:
    """One message as the gateway writes it (what `MemoryEtcd` streams)."""
    if isinstance(message, WatchError):
        return {
            "error": {
                "grpc_code": message.grpc_code,
                "http_code": message.http_code,
                "message": message.message,
            }
        }
    if isinstance(message, WatchClosed):
        raise ValueError("WatchClosed is the end of the body, not a line of it")
    result: codec.JsonObject = {"header": message.header.to_json()}
    if message.watch_id:
        result["watch_id"] = codec.int64_text(message.watch_id)
    if isinstance(message, WatchCreated):
        result["created"] = True
    elif isinstance(message, WatchEvents):
        result["events"] = [event.to_json() for event in message.events]
    elif isinstance(message, WatchCanceled):
        result["canceled"] = True
        if message.compact_revision:
            result["compact_revision"] = codec.int64_text(message.compact_revision)
        if message.reason:
            result["cancel_reason"] = message.reason
    return {"result": result}


def render_line(message: WatchMessage) -> bytes:
    return codec.dumps(message_to_json(message)) + b"\n"


class WatchFramer:
    """Frames an etcd watch body: feed it the bytes as they come, it hands back whole messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._ended = False

    def feed(self, data: bytes) -> list[WatchMessage]:
        if self._ended:
            raise RuntimeError("feed() after end()")
        self._buffer += data
        messages: list[WatchMessage] = []
        start = 0
        while (newline := self._buffer.find(b"\n", start)) >= 0:
            messages.extend(self._line(bytes(self._buffer[start:newline])))
            start = newline + 1
        del self._buffer[:start]
        return messages

    def end(self) -> list[WatchMessage]:
        """The body ended: whatever is left, then `WatchClosed`. etcd writes its last
        object (the shutdown error) without a newline, so a remainder that parses is a
        message; one that does not is a truncated stream."""
        self._ended = True
        rest, self._buffer = bytes(self._buffer), bytearray()
        try:
            messages = self._line(rest)
        except EtcdProtocolError:
            return [WatchClosed(truncated=True)]
        return [*messages, WatchClosed(truncated=False)]

    @staticmethod
    def _line(line: bytes) -> list[WatchMessage]:
        if not line.strip():
            return []
        return messages_from_json(codec.loads_object(line))
