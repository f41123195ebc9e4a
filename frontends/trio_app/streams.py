"""Holds one watch stream open on trio, writing what the hub queues for it.

Served straight on the ASGI `send` (see `shared.watch_streams.WatchRoute`): an event costs one
`send` per stream. A nursery beside the writer notices the client leaving.
Mirrors `quart_app/streams.py`; the write loop both share is
`shared.watch_streams.write_stream`.
"""

from __future__ import annotations

import trio

from sd_core.watch_stream import WatchSpec

from ..shared.watch_streams import Hold, Receive, Send, StreamHub, until_disconnect, write_stream


class _Wakeup:
    """A re-armable trio.Event: `set` wakes the writer's current wait."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = trio.Event()

    def set(self) -> None:
        self.event.set()

    async def wait(self, seconds: float) -> bool:
        """Wait for the next `set` for at most `seconds`; whether it came."""
        self.event = trio.Event()
        with trio.move_on_after(seconds) as idle:
            await self.event.wait()
        return not idle.cancelled_caught


def make_hold(keepalive: float) -> Hold:
    async def hold(hub: StreamHub, spec: WatchSpec, receive: Receive, send: Send) -> None:
        woken = _Wakeup()
        with trio.CancelScope() as writer:

            def abort() -> None:
                woken.set()
                writer.cancel()  # a dropped stream sends nothing more

            stream = hub.open(spec, woken.set, abort)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(until_disconnect, receive, stream)
                    await write_stream(stream, send, woken.wait, keepalive)
                    nursery.cancel_scope.cancel()
            finally:
                hub.close(stream)

    return hold
