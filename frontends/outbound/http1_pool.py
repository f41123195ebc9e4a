"""Kept-alive HTTP/1.1 connections and bounded answers, over anyio: what the lean clients share.

The health prober (`probing.builtin_client`) and the etcd gateway client
(`gateway_http`) each send one small request and read one answer, thousands
of times a second. httpx spends about a millisecond of CPU on each (URL and
header models, and a pool that rescans every connection for every queued
request); this does only that exchange, with every read bounded:

- the head is at most `MAX_HEAD_BYTES`, a chunk-size line at most
  `MAX_LINE_BYTES`, the body at most the caller's limit (past it the answer
  is marked truncated and the connection is dropped);
- no timeouts of its own: each caller puts one deadline around the whole
  exchange, so a peer trickling a byte a second cannot stretch it.

anyio runs on both frontends' loops (asyncio and trio), so one pool serves
both. Connections are kept alive per address, a few per address and
`max_idle` in all, and dropped once idle for `idle_seconds`; a kept
connection the peer closed before answering is retried once on a fresh one
(the request never reached the peer's application then). Expired connections
are closed by the next exchange after them (no timer task).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import anyio
from anyio.abc import ByteStream

MAX_HEAD_BYTES = 16 * 1024
MAX_LINE_BYTES = 1024
TRANSPORT_ERRORS = (OSError, anyio.BrokenResourceError, anyio.EndOfStream)
Address = tuple[str, int]


class ProtocolError(Exception):
    """The peer's answer is not HTTP/1.x we can read."""


class _Stale(Exception):
    """A kept-alive connection closed before the first byte of the answer."""


class Answer(NamedTuple):
    """What one exchange produced, and whether its connection can be used again."""

    status: int
    body: bytes
    truncated: bool
    reusable: bool


async def connect_plain(address: Address) -> ByteStream:
    """A plain TCP connection to `address`."""
    return await anyio.connect_tcp(*address)


@dataclass(eq=False, kw_only=True)
class ConnectionPool:
    """Idle connections by address; `connect` opens a new one (TLS or not is its business)."""

    connect: Callable[[Address], Awaitable[ByteStream]] = connect_plain
    max_idle: int = 100
    max_idle_per_address: int = 8
    idle_seconds: float = 4.0
    clock: Callable[[], float] = time.monotonic
    _idle: dict[Address, list[tuple[float, ByteStream]]] = field(default_factory=dict, init=False)
    _idle_count: int = field(default=0, init=False)
    _pruned_at: float = field(init=False)

    def __post_init__(self) -> None:
        self._pruned_at = self.clock()

    @property
    def idle_connections(self) -> int:
        return self._idle_count

    async def connection(self, address: Address) -> tuple[ByteStream, bool]:
        """A kept-alive connection to `address` if a fresh one is idle, else a new one.

        The flag says which: `exchange` retries a failure on a kept one once.
        Connecting may raise OSError (refused, unreachable).
        """
        if self._idle_count and self.clock() - self._pruned_at >= self.idle_seconds:
            await self._prune()  # so expired connections do not hold descriptors for long
        idle = self._idle.get(address)
        now = self.clock()
        stale: list[ByteStream] = []
        found: ByteStream | None = None
        while idle and found is None:  # no await until the pool is consistent again
            since, stream = idle.pop()
            self._idle_count -= 1
            if now - since < self.idle_seconds:
                found = stream
            else:
                stale.append(stream)
        for stream in stale:
            await anyio.aclose_forcefully(stream)
        if found is not None:
            return found, True
        return await self.connect(address), False

    async def exchange(
        self,
        address: Address,
        stream: ByteStream,
        kept: bool,
        request: bytes,
        max_body: int,
        *,
        error_bodies: bool = False,
    ) -> Answer:
        """Send `request` on `stream` (from `connection`) and read the answer.

        `error_bodies`: read the body of a non-2xx answer too (else it is judged
        on its status alone and the connection is dropped).
        """
        if kept:
            try:
                return await self._on(address, stream, request, max_body, error_bodies)
            except (_Stale, *TRANSPORT_ERRORS):
                pass  # closed while idle: that is not the peer's answer
            stream = await self.connect(address)
        try:
            return await self._on(address, stream, request, max_body, error_bodies)
        except _Stale:
            raise anyio.EndOfStream() from None

    async def aclose(self) -> None:
        for streams in self._idle.values():
            for _, stream in streams:
                await anyio.aclose_forcefully(stream)
        self._idle.clear()
        self._idle_count = 0

    async def _on(
        self, address: Address, stream: ByteStream, request: bytes, max_body: int, errors: bool
    ) -> Answer:
        """Send, read the answer, then keep or close the connection (never leak it)."""
        answer: Answer | None = None
        reader = Reader(stream)
        try:
            await stream.send(request)
            try:
                await reader.fill()
            except anyio.EndOfStream:
                raise _Stale() from None
            answer = await read_answer(reader, max_body, error_bodies=errors)
            return answer
        finally:
            if answer is not None and answer.reusable and not reader.buffer:
                await self._keep(address, stream)
            else:
                await anyio.aclose_forcefully(stream)

    async def _keep(self, address: Address, stream: ByteStream) -> None:
        if self._idle_count >= self.max_idle:
            await self._prune()
        idle = self._idle.setdefault(address, [])
        if self._idle_count >= self.max_idle or len(idle) >= self.max_idle_per_address:
            await anyio.aclose_forcefully(stream)
            return
        idle.append((self.clock(), stream))
        self._idle_count += 1

    async def _prune(self) -> None:
        """Drop connections idle too long (when the pool is full, and between exchanges)."""
        now = self.clock()
        self._pruned_at = now
        stale: list[ByteStream] = []
        for address, streams in list(self._idle.items()):  # no await in this loop
            fresh = [(since, s) for since, s in streams if now - since < self.idle_seconds]
            stale += [s for since, s in streams if now - since >= self.idle_seconds]
            if fresh:
                self._idle[address] = fresh
            else:
                del self._idle[address]
        self._idle_count -= len(stale)
        for stream in stale:
            await anyio.aclose_forcefully(stream)


class Reader:
    """Buffered reads from a stream, each with a bound on how much it will hold."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def fill(self) -> None:
        self.buffer += await self.stream.receive()

    async def until(self, marker: bytes, limit: int, what: str) -> bytes:
        """Bytes up to `marker` (dropped), or ProtocolError once `limit` bytes pass."""
        start = 0
        while (end := self.buffer.find(marker, start)) < 0:
            if len(self.buffer) > limit:
                raise ProtocolError(f"{what} longer than {limit} bytes")
            start = max(0, len(self.buffer) - len(marker) + 1)
            await self.fill()
        if end > limit:
            raise ProtocolError(f"{what} longer than {limit} bytes")
        data = bytes(self.buffer[:end])
        del self.buffer[: end + len(marker)]
        return data

    def take(self, most: int | None) -> bytes:
        """What the buffer holds, up to `most` bytes (None: all of it)."""
        data = bytes(self.buffer[:most])
        del self.buffer[: len(data)]
        return data

    async def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self.fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def to_end(self, limit: int) -> bytes | None:
        """Everything until the peer closes; None once more than `limit` bytes came."""
        while len(self.buffer) <= limit:
            try:
                await self.fill()
            except anyio.EndOfStream:
                return bytes(self.buffer)
        return None


class _Head(NamedTuple):
    status: int
    length: int | None
    chunked: bool
    close: bool


async def read_answer(reader: Reader, max_body: int, *, error_bodies: bool = False) -> Answer:
    """The answer's status and body (see `ConnectionPool.exchange` for `error_bodies`)."""
    head = await read_head(reader)
    if not error_bodies and not 200 <= head.status < 300:
        # Judged on the status alone; the body is not read, so the connection is not reused.
        return Answer(head.status, b"", False, reusable=False)
    if head.status == 204 or 100 <= head.status < 200 or head.status == 304:
        return Answer(head.status, b"", False, reusable=not head.close)
    if head.chunked:
        body = await _chunked_body(reader, max_body)
        reusable = not head.close
    elif head.length is not None:
        if head.length > max_body:
            return Answer(head.status, b"", True, reusable=False)
        body = await reader.exactly(head.length)
        reusable = not head.close
    else:
        body = await reader.to_end(max_body)
        reusable = False
    if body is None:
        return Answer(head.status, b"", True, reusable=False)
    return Answer(head.status, body, False, reusable)


async def body_pieces(reader: Reader, head: _Head) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive (a chunk is not waited for whole), for an answer
    that has no end in sight (a watch); the caller bounds each read."""
    if not head.chunked:
        remaining = head.length
        while remaining is None or remaining > 0:
            if not reader.buffer:
                try:
                    await reader.fill()
                except anyio.EndOfStream:
                    if remaining is None:
                        return  # read until the peer closes
                    raise
            piece = reader.take(remaining)
            remaining = None if remaining is None else remaining - len(piece)
            yield piece
        return
    while size := _chunk_size(await reader.until(b"\r\n", MAX_LINE_BYTES, "chunk-size line")):
        while size:
            if not reader.buffer:
                await reader.fill()
            piece = reader.take(size)
            size -= len(piece)
            yield piece
        if await reader.exactly(2) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")


def _chunk_size(line: bytes) -> int:
    size_text = line.split(b";", 1)[0].strip()
    try:
        size = int(size_text, 16)
    except ValueError:
        raise ProtocolError(f"bad chunk size: {size_text[:20]!r}") from None
    if size < 0 or size_text.startswith((b"-", b"+")):
        raise ProtocolError(f"bad chunk size: {size_text[:20]!r}")
    return size


async def read_head(reader: Reader) -> _Head:
    """The answer's head: status, framing (length or chunked) and whether it closes."""
    head = (await reader.until(b"\r\n\r\n", MAX_HEAD_BYTES, "response head")).decode("latin-1")
    lines = head.split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
    length: int | None = None
    chunked = False
    close = version == "HTTP/1.0"
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ProtocolError(f"bad header line: {line[:60]!r}")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == "content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise ProtocolError(f"bad content-length: {value[:30]!r}")
            length = int(value)
        elif name == "transfer-encoding":
            chunked = value.endswith("chunked")
        elif name == "connection":
            tokens = {token.strip() for token in value.split(",")}
            close = "close" in tokens or (close and "keep-alive" not in tokens)
    return _Head(int(code), length, chunked, close)


async def _chunked_body(reader: Reader, max_body: int) -> bytes | None:
    """The decoded body, or None once it passes `max_body` (the rest is not read)."""
    body = bytearray()
    while True:
        size = _chunk_size(await reader.until(b"\r\n", MAX_LINE_BYTES, "chunk-size line"))
        if size == 0:
            while await reader.until(b"\r\n", MAX_HEAD_BYTES, "trailer"):
                pass  # trailers are allowed and ignored
            return bytes(body)
        if len(body) + size > max_body:
            return None
        body += await reader.exactly(size)
        if await reader.exactly(2) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")
