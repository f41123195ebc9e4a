"""The plain ASGI application on trio: every request into the shared request flow.

No framework: the ASGI messages are read and written here directly, which is
all the contract needs, since `shared.request_flow` and `sd_core.HttpApi`
decide every answer. The lifespan owns the nursery the probe driver and the
snapshot loop run in. Mirrors `quart_app/app.py` name for name.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio

from ..shared.logs import logfmt
from ..shared.request_flow import BodyTimeout, Disconnected, respond
from ..shared.runtime import LoopParts, Runtime
from ..shared.watch_streams import Receive, Send, send_response
from .probe_driver import ProbeDriver
from .snapshots import snapshot_loop
from .watchers import Watchers

log = logging.getLogger("sd.registry")
PARTS = LoopParts(frontend="trio", probe_driver=ProbeDriver, watchers=Watchers)
_T = TypeVar("_T")
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def create_app(runtime: Runtime) -> ASGIApp:
    """The ASGI callable serving `runtime` (built with `PARTS`)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await dispatch(scope, receive, send)
        elif scope["type"] == "lifespan":
            await lifespan(receive, send)

    async def lifespan(receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "lifespan.startup":
            return
        try:
            runtime.restore_state()
        except Exception as error:  # fail startup loudly rather than serve half a registry
            log.exception(logfmt("startup_failed", error=type(error).__name__))
            await send({"type": "lifespan.startup.failed", "message": str(error)[:200]})
            return
        async with trio.open_nursery() as background:
            await background.start(runtime.driver.run)
            background.start_soon(snapshot_loop, runtime)
            background.start_soon(runtime.run_cluster)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            runtime.watchers.release_all()
            background.cancel_scope.cancel()
        runtime.final_snapshot()
        await runtime.prober.aclose()
        await send({"type": "lifespan.shutdown.complete"})

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if not path.startswith("/"):  # absolute-form target (RFC 9112 3.2.2)
            path = urlsplit(path).path or "/"

        async def park(watched: str | None, seconds: float) -> bool:
            # Watching `receive` meanwhile frees the slot of a watcher that
            # hung up at once, instead of holding it for the rest of its wait.
            gone: list[bool] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_disconnect, receive, gone, nursery.cancel_scope)
                await runtime.watchers.wait(watched, seconds)
                nursery.cancel_scope.cancel()
            return not gone

        response = await respond(
            runtime, scope["method"], path, scope["query_string"], scope["headers"],
            _body_chunks(receive), park, _within,
        )  # fmt: skip
        if response is not None:
            await send_response(send, response)

    return app


async def _body_chunks(receive: Receive) -> AsyncGenerator[bytes, None]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def _within(seconds: float, work: Awaitable[_T]) -> _T:
    with trio.move_on_after(seconds):
        return await work
    raise BodyTimeout


async def _until_disconnect(receive: Receive, gone: list[bool], scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.append(True)
    scope.cancel()
