"""Each loop's stream writer: one task, woken by the hub, hearing the client leave.

On asyncio the writer waits in the server's `receive` and the hub wakes it by
cancelling that wait, a cancellation the writer takes back; a real
cancellation (the server's) must still end it. On trio the writer parks and
the hub reschedules it. Driven here with a queue for `receive` and a list for
`send`, as an ASGI server would.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import h11
import pytest
import trio

from frontends.quart_app.streams import make_hold as asyncio_hold
from frontends.runtime import stream_response
from frontends.runtime.watch_streams import (
    SCOPE_KEPT,
    Message,
    Stream,
    StreamHub,
    release_request,
)
from frontends.servers.direct.first_bytes import DirectStream
from frontends.trio_app.streams import make_hold as trio_hold
from sd_core import Registry, RegistryConfig
from sd_core.watch_stream import STREAM_PREAMBLE, StreamEvents, WatchSpec

SPEC = WatchSpec(frozenset({"svc"}), None)
DISCONNECT: Message = {"type": "http.disconnect"}


def make_hub() -> StreamHub:
    return StreamHub(StreamEvents(Registry(RegistryConfig(), now=0.0, wall_offset=0.0)))


def bodies(sent: list[Message]) -> list[bytes]:
    return [m["body"] for m in sent if m["type"] == "http.response.body"]


class AsyncioClient:
    """An ASGI server's side of one stream on asyncio."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[Message] = []
        self.sending = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        self.sending.set()

    async def open(self, hub: StreamHub) -> tuple[asyncio.Task[None], Stream]:
        """The writer's task, once it sent the start and waits; and its stream."""
        hold = asyncio_hold(3600.0)
        writer = asyncio.ensure_future(hold(hub, SPEC, self.inbox.get, self.send))
        await self.settle()
        return writer, next(iter(hub._by_service["svc"]))

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)


@dataclass
class Opened:
    """One stream opened by the asyncio writer: the hub, the server's side, the task."""

    hub: StreamHub
    client: AsyncioClient
    writer: asyncio.Task[None]
    stream: Stream


def run_asyncio(scenario: Callable[[Opened], Awaitable[None]]) -> None:
    """Run `scenario` on a stream the writer has opened and waits on."""

    async def opened() -> None:
        hub = make_hub()
        client = AsyncioClient()
        await scenario(Opened(hub, client, *await client.open(hub)))

    asyncio.run(opened())


def test_asyncio_a_wake_sends_the_event_and_the_writer_waits_again() -> None:
    async def scenario(opened: Opened) -> None:
        assert bodies(opened.client.sent)[0].startswith(STREAM_PREAMBLE)
        for number in range(3):
            opened.hub._push(opened.stream, b"event %d\n\n" % number)
            await opened.client.settle()
        assert bodies(opened.client.sent)[1:] == [b"event 0\n\n", b"event 1\n\n", b"event 2\n\n"]
        assert not opened.writer.done() and opened.writer.cancelling() == 0
        opened.client.inbox.put_nowait(DISCONNECT)
        await opened.writer
        assert opened.hub.count == 0

    run_asyncio(scenario)


def test_asyncio_a_message_arriving_with_a_wake_is_not_lost() -> None:
    async def scenario(opened: Opened) -> None:
        opened.client.inbox.put_nowait(DISCONNECT)  # the writer's receive is woken with it...
        opened.hub._push(opened.stream, b"event\n\n")  # ...and cancelled
        await asyncio.wait_for(opened.writer, 5)
        assert opened.hub.count == 0  # the disconnect was heard on the next wait

    run_asyncio(scenario)


def test_asyncio_the_servers_cancel_is_not_taken_back() -> None:
    async def scenario(opened: Opened) -> None:
        opened.hub._push(opened.stream, b"event\n\n")  # a wake of ours...
        opened.writer.cancel()  # ...and the server's, before the writer runs
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(opened.writer, 5)  # (a swallowed cancel: TimeoutError)
        assert opened.hub.count == 0

    run_asyncio(scenario)


def test_asyncio_a_dropped_stream_ends_unfinished() -> None:
    async def scenario(opened: Opened) -> None:
        opened.hub.drop(opened.stream)
        await asyncio.wait_for(opened.writer, 5)  # ends without raising
        assert all(m.get("more_body", True) for m in opened.client.sent)  # no final chunk

    run_asyncio(scenario)


def test_trio_a_wake_sends_the_event_and_a_disconnect_ends_the_stream() -> None:
    async def scenario() -> None:
        hub = make_hub()
        to_app, receive = trio.open_memory_channel[Message](10)
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio_hold(3600.0), hub, SPEC, receive.receive, send)
            await trio.testing.wait_all_tasks_blocked()
            stream = next(iter(hub._by_service["svc"]))
            for number in range(3):
                hub._push(stream, b"event %d\n\n" % number)
                await trio.testing.wait_all_tasks_blocked()
            assert bodies(sent)[1:] == [b"event 0\n\n", b"event 1\n\n", b"event 2\n\n"]
            await to_app.send(DISCONNECT)
        assert hub.count == 0

    trio.run(scenario)


def test_release_request_keeps_only_what_servers_read() -> None:
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": "/v1/discovery/watch",
        "headers": [(b"authorization", b"Bearer secret")],
        "state": {"runtime": object()},
        "extensions": {"http.response.trailers": {}},
        "raw_path": b"/v1/discovery/watch",
    }
    release_request(scope)
    assert set(scope) == {"type", "http_version", "method", "path"} <= set(SCOPE_KEPT)
    assert scope["method"] == "GET" and "headers" not in scope


# ------------------------------------------------- both paths, one response

EVENTS = [b"event 0\n\n", b"event 1\n\nevent 2\n\n", b": keepalive\n\n"]


class _DirectWriter(DirectStream):
    """A direct stream whose socket is a byte string."""

    __slots__ = ("wire",)

    def __init__(self, follows: frozenset[str] | None) -> None:
        super().__init__(follows)
        self.wire = b""

    def wake(self) -> None:
        self.wire += self.framed()

    def abort(self) -> None:
        """Nothing to stop: it writes only when woken."""


def direct_bytes(hub: StreamHub) -> bytes:
    stream = _DirectWriter(SPEC.services)
    stream.wire = stream.open_on(hub, SPEC)
    for data in EVENTS:
        hub._push(stream, data)
    hub.close_all()
    return stream.wire


def task_messages(hub: StreamHub) -> list[Message]:
    async def scenario() -> list[Message]:
        client = AsyncioClient()
        writer, stream = await client.open(hub)
        for data in EVENTS:
            hub._push(stream, data)
            await client.settle()
        hub.close_all()
        await asyncio.wait_for(writer, 5)
        return client.sent

    return asyncio.run(scenario())


def undated(wire: bytes) -> bytes:
    return re.sub(rb"\r\ndate: [^\r]*\r\n", b"\r\n", wire, count=1)


def test_the_direct_bytes_are_the_task_paths_messages_as_http1() -> None:
    """Same events: the task path's ASGI messages, framed as a server frames them, are
    byte for byte what the direct path writes (head, chunks, last chunk)."""
    direct = direct_bytes(make_hub())
    sent = task_messages(make_hub())
    assert sent[0] == stream_response.start()
    rendered = stream_response.http1_start() + stream_response.http1(sent[1:])
    assert undated(direct) == undated(rendered)  # (the two may straddle a second)
    # and read back by h11 (the parser hypercorn uses), the same pieces
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    client.receive_data(direct)
    pieces = []
    while not isinstance(event := client.next_event(), h11.EndOfMessage | h11.NEED_DATA):
        if isinstance(event, h11.Response):
            assert event.status_code == sent[0]["status"]
            assert all(pair in event.headers for pair in sent[0]["headers"])
        elif isinstance(event, h11.Data):
            pieces.append(event.data)
    assert isinstance(event, h11.EndOfMessage)
    assert pieces == [m["body"] for m in sent[1:] if m["body"]]
    assert pieces[1:] == EVENTS


def test_a_dropped_stream_ends_unfinished_on_both_paths() -> None:
    hub = make_hub()
    stream = _DirectWriter(SPEC.services)
    stream.wire = stream.open_on(hub, SPEC)
    hub.drop(stream)
    assert not stream.wire.endswith(stream_response.LAST_CHUNK) and stream.owed() == (b"", False)
