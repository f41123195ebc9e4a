"""One HTTP request from its headers to the response, the part both apps share.

An app adapts its framework's request to three things: the raw ASGI header
list, the body as an async generator of chunks, and a `park` coroutine that
waits out a blocking query the way its event loop does. Everything else
(admission, the body limit, the one core call, the second call after a wait)
is here, once, with no event-loop call of its own, so it runs on either loop.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import NamedTuple, Protocol, TypeVar

from frontends.runtime.logs import logfmt
from frontends.runtime.runtime import Runtime
from sd_core import INTERNAL_ERROR, BlockingWait, HttpResponse, RoutedRequest
from sd_core.http_api import NOT_ROUTED, PendingWrite

log = logging.getLogger("sd.registry")
_T = TypeVar("_T")

# How much of an oversized body is read (and dropped) before answering 413.
# Closing a connection with unread data in it makes TCP send a reset, which
# can destroy the 413 before the client reads it; past this, we close anyway.
OVERSIZE_DRAIN_BYTES = 1024 * 1024

# Waits out a blocking query on `scope` for `seconds`; False when the client left meanwhile.
Park = Callable[[str | None, float, int], Awaitable[bool]]
# Serves a request whose path no route of the core has (a framework's router beside it).
Unrouted = Callable[[], Awaitable[None]]


class Disconnected(Exception):
    """Raised by an app's body chunks: the client went away before its body arrived."""


class BodyTimeout(Exception):
    """Raised by an app's `Within`: the body did not arrive before its deadline."""


class Within(Protocol):
    """Awaits `work` for at most `seconds` on the app's loop, else raises BodyTimeout."""

    def __call__(self, seconds: float, work: Awaitable[_T]) -> Awaitable[_T]: ...


async def respond(
    runtime: Runtime,
    method: str,
    path: str,
    query: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    chunks: AsyncGenerator[bytes, None],
    park: Park,
    within: Within,
    unrouted: Unrouted | None = None,
) -> HttpResponse | None:
    """The response to send, or None when nothing is left to send (the client went
    away first, or `unrouted` served the request).

    Every request is counted in flight from here until its response is ready.
    `within` bounds the whole body's arrival by `SERVICE_DISCOVERY_BODY_TIMEOUT_SECONDS`.
    `unrouted`, when given, serves a path that no route of the core has, in
    place of the core's 404: the route the head found is the one used, so a
    path is routed once whoever answers it, and the framework's requests are
    admitted as the core's are.
    """
    refused = runtime.admit(method, path)
    if refused is not None:
        return refused
    try:
        heads = _RequestHeads.read(headers)
        # Routed and authorised once, from the head, before any body is read: an
        # anonymous client must not hold a connection and an in-flight slot while
        # it trickles a body nobody would accept. With a body left unread, the
        # connection cannot carry another request, so it is closed. A body that
        # its Content-Length already puts over the limit gets its 413 first
        # (docs/api.md's order), after a bounded drain.
        routed = runtime.head(method, path, query, heads.authorization, heads.content_type)
        if unrouted is not None and is_unrouted(routed):
            await unrouted()
            return None
        limit = routed.body_limit
        if routed.refused_early and heads.content_length <= limit:
            refused = await _answer(runtime, routed, b"", park)
            if refused is not None and (heads.content_length or heads.chunked):
                return closing(refused)
            return refused
        # Neither header: the request has no body (RFC 9112 6.3), so nothing is
        # read and no deadline is armed (on asyncio, that is a timer per request).
        body = b""
        if heads.content_length or heads.chunked:
            try:
                read = await within(
                    runtime.settings.body_timeout,
                    read_body(chunks, limit, heads.content_length, heads.chunked),
                )
            except Disconnected:
                return None
            except BodyTimeout:
                return closing(runtime.body_timeout(routed))
            if read is None:
                return closing(runtime.too_large(routed))
            body = read
        return await _answer(runtime, routed, body, park)
    finally:
        runtime.leave()


def is_unrouted(routed: RoutedRequest) -> bool:
    """Whether no route of the core has the path: its 404 (a 405 names a route it has)."""
    answer = routed.answer
    return routed.refusal == NOT_ROUTED and answer is not None and answer.status == 404


class _RequestHeads(NamedTuple):
    """What the flow reads from the request's headers."""

    authorization: str | None
    content_type: str | None
    content_length: int
    chunked: bool

    @classmethod
    def read(cls, headers: Iterable[tuple[bytes, bytes]]) -> _RequestHeads:
        authorizations: list[str] = []
        consul_tokens: list[str] = []
        content_types: list[str] = []
        content_length = 0
        chunked = False
        for name, value in headers:
            if name == b"authorization":
                authorizations.append(value.decode("latin-1"))
            elif name == b"x-consul-token":
                consul_tokens.append(value.decode("latin-1"))
            elif name == b"content-type":
                content_types.append(value.decode("latin-1"))
            elif name == b"content-length" and value.isdigit():
                content_length = int(value)
            elif name == b"transfer-encoding":
                chunked = True
        # A repeated header is read as its values joined by ", " (RFC 9110),
        # so a duplicate can never pick which token or media type counts.
        # Consul's clients send their token as X-Consul-Token: it counts as a
        # bearer token when no Authorization header is sent (docs/integrations.md).
        if not authorizations and consul_tokens:
            authorizations = ["Bearer " + ", ".join(consul_tokens)]
        return cls(
            ", ".join(authorizations) or None,
            ", ".join(content_types) or None,
            content_length,
            chunked,
        )


async def _answer(
    runtime: Runtime, routed: RoutedRequest, body: bytes, park: Park
) -> HttpResponse | None:
    """The core's answer to `routed`, after waiting out a blocking query or a cluster write."""
    try:
        result = runtime.answer(routed, body)
        if isinstance(result, PendingWrite):  # cluster mode: the store has the write
            result = await runtime.written(result)
        if isinstance(result, BlockingWait):
            # Read before any await: a change from here on must wake this query, even
            # if the loop starts its wait a turn later (asyncio's ensure_future does).
            since = runtime.parked.wakes
            if not await park(result.scope, runtime.jittered(result), since):
                return None  # the client went away while parked
            result = runtime.answer(routed, body, may_block=False)
            assert isinstance(result, HttpResponse)
    except Exception:  # after the core's own guard: a driver or watcher bug
        log.exception(logfmt("internal_error", method=routed.method, path=routed.path[:200]))
        result = INTERNAL_ERROR
    return result


def closing(response: HttpResponse) -> HttpResponse:
    """`response` with `Connection: close`: the server hangs up once it is sent."""
    return response._replace(headers=(*response.headers, ("connection", "close")))


async def read_body(
    chunks: AsyncGenerator[bytes, None], limit: int, content_length: int, chunked: bool = False
) -> bytes | None:
    """The body, or None when it passes the limit (never buffered past it).

    An oversized body with a Content-Length is read on and dropped, up to a
    bound, so that the client gets to read the 413 (see OVERSIZE_DRAIN_BYTES).
    A chunked one is not: its chunks can be a byte each, and parsing a
    megabyte of those costs seconds of CPU, so it is refused the moment it
    passes the limit (the 413 then closes the connection).
    """
    if content_length > limit + OVERSIZE_DRAIN_BYTES:
        return None
    body = bytearray()
    size = 0
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            size += len(chunk)
            if size <= limit:
                body += chunk
            elif chunked or size > limit + OVERSIZE_DRAIN_BYTES:
                return None
    return bytes(body) if size <= limit else None
