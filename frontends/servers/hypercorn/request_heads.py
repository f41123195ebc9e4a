"""A request head (request line and headers) is bounded in bytes, on every server kind.

Why: a head is buffered whole before anything can answer it, so its size is
memory any client can make the registry hold, with no token. h11 (both
hypercorn workers) bounds only a head that is still incomplete
(`max_incomplete_event_size`): one that arrives whole in one read, up to the
64 KiB a read takes, was served. uvicorn's httptools parser has no bound at
all (a security review sent it 100 MiB of header lines, all accepted);
`servers/uvicorn/http1` applies this same limit there.

The bound is `SERVICE_DISCOVERY_MAX_HEAD_BYTES` (`Settings.max_head_bytes`,
16 KiB by default): hypercorn's `h11_max_incomplete_size` carries it to
every connection (`servers/hypercorn/config.py`), uvicorn's protocol is made
with it (`servers/uvicorn/server.py`).

Past the limit the client gets `431` in the API's error shape, with
`Connection: close`, and nothing more is read. hypercorn answers its own
431s (h11's for incomplete heads, ours for complete ones) with an empty body;
`bound_hypercorn_heads` gives them this body too, so every kind answers alike.

Upstream: none known; drafted in docs/upstream.md ("A bound on complete request
heads, and a body for hypercorn's 431").
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import h11
from hypercorn.protocol.h11 import H11Protocol

from frontends.runtime.settings import DEFAULT_MAX_HEAD_BYTES
from sd_core import RequestError
from sd_core.http_api import error_body

#: The default bound on a request head, in bytes (request line, headers, blank
#: line); also the most the first-bytes gate buffers before handing a head over.
MAX_HEAD_BYTES = DEFAULT_MAX_HEAD_BYTES

_PATCHED = "_sd_bounds_heads"


def refusal(status: bytes, body: bytes) -> bytes:
    """A whole JSON error response that closes the connection, as a server writes it raw."""
    return (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, len(body), body)
    )


@functools.cache
def head_too_large(limit: int) -> bytes:
    """The `431` body, in the API's error shape, for heads bounded at `limit` bytes."""
    return error_body(
        RequestError(
            "request_header_fields_too_large",
            431,
            f"A request's line and headers may take at most {limit} bytes",
        )
    )


@functools.cache
def head_too_large_response(limit: int) -> bytes:
    """The whole `431`, as written by a server that writes its own bytes (uvicorn's protocol)."""
    return refusal(b"431 Request Header Fields Too Large", head_too_large(limit))


class HeadBoundConnection(h11.Connection):
    """h11's server connection, refusing a complete head over its incomplete-event bound.

    h11 measures only what it has not parsed yet; a request parsed from one
    read is measured here by the bytes it took from the receive buffer.
    """

    def _extract_next_receive_event(self) -> Any:
        before = len(self._receive_buffer)
        event = super()._extract_next_receive_event()
        if (
            isinstance(event, h11.Request)
            and before - len(self._receive_buffer) > self._max_incomplete_event_size
        ):
            # (raised inside `next_event`, which marks the peer's state ERROR, as for its own)
            raise h11.RemoteProtocolError("Request head too large", error_status_hint=431)
        return event


def bound_hypercorn_heads() -> None:
    """Patch hypercorn's HTTP/1.1 protocol: complete heads bounded too, 431s in the API's
    shape (idempotent).

    Fails loudly if a hypercorn or h11 upgrade changed what this relies on,
    rather than serving large heads again.
    """
    if not all(
        hasattr(h11.Connection, name) for name in ("_extract_next_receive_event", "next_event")
    ) or not hasattr(H11Protocol, "_send_error_response"):
        raise RuntimeError(
            "h11's Connection or hypercorn's H11Protocol changed: "
            "re-check how a request head is bounded before serving"
        )
    if getattr(H11Protocol.__init__, _PATCHED, False):
        return
    H11Protocol.__init__ = _bounded_init(H11Protocol.__init__)  # type: ignore[method-assign]
    shaped = _shaped_431(H11Protocol._send_error_response)
    H11Protocol._send_error_response = shaped  # type: ignore[method-assign, assignment]


def _bounded_init(init: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.connection = HeadBoundConnection(
            h11.SERVER, max_incomplete_event_size=self.config.h11_max_incomplete_size
        )

    setattr(__init__, _PATCHED, True)
    return __init__


def _shaped_431(
    send_error: Callable[[Any, int], Awaitable[None]],
) -> Callable[[Any, int], Awaitable[None]]:
    async def _send_error_response(self: Any, status_code: int) -> None:
        if status_code != 431:
            await send_error(self, status_code)
            return
        body = head_too_large(self.config.h11_max_incomplete_size)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
            *self.config.response_headers("h11"),
        ]
        await self._send_h11_event(h11.Response(status_code=431, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())

    return _send_error_response
