"""Holds one watch stream open on trio, writing what the hub queues for it.

Served straight on the ASGI `send` (see `shared.watch_streams.WatchRoute`): an
event costs one `send` per stream. A stream costs the one task the server
already runs the app in, and one `_ScopeStream`: between writes the task
waits in the server's `receive` (which is how it hears the client leave),
inside a cancel scope of its own that the hub cancels to wake it (`wake`);
trio's memory channels lose nothing to a cancelled `receive`. That replaced a
nursery with a second task waiting for the disconnect, and an event with a
deadline per wait (docs/performance.md, scenario 6). Mirrors
`quart_app/streams.py`; the write loop both share is
`shared.watch_streams.write_stream`.
"""

from __future__ import annotations

import trio

from sd_core.watch_stream import WatchSpec

from ..shared.watch_streams import Hold, Receive, Send, Stream, StreamHub, keep_alive, write_stream


class _ScopeStream(Stream):
    """A stream written by one trio task; `writer` stops it all, `parked` only its wait."""

    __slots__ = ("parked", "receive", "writer")

    def __init__(
        self, follows: frozenset[str] | None, receive: Receive, writer: trio.CancelScope
    ) -> None:
        super().__init__(follows)
        self.receive = receive
        self.writer = writer
        self.parked: trio.CancelScope | None = None  # the scope of the wait in `idle`

    def wake(self) -> None:
        if self.parked is not None:  # a writing task looks at what is pending once done
            self.parked.cancel()

    def abort(self) -> None:
        self.writer.cancel()  # a dropped stream sends nothing more

    async def idle(self) -> None:
        with trio.CancelScope() as parked:
            self.parked = parked
            try:
                self.received(await self.receive())
            finally:
                self.parked = None


def make_hold(keepalive: float) -> Hold:
    async def hold(hub: StreamHub, spec: WatchSpec, receive: Receive, send: Send) -> None:
        with trio.CancelScope() as writer:
            stream = _ScopeStream(spec.services, receive, writer)
            hub.open(stream, spec)
            if hub.start_ticking():  # a system task: it ends after the last stream
                trio.lowlevel.spawn_system_task(keep_alive, hub, keepalive, trio.sleep)
            try:
                await write_stream(stream, send)
            finally:
                hub.close(stream)

    return hold
