"""Holds one watch stream open on asyncio, writing what the hub queues for it.

Below Quart: the stream is served straight on the ASGI `send` (see
`shared.watch_streams.WatchRoute`), so an event costs one `send` per stream and a stream costs a
coroutine, an `asyncio.Event` and one small task that notices the client
leaving. Mirrors `trio_app/streams.py` name for name.
"""

from __future__ import annotations

import asyncio

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


def make_hold(keepalive: float) -> Hold:
    async def hold(hub: StreamHub, spec: WatchSpec, receive: Receive, send: Send) -> None:
        woken = asyncio.Event()
        writer = asyncio.current_task()
        assert writer is not None
        sending = [False]

        def abort() -> None:
            woken.set()
            if sending[0]:  # blocked on the slow reader itself: stop waiting for it
                writer.cancel()

        stream = hub.open(spec, woken.set, abort)
        gone = asyncio.ensure_future(until_disconnect(receive, stream))
        try:
            await send(stream_start())
            await _write_loop(stream, woken, send, keepalive, sending)
        except asyncio.CancelledError:
            if not stream.dropped:
                raise
            writer.uncancel()  # dropped: the server closes the unfinished response
        finally:
            hub.close(stream)
            gone.cancel()

    return hold


async def _write_loop(
    stream: Stream, woken: asyncio.Event, send: Send, keepalive: float, sending: list[bool]
) -> None:
    while True:
        data = stream.take()
        if data:
            sending[0] = True
            await send(body(data))
            sending[0] = False
            continue
        if stream.closed:
            break
        woken.clear()
        try:
            async with asyncio.timeout(keepalive):
                await woken.wait()
        except TimeoutError:
            sending[0] = True
            await send(body(KEEPALIVE))
            sending[0] = False
    if not stream.dropped:
        await send(body(b"", more=False))
