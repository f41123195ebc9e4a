"""The built-in probe client: one HTTP/1.1 GET, read within bounds, over anyio.

Why not httpx here: a probe is always the same tiny request, and the registry
makes a thousand of them a second. httpx spends about a millisecond of CPU on
each (URL and header models, and a connection pool that rescans every
connection for every queued request), which capped probing at a few hundred
instances a second (see docs/performance.md). This client does only what a
probe needs, and each step is bounded:

- the head is at most `MAX_HEAD_BYTES`, a chunk-size line at most
  `MAX_LINE_BYTES`, the body at most the configured limit (past it the
  probe fails as "body over the size limit" and the connection is dropped);
- no redirects, no proxies, no decompression (`accept-encoding: identity`);
- no timeouts of its own: the driver puts one deadline around the whole
  probe, so a peer trickling a byte a second cannot stretch it.

anyio runs on both frontends' loops (asyncio and trio), so one client serves
both. Connections are kept alive between probes of the same address, a few
per address and `max_idle` in all, and dropped once idle for `idle_seconds`,
shorter than the keep-alive timeout of most servers (5 s), so a probe rarely
meets a connection the peer has closed; when it does, it retries once on a
fresh one before counting a failure. Expired connections are closed by the
next probe after them (no timer task), so while probes run no descriptor
stays open much past `idle_seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlsplit

import anyio
from anyio.abc import ByteStream

from sd_core import ProbeFailed, ProbeResult, RunProbe, judge_probe
from sd_core.probe_address_policy import ProbePolicy

from .addresses import MAX_ADDRESSES, allowed_addresses
from .prober import failed

MAX_HEAD_BYTES = 16 * 1024
MAX_LINE_BYTES = 1024
MAX_IDLE_PER_ADDRESS = 8
USER_AGENT = "service-discovery-probe/0.1"
_TRANSPORT_ERRORS = (OSError, anyio.BrokenResourceError, anyio.EndOfStream)
Address = tuple[str, int]


class ProtocolError(Exception):
    """The peer's answer is not HTTP/1.x we can read."""


class _Stale(Exception):
    """A kept-alive connection closed before the first byte of the answer."""


class _Answer(NamedTuple):
    """What one exchange produced, and whether its connection can be used again."""

    status: int
    body: bytes
    truncated: bool
    reusable: bool


class _Reader:
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


@dataclass(eq=False, kw_only=True)
class PlainProbeClient:
    """Fetches and judges health endpoints; one instance serves every probe of a server."""

    max_body: int
    policy: ProbePolicy
    max_idle: int = 100
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

    async def probe(self, probe: RunProbe) -> ProbeResult:
        """Every outcome, refusal and transport failure included, is a result."""
        try:
            parts = urlsplit(probe.url)
            host = parts.hostname or ""
            port = parts.port or 80
        except ValueError as error:
            return failed(probe, f"bad URL: {error}")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = parts.netloc.rpartition("@")[2]
        if parts.scheme != "http" or not host or _unsafe(target) or _unsafe(authority):
            return failed(probe, "bad URL: only plain http:// URLs can be probed")
        if self._idle_count and self.clock() - self._pruned_at >= self.idle_seconds:
            await self._prune()  # so expired connections do not hold descriptors for long
        addresses = await allowed_addresses(probe, host, port, self.policy)
        if isinstance(addresses, ProbeFailed):
            return addresses
        request = (
            f"GET {target} HTTP/1.1\r\nhost: {authority}\r\nuser-agent: {USER_AGENT}\r\n"
            "accept: application/json, */*\r\naccept-encoding: identity\r\n\r\n"
        ).encode("ascii")
        reason = "no address to connect to"
        for address in addresses[:MAX_ADDRESSES]:
            try:
                stream, kept = await self._connection((address, port))
            except OSError as error:  # refused or unreachable: try the next address
                reason = _describe(error, "ConnectError")
                continue
            try:
                answer = await self._exchange((address, port), stream, kept, request)
            except ProtocolError as error:
                return failed(probe, f"bad response: {error}")
            except _TRANSPORT_ERRORS as error:
                return failed(probe, _describe(error, "ReadError"))
            return judge_probe(probe, answer.status, answer.body, truncated=answer.truncated)
        return failed(probe, reason)

    async def aclose(self) -> None:
        for streams in self._idle.values():
            for _, stream in streams:
                await anyio.aclose_forcefully(stream)
        self._idle.clear()
        self._idle_count = 0

    async def _connection(self, address: Address) -> tuple[ByteStream, bool]:
        """A kept-alive connection to `address` if a fresh one is idle, else a new one.

        The flag says which: a failure on a kept connection is retried once.
        """
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
        return await anyio.connect_tcp(*address), False

    async def _exchange(
        self, address: Address, stream: ByteStream, kept: bool, request: bytes
    ) -> _Answer:
        if kept:
            try:
                return await self._on(address, stream, request)
            except (_Stale, *_TRANSPORT_ERRORS):
                pass  # closed while idle: that is not the peer's answer
            stream = await anyio.connect_tcp(*address)
        try:
            return await self._on(address, stream, request)
        except _Stale:
            raise anyio.EndOfStream() from None

    async def _on(self, address: Address, stream: ByteStream, request: bytes) -> _Answer:
        """Send, read the answer, then keep or close the connection (never leak it)."""
        answer: _Answer | None = None
        reader = _Reader(stream)
        try:
            await stream.send(request)
            try:
                await reader.fill()
            except anyio.EndOfStream:
                raise _Stale() from None
            answer = await _read_answer(reader, self.max_body)
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
        if self._idle_count >= self.max_idle or len(idle) >= MAX_IDLE_PER_ADDRESS:
            await anyio.aclose_forcefully(stream)
            return
        idle.append((self.clock(), stream))
        self._idle_count += 1

    async def _prune(self) -> None:
        """Drop connections idle too long (when the pool is full, and between probes)."""
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


async def _read_answer(reader: _Reader, max_body: int) -> _Answer:
    head = (await reader.until(b"\r\n\r\n", MAX_HEAD_BYTES, "response head")).decode("latin-1")
    lines = head.split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
    status = int(code)
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
    if not 200 <= status < 300:
        # Judged on the status alone; the body is not read, so the connection is not reused.
        return _Answer(status, b"", False, reusable=False)
    if status == 204:
        return _Answer(status, b"", False, reusable=not close)
    if chunked:
        body = await _chunked_body(reader, max_body)
        reusable = not close
    elif length is not None:
        if length > max_body:
            return _Answer(status, b"", True, reusable=False)
        body = await reader.exactly(length)
        reusable = not close
    else:
        body = await reader.to_end(max_body)
        reusable = False
    if body is None:
        return _Answer(status, b"", True, reusable=False)
    return _Answer(status, body, False, reusable)


async def _chunked_body(reader: _Reader, max_body: int) -> bytes | None:
    """The decoded body, or None once it passes `max_body` (the rest is not read)."""
    body = bytearray()
    while True:
        line = await reader.until(b"\r\n", MAX_LINE_BYTES, "chunk-size line")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size: {size_text[:20]!r}") from None
        if size < 0 or size_text.startswith((b"-", b"+")):
            raise ProtocolError(f"bad chunk size: {size_text[:20]!r}")
        if size == 0:
            while await reader.until(b"\r\n", MAX_HEAD_BYTES, "trailer"):
                pass  # trailers are allowed and ignored
            return bytes(body)
        if len(body) + size > max_body:
            return None
        body += await reader.exactly(size)
        if await reader.exactly(2) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")


def _unsafe(text: str) -> bool:
    return any(c in text for c in "\r\n \t\x00")


def _describe(error: BaseException, kind: str) -> str:
    detail = str(error).strip()
    if isinstance(error, anyio.EndOfStream | anyio.BrokenResourceError):
        detail = detail or "connection closed by the peer"
    return f"{kind}: {detail}" if detail else kind
