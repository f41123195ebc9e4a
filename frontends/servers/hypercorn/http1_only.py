"""HTTP/1.1 only: the registry never speaks HTTP/2, on any frontend.

Why: hypercorn 0.18 serves HTTP/2 cleartext on a plain port whether asked to
or not. `H11Protocol._check_protocol` answers `Upgrade: h2c` with `101
Switching Protocols`, and treats a `PRI * HTTP/2.0` preface ("prior
knowledge") as an HTTP/2 connection; its `Config` has no setting to turn
either off. HTTP/2 lets one client open and reset streams far faster than it
could send requests (the "rapid reset" attack, CVE-2023-44487): 100
connections x 900 reset streams held the registry at 100 % CPU for a minute
and a half, with no token needed. Nothing our clients use needs HTTP/2.

What we do instead, in two places:

- `refuse_http2_switch()` replaces that hypercorn method with one that never
  switches: an `Upgrade: h2c` header is ignored (RFC 9110 section 7.8 lets a
  server ignore Upgrade) and the request is answered over HTTP/1.1; the
  preface reaches the application as a request for HTTP version 2.0.
- `Http1Only` (`frontends/runtime/http1_guard.py`, part of every app the
  registry serves) wraps the ASGI application and answers any request whose HTTP
  version is not 1.0 or 1.1 with `400` in the API's error shape, before any
  framework sees it. The preface's second line (`SM`) is then parsed as the
  next request, which h11 refuses as malformed: hypercorn answers 400 and
  closes, so not one HTTP/2 frame after the preface is ever read. (The 400
  does not say `Connection: close` itself: on the trio worker, hypercorn's
  reader would then close the socket while the 400 is still being written,
  since its `send_eof` does not take the send lock, and the 400 is lost.)
  Why 400 and not 505 HTTP Version Not Supported: a request is the client's
  doing, and garbage from a client never gets a 5xx here, which would page
  whoever alerts on the registry's server errors (see the raw-socket tests).

The same wrapper closes two more doors before any framework sees a request:

- WebSocket: the API has none, but hypercorn hands a valid upgrade to the
  application as a `websocket` scope, which Quart answered with a 500 and two
  tracebacks (1,000 upgrades wrote 4.1 MB of log) and the trio app left for
  hypercorn to answer 500. It now gets `400 websocket_not_supported` in the
  API's error shape (the ASGI "websocket denial response"), and no log line.
- Request smuggling's shape: h11 accepts a request with both
  `Content-Length` and `Transfer-Encoding` (it frames the body as chunked).
  RFC 9112 section 6.1 lets a server reject such a request, and says it must
  close the connection after answering: a proxy in front may have framed the
  body by the other header, and whatever follows is not a request we can
  trust. It gets `400 ambiguous_framing` with `Connection: close`.

TLS is not configured by the registry, but ALPN is pinned to `http/1.1` all
the same (see `config`), so adding certificates later cannot bring
HTTP/2 back through the other door.

Upstream: none known; drafted in docs/upstream.md ("An option to refuse HTTP/2 cleartext").
"""

from __future__ import annotations

from hypercorn.protocol.h11 import H11Protocol

from frontends.runtime.http1_guard import HTTP_VERSION_REFUSED, WEBSOCKET_REFUSED

__all__ = ["HTTP_VERSION_REFUSED", "WEBSOCKET_REFUSED", "refuse_http2_switch"]


async def _never_switch(self: H11Protocol, event: object) -> None:
    """Replaces hypercorn's protocol check: stay on HTTP/1.1, whatever the request asks."""


def refuse_http2_switch() -> None:
    """Make hypercorn's HTTP/1.1 protocol never switch to HTTP/2 (idempotent).

    Fails loudly if a hypercorn upgrade renamed the method, rather than
    silently serving HTTP/2 again; the tests pin the behaviour on each frontend.
    """
    if not hasattr(H11Protocol, "_check_protocol"):
        raise RuntimeError(
            "hypercorn's H11Protocol has no _check_protocol any more: "
            "re-check how it switches to HTTP/2 before serving"
        )
    H11Protocol._check_protocol = _never_switch  # type: ignore[method-assign]
