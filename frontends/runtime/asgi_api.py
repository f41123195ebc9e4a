"""The API as plain ASGI, the half both apps share: from an `http` scope to the response sent.

Why no framework on either loop: `request_flow` and `sd_core.HttpApi` decide
every answer (routing, auth, 404 and 405 included), so a framework's router,
request objects and response classes only repeat work. On asyncio they were
most of the cost: under wrk, Quart's request context, Werkzeug's routing and
its two tasks per request took most of quart+uvicorn's CPU per request
(docs/frontends.md). Each app passes its loop's half as a `LoopCalls`; what
is left is here, once.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from frontends.runtime.request_flow import Disconnected, Within, respond
from frontends.runtime.runtime import Runtime
from frontends.runtime.watch_streams import Receive, Send, send_response

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: A parked query's wait, started by the app's loop.
Wait = Callable[[], Awaitable[None]]


class UnlessGone(Protocol):
    """Awaits `wait()` on the app's loop unless the client leaves first; False when it left.

    The client leaving is `receive` returning `http.disconnect` (`disconnected`).
    Watching for it frees a parked query's slot as soon as its client hangs
    up, instead of holding it for the rest of its wait.
    """

    def __call__(self, wait: Wait, receive: Receive) -> Awaitable[bool]: ...


class LoopCalls(NamedTuple):
    """What an app's event loop supplies to the shared dispatch."""

    within: Within
    unless_gone: UnlessGone


def api_app(runtime: Runtime, calls: LoopCalls, other: ASGIApp) -> ASGIApp:
    """Every `http` scope served by the API; any other scope (the lifespan) handed to `other`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await serve_api(runtime, calls, scope, receive, send)
        else:
            await other(scope, receive, send)

    return app


async def serve_api(
    runtime: Runtime,
    calls: LoopCalls,
    scope: Scope,
    receive: Receive,
    send: Send,
    unrouted: ASGIApp | None = None,
) -> None:
    """One request through `request_flow.respond`; nothing is sent when the client left.

    `unrouted`, when given, gets the request instead of the core's 404 (`respond`).
    """
    path: str = scope["path"]
    if not path.startswith("/"):  # absolute-form target (RFC 9112 3.2.2)
        path = urlsplit(path).path or "/"

    async def park(watched: str | None, seconds: float, since: int) -> bool:
        return await calls.unless_gone(
            functools.partial(runtime.parked.wait, watched, seconds, since), receive
        )

    response = await respond(
        runtime, scope["method"], path, scope["query_string"], scope["headers"],
        body_chunks(receive), park, calls.within,
        None if unrouted is None else functools.partial(unrouted, scope, receive, send),
    )  # fmt: skip
    if response is not None:
        await send_response(send, response)


async def body_chunks(receive: Receive) -> AsyncGenerator[bytes, None]:
    """The request body as ASGI delivers it; `Disconnected` when the client leaves first."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def disconnected(receive: Receive) -> None:
    """Return once the client has gone (whatever else `receive` delivers meanwhile)."""
    while (await receive())["type"] != "http.disconnect":
        pass
