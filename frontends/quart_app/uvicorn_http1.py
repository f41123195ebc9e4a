"""uvicorn's HTTP/1.1 protocol, refusing the HTTP/2 preface the way hypercorn's setup does.

uvicorn (httptools, `http2=False`) never speaks HTTP/2: it ignores
`Upgrade: h2c`, and its parser rejects the prior-knowledge preface
(`PRI * HTTP/2.0`) as a malformed request, answered `400` in plain text
("Invalid HTTP request received.") with a warning in the log. That is safe,
but a different answer from the other server kinds, which give the API's
`400 http_version_not_supported` body (`frontends/shared/http1_only.py`).
This protocol gives the same body, then closes, without reading any of the
HTTP/2 frames that follow. Malformed HTTP/1.1 is left to uvicorn.

It also bounds each write, as `shared.write_deadline` does for hypercorn:
uvicorn waits for a client that never reads (its `FlowControl.drain`) with no
end, which held the connection, its task and its buffered response for as
long as the client liked. `BoundedFlowControl` gives up after
`WRITE_TIMEOUT_SECONDS` and aborts the connection (what was unsent is dropped);
uvicorn then reports the client gone, and the app's `send` returns. (With
pipelined requests uvicorn marks only the last one parsed as gone, so the
response being written fails on the closed transport instead, logged by
uvicorn; the connection is released all the same.)
"""

from __future__ import annotations

import asyncio
import contextlib

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..shared import write_deadline
from ..shared.http1_only import HTTP_VERSION_REFUSED

#: The first line of the HTTP/2 connection preface (RFC 9113 section 3.4).
PREFACE_LINE = b"PRI * HTTP/2.0\r\n"

_REFUSAL = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"content-type: application/json\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n"
    b"\r\n" % len(HTTP_VERSION_REFUSED)
) + HTTP_VERSION_REFUSED


class BoundedFlowControl(FlowControl):
    """uvicorn's flow control, whose wait for a slow reader ends after the write deadline."""

    async def drain(self) -> None:
        try:
            async with asyncio.timeout(write_deadline.WRITE_TIMEOUT_SECONDS):
                await super().drain()
        except TimeoutError:
            self._transport.abort()
            # The loop reports the loss a turn or two later; uvicorn's
            # `connection_lost` marks the request disconnected and then resumes
            # writing, so waiting for that keeps `send` from writing to a closed
            # transport (bounded, in case it never comes).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._is_writable_event.wait()


class Http1OnlyProtocol(HttpToolsProtocol):
    """httptools' protocol: the preface refused in the API's shape, writes under a deadline."""

    _first_data = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = BoundedFlowControl(transport)

    def data_received(self, data: bytes) -> None:
        if self._first_data:
            self._first_data = False
            if data.startswith(PREFACE_LINE):  # (split below 16 bytes: uvicorn's plain 400)
                self.transport.write(_REFUSAL)
                self.transport.close()
                return
        super().data_received(data)
