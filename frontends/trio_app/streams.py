"""Holds one watch stream open on trio, writing what the hub queues for it.

Served straight on the ASGI `send` (see `shared.watch_streams.WatchRoute`): an event costs one
`send` per stream. A nursery beside the writer notices the client leaving.
Mirrors `quart_app/streams.py` name for name.
"""

from __future__ import annotations

import trio

from sd_core.watch_stream import KEEPALIVE, WatchSpec

from ..shared.watch_streams import (
    Hold,
    Receive,
    Send,
    Stream,
    StreamHub,
    body,
    stream_start,
    until_disconnect,
)


class _Wakeup:
    """A re-armable trio.Event: `set` wakes the writer's current wait."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = trio.Event()

    def set(self) -> None:
        self.event.set()


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
                    await send(stream_start())
                    await _write_loop(stream, woken, send, keepalive)
                    nursery.cancel_scope.cancel()
            finally:
                hub.close(stream)

    return hold


async def _write_loop(stream: Stream, woken: _Wakeup, send: Send, keepalive: float) -> None:
    while True:
        data = stream.take()
        if data:
            await send(body(data))
            continue
        if stream.closed:
            break
        woken.event = trio.Event()
        with trio.move_on_after(keepalive) as idle:
            await woken.event.wait()
        if idle.cancelled_caught:
            await send(body(KEEPALIVE))
    if not stream.dropped:
        await send(body(b"", more=False))
