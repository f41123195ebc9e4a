"""Watch streams below hypercorn, in-process: which heads are served there, and each loop's writer.

`servers.direct.first_bytes` decides from a connection's first bytes whether it is
a plain watch request (served below hypercorn) or hypercorn's; each loop then
writes the hub's bytes from `wake` itself. Driven here on real socket pairs
(trio, with pytest-trio's `autojump_clock` for the write deadline) and on a recording
transport (asyncio), with the hub the servers use.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest
import trio
import trio.testing
from frontend_kit import SECRET, AsyncioKit, Group, Kit, SocketPair, TrioKit, make_runtime, register

from frontends.runtime.runtime import Runtime
from frontends.runtime.stream_response import LAST_CHUNK, chunk, http1_start
from frontends.runtime.watch_streams import StreamHub
from frontends.servers.direct.asyncio_streams import FirstBytes, first_protocol, uvicorn_first_bytes
from frontends.servers.direct.asyncio_streams import _ConnectionStream as AsyncioStream
from frontends.servers.direct.first_bytes import Look, first_look, watch_scope
from frontends.servers.direct.trio_streams import _ConnectionStream as TrioStream
from frontends.servers.direct.trio_streams import first_bytes
from frontends.servers.hypercorn.request_heads import MAX_HEAD_BYTES
from frontends.servers.hypercorn.write_deadline import WRITE_TIMEOUT_SECONDS
from sd_core import Registry, RegistryConfig
from sd_core.watch_stream import STREAM_PREAMBLE, StreamEvents, WatchSpec

SPEC = WatchSpec(frozenset({"svc"}), None)
WATCH = b"GET /v1/discovery/watch?service=svc HTTP/1.1\r\nHost: x\r\n\r\n"


def make_hub() -> StreamHub:
    return StreamHub(StreamEvents(Registry(RegistryConfig(), now=0.0, wall_offset=0.0)))


@pytest.mark.parametrize(
    ("first", "look"),
    [
        (b"", Look.MORE),
        (b"GE", Look.MORE),
        (b"GET /v1/discovery/wat", Look.MORE),
        (b"GET /v1/discovery/watch?service=a HTTP/1.1\r\nHost: x\r\n", Look.MORE),
        (WATCH, Look.HEAD),
        (b"GET /v1/discovery/watch HTTP/1.1\r\n\r\n", Look.HEAD),
        (b"POST /v1/discovery/register HTTP/1.1\r\n", Look.HAND_OFF),
        (b"GET /v1/discovery/services", Look.HAND_OFF),
        (b"GET /v1/discovery/watchers HTTP/1.1\r\n\r\n", Look.HAND_OFF),
        (b"get /v1/discovery/watch", Look.HAND_OFF),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Look.HAND_OFF),
        (b"GET /v1/discovery/watch?a=" + b"x" * MAX_HEAD_BYTES, Look.HAND_OFF),
        (b"GET /v1/discovery/watch?a=" + b"x" * MAX_HEAD_BYTES + b"\r\n\r\n", Look.HAND_OFF),
    ],
)
def test_first_look(first: bytes, look: Look) -> None:
    assert first_look(first) is look


def test_a_plain_watch_head_gives_its_scope() -> None:
    scope = watch_scope(
        b"GET /v1/discovery/watch?service=a&index=3 HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer t\r\nLast-Event-ID: 7\r\n\r\n"
    )
    assert scope is not None
    assert scope["query_string"] == b"service=a&index=3"
    assert (b"authorization", b"Bearer t") in scope["headers"]
    assert (b"last-event-id", b"7") in scope["headers"]


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1/discovery/watch?service=a HTTP/1.0\r\n\r\n",
        b"GET /v1/discovery/watch?service=a HTTP/1.1\r\n\r\n",  # no Host
        b"GET /v1/discovery/watch?service=a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"GET /v1/discovery/watch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /v1/discovery/watch HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n",
        b"GET /v1/discovery/watch HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
        b"GET /v1/discovery/watch HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ],
    ids=["http-1.0", "no-host", "length", "chunked", "upgrade", "expect", "bad"],
)
def test_anything_more_than_a_plain_watch_is_hypercorns(head: bytes) -> None:
    assert watch_scope(head) is None


def test_a_request_pipelined_after_a_watch_does_not_matter() -> None:
    """It could never be answered: the stream does not end while its client is there."""
    assert watch_scope(WATCH + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") == watch_scope(WATCH)


def test_the_response_head_and_chunks() -> None:
    head = http1_start(lambda: 0.0)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-type: text/event-stream\r\n" in head
    assert b"date: Thu, 01 Jan 1970 00:00:00 GMT\r\n" in head
    assert head.endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"


# ------------------------------------------------------------------ trio


class Chunks:
    """Reads the chunked body a `_ConnectionStream` writes, from the client's side."""

    def __init__(self, theirs: trio.SocketStream) -> None:
        self.fd = theirs.socket.fileno()
        self.raw = b""

    def read_available(self) -> bytes:
        try:
            while data := os.read(self.fd, 65536):  # (trio keeps the socket non-blocking)
                self.raw += data
        except BlockingIOError:
            pass
        return self.raw


class Held(NamedTuple):
    """A trio stream held by its task (in the test's nursery), and the client's side."""

    hub: StreamHub
    stream: TrioStream
    client: Chunks
    theirs: trio.SocketStream


@pytest.fixture
async def held(nursery: trio.Nursery, socket_pair: SocketPair) -> Held:
    """A stream opened on `socket_pair`'s server side, its task parked on the socket."""
    ours, theirs = socket_pair
    hub = make_hub()
    stream = TrioStream(SPEC.services, ours.socket.fileno())
    stream.unsent = stream.open_on(hub, SPEC)

    async def run() -> None:
        try:
            await stream.run(ours.socket, hub, WRITE_TIMEOUT_SECONDS)
        finally:
            hub.close(stream)

    nursery.start_soon(run)
    await trio.testing.wait_all_tasks_blocked()
    return Held(hub, stream, Chunks(theirs), theirs)


async def test_trio_wake_writes_at_once_and_the_client_leaving_ends_it(held: Held) -> None:
    assert held.client.read_available().startswith(b"HTTP/1.1 200 OK\r\n")
    assert STREAM_PREAMBLE in held.client.raw
    assert held.stream.scope is not None, "the task is not parked on its socket"
    held.hub._push(held.stream, b"event 1\n\n")  # written by the wake itself, no task switch
    assert held.client.read_available().endswith(chunk(b"event 1\n\n"))
    await held.theirs.aclose()
    with trio.fail_after(5):
        await trio.testing.wait_all_tasks_blocked()
    assert held.stream.dropped
    assert held.hub.count == 0


async def test_trio_a_closed_stream_ends_with_the_last_chunk(held: Held) -> None:
    held.hub.close_all()
    await trio.testing.wait_all_tasks_blocked()
    assert held.client.read_available().endswith(LAST_CHUNK)
    assert held.hub.count == 0


async def test_trio_a_reader_that_takes_nothing_is_dropped_at_the_write_deadline(
    autojump_clock: trio.testing.MockClock, held: Held
) -> None:
    started = trio.current_time()
    big = b"x" * (256 * 1024)  # past both sockets' buffers: the task must wait
    held.hub._push(held.stream, big)
    assert held.stream.unsent, "the socket took it all"
    await trio.sleep(WRITE_TIMEOUT_SECONDS / 2)
    assert not held.stream.dropped  # still within the deadline
    await trio.sleep(WRITE_TIMEOUT_SECONDS)
    assert held.stream.dropped
    assert held.hub.dropped == 1
    assert trio.current_time() - started >= WRITE_TIMEOUT_SECONDS
    await trio.testing.wait_all_tasks_blocked()
    assert held.hub.count == 0


async def test_trio_a_reader_behind_gets_everything_once_it_reads(held: Held) -> None:
    held.client.read_available()
    big = b"y" * (256 * 1024)
    held.hub._push(held.stream, big)
    held.hub._push(held.stream, b"after\n\n")  # kept by the hub while the task writes
    assert held.stream.pending == [b"after\n\n"]
    with trio.fail_after(5):
        while not held.client.read_available().endswith(chunk(b"after\n\n")):
            await trio.lowlevel.wait_readable(held.theirs.socket)
    assert chunk(big) + chunk(b"after\n\n") in held.client.raw
    assert not held.stream.dropped


# --------------------------------------------------------------- asyncio


class RecordingTransport(asyncio.Transport):
    """A transport that keeps what is written, and how it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def is_closing(self) -> bool:
        return self.closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol


def open_asyncio_stream(hub: StreamHub) -> tuple[AsyncioStream, RecordingTransport]:
    transport = RecordingTransport()
    stream = AsyncioStream(SPEC.services, transport, hub, WRITE_TIMEOUT_SECONDS)
    hub.open(stream, SPEC)
    stream.wake()
    return stream, transport


@dataclass
class AsyncioHeld:
    """A stream opened on a recording transport, inside a running loop."""

    hub: StreamHub
    stream: AsyncioStream
    transport: RecordingTransport


def on_asyncio(check: Callable[[AsyncioHeld], None]) -> None:
    """Run `check` on a stream opened inside a running loop (its write deadline needs one)."""

    async def scenario() -> None:
        hub = make_hub()
        check(AsyncioHeld(hub, *open_asyncio_stream(hub)))

    asyncio.run(scenario())


def test_asyncio_wake_writes_each_event_as_one_chunk_then_the_end() -> None:
    def check(held: AsyncioHeld) -> None:
        assert STREAM_PREAMBLE in held.transport.written[0]
        held.hub._push(held.stream, b"event\n\n")
        assert held.transport.written[-1] == chunk(b"event\n\n")
        held.hub.close_all()
        assert held.transport.written[-1] == LAST_CHUNK
        assert held.transport.closing and not held.transport.aborted
        held.stream.connection_lost(None)
        assert held.hub.count == 0

    on_asyncio(check)


def test_asyncio_a_paused_stream_keeps_events_until_resumed() -> None:
    def check(held: AsyncioHeld) -> None:
        held.stream.pause_writing()
        held.hub._push(held.stream, b"one\n\n")
        held.hub._push(held.stream, b"two\n\n")
        assert len(held.transport.written) == 1  # nothing written while paused
        held.stream.resume_writing()
        assert held.transport.written[-1] == chunk(b"one\n\ntwo\n\n")
        assert held.stream.paused_at is None
        held.stream.connection_lost(None)

    on_asyncio(check)


def test_asyncio_a_paused_stream_is_dropped_at_the_write_deadline() -> None:
    def check(held: AsyncioHeld) -> None:
        held.stream.pause_writing()
        deadline = held.stream.paused_at
        assert deadline is not None
        loop = asyncio.get_running_loop()
        assert deadline.when() - loop.time() == pytest.approx(WRITE_TIMEOUT_SECONDS, abs=1)
        held.stream._reader_stuck()  # what the deadline's timer calls
        assert held.transport.aborted
        assert held.hub.dropped == 1 and held.hub.count == 0

    on_asyncio(check)


def test_asyncio_the_client_leaving_frees_the_stream() -> None:
    def check(held: AsyncioHeld) -> None:
        held.stream.pause_writing()
        held.stream.connection_lost(ConnectionResetError())
        assert held.hub.count == 0 and held.stream.dropped and held.stream.paused_at is None

    on_asyncio(check)


# ------------------------------------------------- the settings, on every kind

#: A watch as a client sends it on a connection of its own, with a token.
AUTHORIZED_WATCH = (
    b"GET /v1/discovery/watch?service=svc HTTP/1.1\r\nHost: x\r\n"
    b"Authorization: Bearer " + SECRET.encode() + b"\r\n\r\n"
)
#: The write timeout the tests set: far below the 10 s default.
SHORT_WRITE_TIMEOUT = 0.5


def _quart_on_hypercorn(runtime: Runtime) -> FirstBytes:
    make = first_protocol(runtime, head_timeout=5.0)
    protocol = make(lambda reader, writer: None)
    assert isinstance(protocol, FirstBytes)
    return protocol


def _quart_on_uvicorn(runtime: Runtime) -> FirstBytes:
    protocol = uvicorn_first_bytes(runtime, 5.0, asyncio.Protocol)()
    assert isinstance(protocol, FirstBytes)
    return protocol


ASYNCIO_KINDS = {"quart": _quart_on_hypercorn, "quart-uvicorn": _quart_on_uvicorn}


def _serve_watch(runtime: Runtime, kind: str) -> tuple[AsyncioStream, RecordingTransport]:
    """A watch served on a recording transport by `kind`'s first protocol, as its server would."""
    transport = RecordingTransport()
    first = ASYNCIO_KINDS[kind](runtime)
    first.connection_made(transport)
    first.data_received(AUTHORIZED_WATCH)
    stream = transport.get_protocol()
    assert isinstance(stream, AsyncioStream), "not served below the server"
    return stream, transport


@pytest.mark.parametrize("kind", list(ASYNCIO_KINDS))
def test_asyncio_a_reader_that_takes_nothing_is_dropped_at_the_configured_write_timeout(
    kind: str,
) -> None:
    """`SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS` bounds a direct stream's write, as any other's."""

    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(
            kit, SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS=str(SHORT_WRITE_TIMEOUT)
        )
        stream, transport = _serve_watch(runtime, kind)
        stream.pause_writing()  # what the transport does once its buffer is full
        await kit.sleep(SHORT_WRITE_TIMEOUT / 2)
        assert not transport.aborted  # within the deadline
        await kit.sleep(SHORT_WRITE_TIMEOUT)
        assert transport.aborted, "still open past the write timeout"
        assert runtime.streams.dropped == 1 and runtime.streams.count == 0
        await kit.sleep(runtime.settings.watch_keepalive)  # the keep-alive ticker ends

    AsyncioKit().run(scenario)


def test_trio_a_reader_that_takes_nothing_is_dropped_at_the_configured_write_timeout() -> None:
    """The same on trio: the stream's task gives up on a full socket after the setting."""

    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(
            kit, SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS=str(SHORT_WRITE_TIMEOUT)
        )
        ours, theirs = trio.socket.socketpair()
        async with trio.SocketStream(ours) as mine, trio.SocketStream(theirs) as peer:
            ended = trio.Event()

            async def serve() -> None:
                await first_bytes(runtime, 5.0, (), mine, set())
                ended.set()

            group.start_soon(serve)
            await peer.send_all(AUTHORIZED_WATCH)
            await trio.testing.wait_all_tasks_blocked()
            assert runtime.streams.count == 1, "not served below the server"
            (stream,) = runtime.streams._streams()
            runtime.streams._push(stream, b"x" * (256 * 1024))  # past both sockets' buffers
            await trio.sleep(SHORT_WRITE_TIMEOUT / 2)
            assert not stream.dropped  # within the deadline
            await trio.sleep(SHORT_WRITE_TIMEOUT)
            assert stream.dropped, "still open past the write timeout"
            with trio.fail_after(1):
                await ended.wait()
            assert runtime.streams.count == 0

    TrioKit().run(scenario)


def _register_while_not_reading(runtime: Runtime, stream: AsyncioStream) -> int:
    """Register 8 instances of the followed service, 1 KB of metadata each, while the
    reader takes nothing (each event shows the whole service): the most the stream held."""
    stream.pause_writing()  # the reader is behind: everything stays with the hub
    most = stream.pending_bytes
    for n in range(8):
        register(runtime, "svc", f"i-{n}", metadata={"blob": "b" * 1000})
        most = max(most, stream.pending_bytes)
    return most


def test_a_stream_that_does_not_read_is_dropped_past_the_configured_backlog() -> None:
    """`SERVICE_DISCOVERY_WATCH_BACKLOG_BYTES`: what the hub keeps for a reader that is behind."""

    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit, SERVICE_DISCOVERY_WATCH_BACKLOG_BYTES="8192")
        stream, transport = _serve_watch(runtime, "quart")
        most = _register_while_not_reading(runtime, stream)
        assert stream.dropped, "kept past the backlog"
        assert most <= 8192
        assert transport.aborted and stream.pending == []
        assert runtime.streams.dropped == 1 and runtime.streams.count == 0
        # The same events are kept under the default backlog (1 MiB).
        default = make_runtime(kit)
        kept, _ = _serve_watch(default, "quart")
        assert _register_while_not_reading(default, kept) > 8192
        assert not kept.dropped
        kept.connection_lost(None)
        await kit.sleep(runtime.settings.watch_keepalive)  # the keep-alive tickers end

    AsyncioKit().run(scenario)
