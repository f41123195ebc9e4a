"""HTTP/1.1 only, as an ASGI wrapper: what the registry never serves is refused before any app.

Part of every app the registry serves (the trio app, and the Quart app
`quart_app.mount` builds, user routes included), so an embedded registry keeps
it. It answers, in the API's error shape and before any framework sees the
request: an HTTP version other than 1.0 or 1.1 (`400 http_version_not_supported`:
how hypercorn delivers an HTTP/2 prior-knowledge preface once
`servers/hypercorn/http1_only.py` stops it switching), a WebSocket handshake
(`400 websocket_not_supported`), and a request carrying both Content-Length
and Transfer-Encoding (`400 ambiguous_framing`, then close). The reasons for
each are in `servers/hypercorn/http1_only.py`'s docstring. Loop-free and
server-free: plain ASGI messages only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from frontends.runtime.watch_streams import Message, Receive, Send
from sd_core import RequestError
from sd_core.http_api import error_body

#: The only HTTP versions the registry answers.
HTTP1_VERSIONS = frozenset({"1.0", "1.1"})

HTTP_VERSION_REFUSED = error_body(
    RequestError(
        "http_version_not_supported",
        400,
        "Only HTTP/1.0 and 1.1 are served here; HTTP/2 (prior knowledge or h2c) is refused",
    )
)
WEBSOCKET_REFUSED = error_body(
    RequestError("websocket_not_supported", 400, "This API serves no WebSocket endpoints")
)
AMBIGUOUS_FRAMING = error_body(
    RequestError(
        "ambiguous_framing",
        400,
        "A request may not carry both Content-Length and Transfer-Encoding (RFC 9112 6.1)",
    )
)


def _json_headers(body: bytes, *, close: bool = False) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    return headers


def _ambiguous_framing(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Both framing headers present. ASGI servers hand over names lowercased, as
    `request_flow` also relies on; one pass, no set built (this runs per request)."""
    length = coding = False
    for name, _ in headers:
        if name == b"content-length":
            length = True
        elif name == b"transfer-encoding":
            coding = True
    return length and coding


class Http1Only:
    """ASGI wrapper: refuses, before the framework, what the registry never serves.

    HTTP versions other than 1.0 and 1.1, WebSocket upgrades, and requests
    with both Content-Length and Transfer-Encoding (see the module's docstring).
    """

    def __init__(self, app: Callable[[Message, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await _send_error(send, WEBSOCKET_REFUSED, close=True, websocket=True)
            return
        if scope["type"] == "http":
            if scope.get("http_version") not in HTTP1_VERSIONS:
                await _send_error(send, HTTP_VERSION_REFUSED, close=False)
                return
            if _ambiguous_framing(scope["headers"]):
                await _send_error(send, AMBIGUOUS_FRAMING, close=True)
                return
        await self.app(scope, receive, send)


async def _send_error(send: Send, body: bytes, *, close: bool, websocket: bool = False) -> None:
    """A 400 in the API's error shape; `websocket`: as the refusal of a handshake.

    A refused WebSocket handshake is the same two messages as an HTTP
    response, under the `websocket.http.response.*` names (ASGI's denial
    response extension), answered instead of the 101.

    `close` adds `Connection: close`. Not for the HTTP/2 preface: on the trio
    worker the 400 would then be lost (see `servers/hypercorn/http1_only.py`).
    """
    prefix = "websocket.http.response" if websocket else "http.response"
    start: dict[str, Any] = {
        "type": f"{prefix}.start",
        "status": 400,
        "headers": _json_headers(body, close=close),
    }
    if not websocket:
        start["trailers"] = False
    await send(start)
    await send({"type": f"{prefix}.body", "body": body, "more_body": False})
