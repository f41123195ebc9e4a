"""A stream served by hypercorn still hears its client leave, whatever was pipelined after it.

Why: hypercorn's HTTP/1.1 protocol parses requests in the task that reads
the socket. When a request arrives behind one still being answered, h11 says
PAUSED and that task waits until the answer is complete before it reads
again. A watch stream's answer is only complete at shutdown, so with a
request pipelined after the watch the socket was never read again: the
client's close went unseen, and the stream (with one of the
`SERVICE_DISCOVERY_MAX_WATCH_STREAMS` slots) stayed open until a keep-alive
write failed, tens of seconds later. Five such connections held a cap of 5
(issue 24). Most watches never get here (`servers/direct` serves a watch on
a connection of its own below hypercorn, whatever follows it); this is for a
watch sent on a connection that already served a request.

What follows a stream can never be answered (the stream does not end while
its client is there; once it ends, the connection is closed). So once a
response turns out to be a stream (`200`, `text/event-stream`), whatever the
client pipelined is discarded, the reader is released, and what it reads
later is discarded too: it keeps reading, and so sees the client leave.

Upstream: none known; drafted in docs/upstream.md ("A streaming response with a
pipelined request behind it never hears the client leave").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import h11
from hypercorn.events import RawData
from hypercorn.protocol.events import Response
from hypercorn.protocol.h11 import H11Protocol

_PATCHED = "_sd_streams_hear_clients_leave"
_STREAMING = "_sd_streaming"
_EVENT_STREAM = (b"content-type", b"text/event-stream")


def streams_hear_clients_leave() -> None:
    """Patch hypercorn's HTTP/1.1 protocol as the module says (idempotent).

    Fails loudly if a hypercorn or h11 upgrade changed what this relies on.
    """
    probe = h11.Connection(h11.SERVER)
    if not hasattr(probe, "_receive_buffer") or not all(
        hasattr(H11Protocol, name) for name in ("handle", "stream_send")
    ):
        raise RuntimeError(
            "h11's Connection or hypercorn's H11Protocol changed: re-check how a stream's "
            "connection reads on before serving"
        )
    if getattr(H11Protocol.handle, _PATCHED, False):
        return
    handle = _discarding_after_streams(H11Protocol.handle)
    stream_send = _released_by_streams(H11Protocol.stream_send)
    H11Protocol.handle = handle  # type: ignore[method-assign, assignment]
    H11Protocol.stream_send = stream_send  # type: ignore[method-assign, assignment]


_Method = Callable[[Any, Any], Awaitable[None]]


def _discarding_after_streams(handle: _Method) -> _Method:
    async def discarding(self: Any, event: Any) -> None:
        if isinstance(event, RawData) and getattr(self, _STREAMING, False):
            if self.stream is not None:
                return  # a stream's client has nothing more to say; only its leaving counts
            setattr(self, _STREAMING, False)
        await handle(self, event)

    setattr(discarding, _PATCHED, True)
    return discarding


def _released_by_streams(stream_send: _Method) -> _Method:
    async def releasing(self: Any, event: Any) -> None:
        await stream_send(self, event)
        if (
            isinstance(event, Response)
            and event.status_code == 200
            and _EVENT_STREAM in event.headers
            and isinstance(self.connection, h11.Connection)
        ):
            setattr(self, _STREAMING, True)
            buffer = self.connection._receive_buffer
            self.connection._receive_buffer = type(buffer)()  # what was pipelined: unanswerable
            await self.can_read.set()  # a reader paused behind the stream reads on

    return releasing
