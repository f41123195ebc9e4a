"""The plain ASGI application: every request into the shared HTTP mapping.

No framework: the ASGI messages are read and written here directly, which is
all the contract needs, since routing, auth and every answer are decided by
`sd_core.HttpApi`. The lifespan task owns the nursery the probe driver runs in.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import trio

from sd_core import INTERNAL_ERROR, BlockingWait, HttpRequest, HttpResponse

from ..shared.logs import logfmt
from ..shared.probers import make_prober
from ..shared.runtime import OVERSIZE_DRAIN_BYTES, Runtime
from .probe_driver import Fetch, ProbeDriver
from .snapshots import snapshot_loop
from .watchers import Watchers

log = logging.getLogger("sd.registry")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Disconnected(Exception):
    """The client went away before its body arrived."""


class RegistryApp:
    """The ASGI callable; `watchers` and `driver` are exposed for the server and tests."""

    def __init__(self, runtime: Runtime, *, fetch: Fetch | None = None) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.watchers = Watchers(runtime)
        self._prober = make_prober(settings)
        self.driver = ProbeDriver(
            runtime,
            fetch or self._prober.probe,
            concurrency=settings.max_concurrent_probes,
            timeout=settings.registry.health_check_timeout,
        )
        runtime.submit_probe = self.driver.submit
        runtime.wake_watchers = self.watchers.wake
        runtime.wake_driver = self.driver.wake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        try:
            self.runtime.restore_state()
        except Exception as error:  # fail startup loudly rather than serve half a registry
            log.exception(logfmt("startup_failed", error=type(error).__name__))
            await send({"type": "lifespan.startup.failed", "message": str(error)[:200]})
            return
        async with trio.open_nursery() as nursery:
            await nursery.start(self.driver.run)
            nursery.start_soon(snapshot_loop, self.runtime)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            self.watchers.release_all()
            nursery.cancel_scope.cancel()
        self.runtime.final_snapshot()
        await self._prober.aclose()
        await send({"type": "lifespan.shutdown.complete"})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime
        method: str = scope["method"]
        path: str = scope["path"]
        if not path.startswith("/"):  # absolute-form target (RFC 9112 3.2.2)
            path = urlsplit(path).path or "/"
        refused = runtime.admit(method, path)
        if refused is not None:
            await _respond(send, refused)
            return
        try:
            response = await self._answer(scope, receive, method, path)
            if response is not None:
                await _respond(send, response)
        finally:
            runtime.leave()

    async def _park(self, receive: Receive, wait: BlockingWait) -> bool:
        """Wait out a blocking query; True when the client disconnected meanwhile.

        Watching `receive` frees the slot of a watcher that hung up at once,
        instead of holding it for the rest of its wait.
        """
        gone: list[bool] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_until_disconnect, receive, gone, nursery.cancel_scope)
            await self.watchers.wait(wait.scope, self.runtime.jittered(wait))
            nursery.cancel_scope.cancel()
        return bool(gone)

    async def _answer(
        self, scope: Scope, receive: Receive, method: str, path: str
    ) -> HttpResponse | None:
        """The response to send, or None when the client went away first."""
        runtime = self.runtime
        authorizations: list[str] = []
        content_types: list[str] = []
        content_length = 0
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorizations.append(value.decode("latin-1"))
            elif name == b"content-type":
                content_types.append(value.decode("latin-1"))
            elif name == b"content-length" and value.isdigit():
                content_length = int(value)
        # A repeated header is read as its values joined by ", " (RFC 9110),
        # so a duplicate can never pick which token or media type counts.
        authorization = ", ".join(authorizations) or None
        content_type = ", ".join(content_types) or None
        try:
            body = await _read_body(receive, runtime.api.max_body_bytes, content_length)
        except _Disconnected:
            return None
        if body is None:
            return runtime.too_large(method, path)
        request = HttpRequest(
            method, path, scope["query_string"], authorization, content_type, body
        )
        try:
            result = runtime.handle(request)
            if isinstance(result, BlockingWait):
                if await self._park(receive, result):
                    return None  # the client went away while parked
                result = runtime.handle(request, may_block=False)
                assert isinstance(result, HttpResponse)
        except Exception:
            log.exception(logfmt("internal_error", method=method, path=path[:200]))
            result = INTERNAL_ERROR
        return result


async def _until_disconnect(receive: Receive, gone: list[bool], scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.append(True)
    scope.cancel()


async def _read_body(receive: Receive, limit: int, content_length: int) -> bytes | None:
    """The body, or None when it passes the limit (never buffered past it).

    An oversized body is read on and dropped, up to a bound, so that the
    client gets to read the 413 (see OVERSIZE_DRAIN_BYTES).
    """
    if content_length > limit + OVERSIZE_DRAIN_BYTES:
        return None
    body = bytearray()
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            body += chunk
        elif size > limit + OVERSIZE_DRAIN_BYTES:
            return None
        if not message.get("more_body", False):
            return bytes(body) if size <= limit else None


async def _respond(send: Send, response: HttpResponse) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [
                *((k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers),
                (b"content-length", str(len(response.body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": response.body})


def create_app(runtime: Runtime, *, fetch: Fetch | None = None) -> RegistryApp:
    """Build the app around `runtime`; `fetch` replaces the HTTP probe in driver tests."""
    return RegistryApp(runtime, fetch=fetch)
