"""uvicorn's HTTP/1.1 protocol, refusing the HTTP/2 preface the way hypercorn's setup does.

uvicorn (httptools, `http2=False`) never speaks HTTP/2: it ignores
`Upgrade: h2c`, and its parser rejects the prior-knowledge preface
(`PRI * HTTP/2.0`) as a malformed request, answered `400` in plain text
("Invalid HTTP request received.") with a warning in the log. That is safe,
but a different answer from the other server kinds, which give the API's
`400 http_version_not_supported` body (`frontends/shared/http1_only.py`).
This protocol gives the same body, then closes, without reading any of the
HTTP/2 frames that follow. Malformed HTTP/1.1 is left to uvicorn.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


class Http1OnlyProtocol(HttpToolsProtocol):
    """httptools' protocol, with the preface on a new connection refused in the API's shape."""

    _first_data = True

    def data_received(self, data: bytes) -> None:
        if self._first_data:
            self._first_data = False
            if data.startswith(PREFACE_LINE):  # (split below 16 bytes: uvicorn's plain 400)
                self.transport.write(_REFUSAL)
                self.transport.close()
                return
        super().data_received(data)
