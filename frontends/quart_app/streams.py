"""Holds one watch stream open on asyncio, writing what the hub queues for it.

Below Quart: the stream is served straight on the ASGI `send` (see
`shared.watch_streams.WatchRoute`), so an event costs one `send` per stream and a stream costs a
coroutine, an `asyncio.Event` and one small task that notices the client
leaving. Mirrors `trio_app/streams.py`; the write loop both share is
`shared.watch_streams.write_stream`.
"""

from __future__ import annotations

import asyncio

from sd_core.watch_stream import WatchSpec

from ..shared.watch_streams import (
    Hold,
    Message,
    Receive,
    Send,
    StreamHub,
    until_disconnect,
    write_stream,
)


def make_hold(keepalive: float) -> Hold:
    async def hold(hub: StreamHub, spec: WatchSpec, receive: Receive, send: Send) -> None:
        woken = asyncio.Event()
        writer = asyncio.current_task()
        assert writer is not None
        sending = False

        def abort() -> None:
            woken.set()
            if sending:  # blocked on the slow reader itself: stop waiting for it
                writer.cancel()

        async def send_to_reader(message: Message) -> None:
            nonlocal sending
            sending = True
            try:
                await send(message)
            finally:
                sending = False

        async def idle(seconds: float) -> bool:
            woken.clear()
            try:
                async with asyncio.timeout(seconds):
                    await woken.wait()
            except TimeoutError:
                return False
            return True

        stream = hub.open(spec, woken.set, abort)
        gone = asyncio.ensure_future(until_disconnect(receive, stream))
        try:
            await write_stream(stream, send_to_reader, idle, keepalive)
        except asyncio.CancelledError:
            if not stream.dropped:
                raise
            writer.uncancel()  # dropped: the server closes the unfinished response
        finally:
            hub.close(stream)
            gone.cancel()

    return hold
