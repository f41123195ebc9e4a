"""Holds one watch stream open on trio, writing what the hub queues for it.

Served straight on the ASGI `send` (see `runtime.watch_streams.WatchRoute`): an
event costs one `send` per stream. The writer is the task the server runs the
app in; between writes it parks with `trio.lowlevel.wait_task_rescheduled`
and the hub's `wake` reschedules it: no event, parking lot or cancel scope
per wait. A second task in a nursery beside it waits in the server's
`receive` to hear the client leave. (Waking a writer parked in `receive`
itself by cancelling that wait, as the asyncio frontend does, saves that task
but made a wake of 10,000 streams cost trio about 0.4 s more CPU: a trio
cancellation raises through the channel; docs/performance.md, scenario 6.)
The asyncio twin is `quart_app/streams.py`; both write with
`watch_streams.write_stream`, and tick with `watch_streams.keep_alive`.
"""

from __future__ import annotations

import trio

from frontends.runtime import watch_streams
from frontends.runtime.watch_streams import Hold, Receive, Send, StreamHub, TaskStream
from sd_core.watch_stream import WatchSpec


class _WriterStream(TaskStream):
    """A stream written by one trio task (`task`); `writer` is the scope that stops it."""

    __slots__ = ("parked", "receive", "task", "writer")

    def __init__(
        self,
        follows: frozenset[str] | None,
        receive: Receive,
        task: trio.lowlevel.Task,
        writer: trio.CancelScope,
    ) -> None:
        super().__init__(follows)
        self.receive = receive
        self.task = task
        self.writer = writer
        self.parked = False  # waiting in `idle` (not writing)

    def wake(self) -> None:
        if self.parked:  # a writing task looks at what is pending once its write is done
            self.parked = False
            trio.lowlevel.reschedule(self.task)

    def abort(self) -> None:
        self.writer.cancel()  # a dropped stream sends nothing more

    async def idle(self) -> None:
        self.parked = True
        await trio.lowlevel.wait_task_rescheduled(self._unpark)

    def _unpark(self, raise_cancel: object) -> trio.lowlevel.Abort:
        """The writer is cancelled while parked (dropped, or the server stops)."""
        self.parked = False
        return trio.lowlevel.Abort.SUCCEEDED

    async def until_disconnect(self) -> None:
        """Beside the writer: mark the stream dropped once its client leaves, and wake it."""
        while not self.dropped:
            self.received(await self.receive())
        self.wake()


def start_ticker(hub: StreamHub, keepalive: float) -> None:
    """Start the hub's keep-alive ticker as a system task, unless one runs (it ends after the
    last stream)."""
    if hub.start_ticking():
        trio.lowlevel.spawn_system_task(watch_streams.keep_alive, hub, keepalive, trio.sleep)


def make_hold(keepalive: float) -> Hold:
    async def hold(hub: StreamHub, spec: WatchSpec, receive: Receive, send: Send) -> None:
        with trio.CancelScope() as writer:
            stream = _WriterStream(spec.services, receive, trio.lowlevel.current_task(), writer)
            hub.open(stream, spec)
            del spec  # (the stream has what it follows)
            start_ticker(hub, keepalive)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(stream.until_disconnect)
                    await watch_streams.write_stream(stream, send)
                    nursery.cancel_scope.cancel()
            finally:
                hub.close(stream)

    return hold
