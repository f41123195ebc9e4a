"""Holds one watch stream open on asyncio, writing what the hub queues for it.

Below Quart: the stream is served straight on the ASGI `send` (see
`runtime.watch_streams.WatchRoute`), so an event costs one `send` per stream.
A stream costs the one task the server already runs the app in, and one
`_WriterStream`: between writes the task waits in the server's `receive` (which
is how it hears the client leave), and the hub wakes it from there by
cancelling that wait (`wake`), a cancellation the stream takes back at once
(`Task.uncancel`). ASGI servers keep `receive` safe to cancel (frameworks
cancel it whenever they stop listening for a disconnect), so no message is
lost. That replaced an `asyncio.Event`, a timeout and a second task per
stream that waited for the disconnect (docs/performance.md, scenario 6).
Mirrors `trio_app/streams.py`; the write loop both share is
`runtime.watch_streams.write_stream`.
"""

from __future__ import annotations

import asyncio

from frontends.runtime.watch_streams import (
    Hold,
    Receive,
    Send,
    StreamHub,
    TaskStream,
    keep_alive,
    write_stream,
)
from sd_core.watch_stream import WatchSpec

#: The running keep-alive tickers (the loop itself keeps only weak references to tasks).
_tickers: set[asyncio.Task[None]] = set()


class _WriterStream(TaskStream):
    """A stream written by one asyncio task; `interrupted`: a cancel of ours is on its way."""

    __slots__ = ("interrupted", "parked", "receive", "task")

    def __init__(
        self, follows: frozenset[str] | None, receive: Receive, task: asyncio.Task[object]
    ) -> None:
        super().__init__(follows)
        self.receive = receive
        self.task = task
        self.parked = False  # waiting in `idle` (not writing)
        self.interrupted = False

    def wake(self) -> None:
        if self.parked:  # a writing task looks at what is pending once its write is done
            self._interrupt()

    def abort(self) -> None:
        self._interrupt()  # parked or blocked on the slow reader itself: stop either way

    def _interrupt(self) -> None:
        if not self.interrupted:
            self.interrupted = True
            self.task.cancel()

    def took_back_cancel(self) -> bool:
        """After a CancelledError: whether it was only ours (then it is undone)."""
        if not self.interrupted:
            return False
        self.interrupted = False
        return self.task.uncancel() == 0

    async def idle(self) -> None:
        self.parked = True
        try:
            message = await self.receive()
        except asyncio.CancelledError:
            if self.dropped or not self.took_back_cancel():
                raise  # dropped: `hold` takes it back; else the server cancels the app
            return
        finally:
            self.parked = False
        self.received(message)


def start_ticker(hub: StreamHub, keepalive: float) -> None:
    """Start the hub's keep-alive ticker as a task, unless one runs (it ends after the
    last stream)."""
    if hub.start_ticking():
        ticker = asyncio.ensure_future(keep_alive(hub, keepalive, asyncio.sleep))
        _tickers.add(ticker)
        ticker.add_done_callback(_tickers.discard)


def make_hold(keepalive: float) -> Hold:
    async def hold(hub: StreamHub, spec: WatchSpec, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        stream = _WriterStream(spec.services, receive, task)
        hub.open(stream, spec)
        del spec  # (the stream has what it follows)
        start_ticker(hub, keepalive)
        try:
            await write_stream(stream, send)
        except asyncio.CancelledError:
            if not (stream.dropped and stream.took_back_cancel()):
                raise
            # dropped: the server closes the unfinished response
        finally:
            hub.close(stream)

    return hold
