"""A watch stream's response, said once: its start, its body pieces and its end.

A stream is written two ways: by a task through the ASGI `send`
(`watch_streams.write_stream`, the server frames it) or straight to its socket
(`servers.direct`, which frames it itself). Both write what this module
gives, from the one pair a stream owes (`Stream.owed`: the pending bytes,
whether the response ends): as ASGI messages (`asgi_owed`), or as the
HTTP/1.1 bytes a server frames those messages into (`http1_owed`, and
`http1_start` for the start message). The status, the headers, where one
chunk ends and the next begins, and the last chunk cannot differ between the
two: there is no second description of the response to drift. (The direct
path skips the messages themselves: a dict per event and stream was most of
its cost per event.)

What a server adds on the task path is its own (hypercorn adds `server` and
writes no reason phrase; uvicorn puts `date` first); the direct path adds
`date`, as RFC 9110 asks of an origin server, and `transfer-encoding`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from sd_core.watch_stream import STREAM_HEADERS

Message = MutableMapping[str, Any]

STATUS = 200
#: One immutable copy for every stream: hypercorn keeps each response's start
#: message (for its access log) as long as the stream is open.
STREAM_START_HEADERS = tuple((k.encode(), v.encode()) for k, v in STREAM_HEADERS)
_START: Message = {"type": "http.response.start", "status": STATUS, "headers": STREAM_START_HEADERS}


def start() -> Message:
    """The response's start: status and headers (a fresh dict; a server may keep it)."""
    return dict(_START)


def body(data: bytes | memoryview, *, more: bool = True) -> Message:
    """One body piece: `data` (events, a keep-alive), or with `more=False` the end."""
    return {"type": "http.response.body", "body": data, "more_body": more}


def end() -> Message:
    """The response's end (a stream closed at shutdown, never a dropped one)."""
    return body(b"", more=False)


def asgi_owed(data: bytes, ends: bool) -> list[Message]:
    """What a stream owes (`Stream.owed`) as ASGI messages: `data` as one body piece,
    then the end if the response ends."""
    owed = [body(data)] if data else []
    if ends:
        owed.append(end())
    return owed


# -- the same messages as HTTP/1.1 bytes, for the direct path -------------------------

LAST_CHUNK = b"0\r\n\r\n"
_REASONS = {STATUS: b"OK"}
_date_cache: tuple[int, bytes] = (-1, b"")


def _status_and_headers(message: Message) -> bytes:
    status: int = message["status"]
    lines = b"".join(b"%s: %s\r\n" % pair for pair in message["headers"])
    return b"HTTP/1.1 %d %s\r\n%s" % (status, _REASONS[status], lines)


#: The start message's status line and headers, rendered once.
_HEAD = _status_and_headers(_START)


def http1_start(now: Callable[[], float] = time.time) -> bytes:
    """The start message as HTTP/1.1: its status line and headers, then `date` and the
    chunked framing that the body's pieces use."""
    global _date_cache
    second = int(now())
    if _date_cache[0] != second:
        _date_cache = (second, email.utils.formatdate(second, usegmt=True).encode())
    return b"%sdate: %s\r\ntransfer-encoding: chunked\r\n\r\n" % (_HEAD, _date_cache[1])


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of the chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def http1_owed(data: bytes, ends: bool) -> bytes:
    """What `asgi_owed(data, ends)` sends, as the bytes a server frames it into: `data` as
    one chunk, then the last chunk if the response ends."""
    out = chunk(data) if data else b""
    return out + LAST_CHUNK if ends else out


def http1(messages: list[Message]) -> bytes:
    """Body messages as HTTP/1.1 chunked bytes (each through `http1_owed`)."""
    return b"".join(http1_owed(m["body"], not m["more_body"]) for m in messages)
