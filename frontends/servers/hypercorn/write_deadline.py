"""A deadline for writing each piece of a response, on either hypercorn worker.

Why: hypercorn 0.18 waits for a slow reader forever. Its asyncio worker
awaits `drain()` with no timeout, and its trio worker sends under a
*shielded* cancel scope, so not even shutdown's graceful timeout can end
the wait. A client that pipelines hundreds of requests and never reads held
its connection, its task and its buffered responses for as long as it
liked, and kept either frontend from exiting on SIGTERM.

`bound_asyncio_writes()` / `bound_trio_writes()` replace the worker's
`TCPServer.protocol_send` with one that gives up after the config's
`write_timeout` (`SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS`, set by
`config.hypercorn_config`; `WRITE_TIMEOUT_SECONDS` on a plain hypercorn
config) and closes the connection (an abort: whatever was
left unsent is dropped). Everything else is passed to hypercorn's own method.
Like `http1_only.refuse_http2_switch`, they fail loudly if hypercorn's
shape changed, and `tests/reliability/test_reliability_shutdown.py` pins the
behaviour on each frontend.

Upstream: pgjones/hypercorn#262 proposed a `write_timeout` option (closed
unmerged); see docs/upstream.md ("A write deadline").
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.events import Closed, Event, RawData

#: How long one write of a response may wait for the client to read, by default.
WRITE_TIMEOUT_SECONDS = 10.0


def write_timeout(server: Any) -> float:
    """The write deadline of hypercorn `TCPServer` `server`, from its config."""
    timeout: float = getattr(server.config, "write_timeout", WRITE_TIMEOUT_SECONDS)
    return timeout


_Send = Callable[[Any, Event], Awaitable[None]]
_Write = Callable[[Any, RawData], Awaitable[None]]


def _original(server_class: type, marker: str) -> _Send:
    send: _Send | None = getattr(server_class, "protocol_send", None)
    if send is None:
        raise RuntimeError(
            f"hypercorn's {server_class.__module__}.TCPServer has no protocol_send any more: "
            "re-check how it writes responses before serving"
        )
    return getattr(send, marker, send)


def _patch(server_class: Any, write: _Write) -> None:
    """Send `server_class`'s raw bytes with `write`, under its send lock; other events as before.

    The original method is kept on the replacement, so patching again replaces it again
    rather than wrapping the wrapper.
    """
    original = _original(server_class, "_sd_original")

    async def protocol_send(self: Any, event: Event) -> None:
        if not isinstance(event, RawData):
            await original(self, event)
            return
        async with self.send_lock:
            await write(self, event)

    protocol_send._sd_original = original  # type: ignore[attr-defined]
    server_class.protocol_send = protocol_send


def bound_asyncio_writes() -> None:
    """Patch hypercorn's asyncio TCPServer (idempotent)."""
    from hypercorn.asyncio.tcp_server import TCPServer

    async def write(self: TCPServer, event: RawData) -> None:
        try:
            self.writer.write(event.data)
            # Only a write the kernel did not take at once can block.
            if self.writer.transport.get_write_buffer_size():
                async with asyncio.timeout(write_timeout(self)):
                    await self.writer.drain()
        except (ConnectionError, RuntimeError):
            await self.protocol.handle(Closed())
        except TimeoutError:
            self.writer.transport.abort()
            await self.protocol.handle(Closed())

    _patch(TCPServer, write)


def bound_trio_writes() -> None:
    """Patch hypercorn's trio TCPServer (idempotent).

    Most writes fit in the socket's buffer at once: those are written straight
    to the socket (`os.write` on its descriptor, non-blocking as trio keeps it),
    and only the rest, when the reader is behind, waits under the deadline. A
    trio cancel scope with a deadline per write was about half the server CPU
    of writing one event to 10,000 watch streams (py-spy, docs/performance.md).
    """
    import trio
    from hypercorn.trio.tcp_server import TCPServer

    async def write(self: TCPServer, event: RawData) -> None:
        data = event.data
        try:
            sent = os.write(self.stream.socket.fileno(), data)
        except BlockingIOError:
            sent = 0
        except AttributeError:  # a TLS stream: no socket of its own, every write waits below
            sent = 0
        except OSError:  # reset, or closed (a descriptor of -1)
            await self.protocol.handle(Closed())
            return
        if sent == len(data):
            await trio.lowlevel.cancel_shielded_checkpoint()  # a checkpoint, as send_all is
            return
        try:
            # Shielded as hypercorn does (a response is not cut short by
            # a cancelled request), but no longer without end.
            with trio.CancelScope(
                shield=True, deadline=trio.current_time() + write_timeout(self)
            ) as scope:
                await self.stream.send_all(data[sent:])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await self.protocol.handle(Closed())
            return
        if scope.cancelled_caught:
            with trio.CancelScope(shield=True):
                await self.stream.aclose()
            await self.protocol.handle(Closed())

    _patch(TCPServer, write)
