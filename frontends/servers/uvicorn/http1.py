"""uvicorn's HTTP/1.1 protocol, held to what the hypercorn kinds refuse and bound.

uvicorn (httptools, `http2=False`) never speaks HTTP/2: it ignores
`Upgrade: h2c`, and its parser rejects the prior-knowledge preface
(`PRI * HTTP/2.0`) as a malformed request. `Http1OnlyProtocol` answers the
preface with the API's `400 http_version_not_supported` body, as the other
server kinds do (`frontends/servers/hypercorn/http1_only.py`), then closes, without
reading any of the HTTP/2 frames that follow. It also closes what uvicorn
left open:

- Request heads. httptools has no size limit and uvicorn's only timer runs
  after a response, until the next byte arrives: 100 MiB of header lines were
  accepted, and a head sent a byte every 2 s stayed open. Here a head takes
  at most `max_head_bytes` (`431` in the API's shape past it, whether it
  arrives whole or in pieces) and must be complete within the keep-alive
  timeout, counted from the accept (or the first bytes' deadline,
  `direct_streams.FirstBytes`) and from the end of each response: the
  keep-alive timer runs on through the next head, not only until its first
  byte, as hypercorn's does. (A head counts the bytes of every read that
  starts inside it; one that begins in the middle of a read, behind a
  pipelined request, is bounded by its parsed size when complete and by the
  reads after that one while incomplete.)
- WebSocket. With no WebSocket library uvicorn served an upgrade as a plain
  request (`200`) and logged two warnings; it now gets `400
  websocket_not_supported` in the API's shape, as on hypercorn. Other
  upgrades (`h2c`) are ignored without a word, as on hypercorn.
- Malformed requests are still answered uvicorn's `400`, and logged at most
  once per `SERVICE_DISCOVERY_ERROR_LOG_INTERVAL_SECONDS` with a count (a
  flood of them wrote a line each), by one `Throttle` the server shares
  between its connections.
- A client that leaves. uvicorn tells only the last request it parsed; a
  request still running ahead of a pipelined one (a watch stream, which never
  ends by itself) was never told, held its stream and slot, and failed later
  with a traceback. `connection_lost` tells the running request too.

It also bounds each write, as `servers.hypercorn.write_deadline` does for hypercorn:
uvicorn waits for a client that never reads (its `FlowControl.drain`) with no
end, which held the connection, its task and its buffered response for as
long as the client liked. `BoundedFlowControl` gives up after `write_timeout`
(`SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS`) and aborts the connection (what
was unsent is dropped); uvicorn then reports the client gone, and the app's `send` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httptools
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from frontends.runtime.logs import logfmt
from frontends.runtime.process_setup import Throttle
from frontends.runtime.settings import DEFAULT_ERROR_LOG_INTERVAL
from frontends.servers.hypercorn import write_deadline
from frontends.servers.hypercorn.http1_only import HTTP_VERSION_REFUSED, WEBSOCKET_REFUSED
from frontends.servers.hypercorn.request_heads import (
    MAX_HEAD_BYTES,
    head_too_large_response,
    refusal,
)

log = logging.getLogger("sd.registry")

#: The first line of the HTTP/2 connection preface (RFC 9113 section 3.4).
PREFACE_LINE = b"PRI * HTTP/2.0\r\n"

_PREFACE_REFUSAL = refusal(b"400 Bad Request", HTTP_VERSION_REFUSED)
_WEBSOCKET_REFUSAL = refusal(b"400 Bad Request", WEBSOCKET_REFUSED)
#: uvicorn's own answer to a malformed request (plain text).
_MALFORMED = "Invalid HTTP request received."
#: The request line's fixed part (" " before the target, " HTTP/1.1\r\n") and the blank line.
_HEAD_FRAMING = 1 + 11 + 2
#: What a header line adds to its name and value (": ", "\r\n").
_HEADER_FRAMING = 4

if not all(
    hasattr(HttpToolsProtocol, name)
    for name in ("_start_asgi_task", "_unset_keepalive_if_required", "_get_upgrade")
):
    raise RuntimeError(
        "uvicorn's HttpToolsProtocol changed: re-check its keep-alive timer, upgrade "
        "check and request tasks before serving with it"
    )


class BoundedFlowControl(FlowControl):
    """uvicorn's flow control, whose wait for a slow reader ends after `timeout` seconds."""

    def __init__(
        self, transport: asyncio.Transport, timeout: float = write_deadline.WRITE_TIMEOUT_SECONDS
    ) -> None:
        super().__init__(transport)
        self._timeout = timeout

    async def drain(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
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


class _Refused(Exception):
    """Raised in a parser callback to stop parsing: the answer is in `_refusal`."""


class Http1OnlyProtocol(HttpToolsProtocol):
    """httptools' protocol with the hypercorn kinds' refusals and bounds (see the module).

    `head_deadline`: the loop time by which the first head must be complete
    (the first bytes' deadline, when they were read below uvicorn). The
    server's settings come as keywords (`server.uvicorn_config` binds them):
    `max_head_bytes`, `write_timeout`, and `malformed_log`, the throttle every
    connection of the server shares.
    """

    def __init__(
        self,
        *args: Any,
        head_deadline: float | None = None,
        max_head_bytes: int = MAX_HEAD_BYTES,
        write_timeout: float = write_deadline.WRITE_TIMEOUT_SECONDS,
        malformed_log: Throttle | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline = head_deadline
        self._max_head_bytes = max_head_bytes
        self._write_timeout = write_timeout
        self._malformed_log = malformed_log or Throttle(DEFAULT_ERROR_LOG_INTERVAL)
        self._first_data = True
        self._in_head = True  # between requests or inside a head: reads count towards it
        self._head_bytes = 0
        self._refusal = b""  # what a parser callback refused the request with
        self._deferred = b""  # a refusal waiting for the responses owed before it
        self._running: RequestResponseCycle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = BoundedFlowControl(transport, self._write_timeout)
        deadline = self._head_deadline
        if deadline is None:
            deadline = self.loop.time() + self.timeout_keep_alive
        self.timeout_keep_alive_task = self.loop.call_at(deadline, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        """As uvicorn's, but the keep-alive timer runs on, and heads are counted."""
        if self._deferred:
            return  # refused: nothing more is read (the refusal waits for earlier answers)
        if self._first_data:
            self._first_data = False
            if data.startswith(PREFACE_LINE):  # (split below 16 bytes: uvicorn's plain 400)
                self._refuse(_PREFACE_REFUSAL)
                return
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # not WebSocket (refused as its head completed): served as HTTP/1.1
        except httptools.HttpParserError:
            if self._refusal:
                self._refuse(self._refusal)
            else:
                self._malformed()
            return
        if self._in_head and self._head_bytes > self._max_head_bytes:
            self._refuse(head_too_large_response(self._max_head_bytes))

    def on_headers_complete(self) -> None:
        self._unset_keepalive_if_required()  # the head arrived in time
        self._in_head = False
        self._head_bytes = 0
        if self._head_size() > self._max_head_bytes:
            self._refusal = head_too_large_response(self._max_head_bytes)
            raise _Refused
        if self.parser.should_upgrade() and self._get_upgrade() == b"websocket":
            self._refusal = _WEBSOCKET_REFUSAL
            raise _Refused
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True  # what follows is the next request's head
        super().on_message_complete()

    def _head_size(self) -> int:
        """The complete head's size as parsed (its line, headers and blank line)."""
        size = len(self.parser.get_method()) + len(self.url) + _HEAD_FRAMING
        for name, value in self.headers:
            size += len(name) + len(value) + _HEADER_FRAMING
        return size

    def _refuse(self, response: bytes) -> None:
        """Answer `response` and close, once every request before it has been answered."""
        if (self.cycle is not None and not self.cycle.response_complete) or self.pipeline:
            self._deferred = response  # (HTTP/1.1 answers requests in order)
            self.flow.pause_reading()
            return
        if self.transport.is_closing():
            return  # (the last response closed the connection: nothing more to say)
        self.transport.write(response)
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._deferred:
            self._refuse(self._deferred)

    def _malformed(self) -> None:
        admitted = self._malformed_log.admit()
        if admitted is not None:
            count, since = admitted
            log.warning(logfmt("invalid_http_request", count=count, since_seconds=since))
        self.send_400_response(_MALFORMED)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        running = self._running
        if running is not None and not running.response_complete:
            running.disconnected = True  # (uvicorn told only the last request parsed)
            running.message_event.set()
