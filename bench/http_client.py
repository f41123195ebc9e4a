"""A small HTTP/1.1 client for set-up and load: keep-alive connections, pipelined POSTs,
an open-loop request schedule, and the request bodies the registry takes."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from conformance.client import instance_body

from .common import AUTH, BenchError

T = TypeVar("T")


def http_get(
    port: int, path: str, *, auth: bool = False, timeout: float = 30.0
) -> tuple[int, bytes]:
    answer = http_call(port, "GET", path, auth=auth, timeout=timeout)
    return answer.status, answer.body


def http_call(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    auth: bool = True,
    timeout: float = 30.0,
) -> Response:
    """One request on a connection of its own, outside any event loop (set-up, checks)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": AUTH} if auth else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body, headers=headers)
        response = conn.getresponse()
        answer = {key.lower(): value for key, value in response.getheaders()}
        return Response(response.status, answer, response.read())
    finally:
        conn.close()


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def ok(self, what: str) -> Response:
        """This answer when it is a 200; else a BenchError naming `what` and the answer."""
        if self.status != 200:
            raise BenchError(f"{what}: {self.status} {self.body[:200]!r}")
        return self


class Conn:
    """One keep-alive HTTP/1.1 connection (asyncio streams); enough for set-up and probing.

    Hypercorn closes a keep-alive connection after 1,000 requests
    (`keep_alive_max_requests`), as servers may: a request that finds the
    connection closed before any byte of its answer is sent again on a new one.
    """

    def __init__(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.port = port
        self._reader = reader
        self._writer = writer
        self.closing = False  # the last answer said `connection: close`

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
        return cls(port, reader, writer)

    async def reopen(self) -> None:
        await self.close()
        self._reader, self._writer = await asyncio.open_connection(
            "127.0.0.1", self.port, limit=2**24
        )
        self.closing = False

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    def send(self, method: str, path: str, body: bytes | None = None, *, auth: bool = True) -> None:
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        if auth:
            head.append(f"Authorization: {AUTH}")
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))

    async def receive(self) -> Response:
        reader = self._reader
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            # In pieces: `readexactly` of more than twice the stream's limit
            # waits forever (reading pauses at that size), and listings of
            # 100,000 instances are tens of MiB.
            remaining = int(headers["content-length"])
            pieces: list[bytes] = []
            while remaining:
                piece = await reader.read(min(remaining, 1 << 20))
                if not piece:
                    raise asyncio.IncompleteReadError(b"".join(pieces), remaining)
                pieces.append(piece)
                remaining -= len(piece)
            body = b"".join(pieces)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        else:
            body = b""
        if headers.get("connection", "").lower() == "close":
            self.closing = True
        return Response(status, headers, body)

    async def request(
        self, method: str, path: str, body: bytes | None = None, *, auth: bool = True
    ) -> Response:
        for attempt in (1, 2):
            if self.closing:
                await self.reopen()
            try:
                self.send(method, path, body, auth=auth)
                await self._writer.drain()
                return await self.receive()
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                if attempt == 2 or (
                    isinstance(error, asyncio.IncompleteReadError) and error.partial
                ):
                    raise
                self.closing = True
        raise AssertionError("unreachable")


async def post_all(
    port: int,
    path: str,
    bodies: Sequence[bytes],
    *,
    connections: int = 16,
    depth: int = 16,
    expect: int = 200,
) -> float:
    """POST every body (pipelined `depth` deep on `connections` connections); seconds taken.

    Bodies must be safe to send twice (registrations are): after a closed
    connection the unanswered rest of a batch is sent again on a new one.
    """

    async def worker(part: Sequence[bytes]) -> None:
        conn = await Conn.open(port)
        try:
            at = 0
            stalls = 0
            while at < len(part):
                if conn.closing:
                    await conn.reopen()
                chunk = part[at : at + depth]
                before = at
                for body in chunk:
                    conn.send("POST", path, body)
                try:
                    for _ in chunk:
                        response = await conn.receive()
                        if response.status != expect:
                            raise BenchError(
                                f"POST {path}: {response.status} {response.body[:300]!r}"
                            )
                        at += 1
                        if conn.closing:
                            break
                except (asyncio.IncompleteReadError, ConnectionError):
                    conn.closing = True
                stalls = 0 if at > before else stalls + 1
                if stalls > 5:
                    raise BenchError(f"POST {path}: the server keeps closing the connection")
        finally:
            await conn.close()

    started = time.perf_counter()
    size = -(-len(bodies) // connections)
    async with asyncio.TaskGroup() as group:
        for i in range(connections):
            part = bodies[i * size : (i + 1) * size]
            if part:
                group.create_task(worker(part))
    return time.perf_counter() - started


async def _abandon_late(
    pending: dict[asyncio.Task[None], float], deadline: float, latencies: list[float]
) -> None:
    """Wait until `deadline` (loop time) for the requests in flight (task -> when it was
    due), then cancel the rest, counting each with its latency so far (a lower bound)."""
    loop = asyncio.get_running_loop()
    if pending:
        await asyncio.wait(list(pending), timeout=max(0.0, deadline - loop.time()))
    for task, due in list(pending.items()):
        task.cancel()
        latencies.append(loop.time() - due)
    for task in list(pending):
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def open_loop(
    port: int,
    requests: Sequence[tuple[str, str, bytes | None]],
    *,
    rate: float,
    seconds: float,
    connections: int = 8,
    grace: float = 2.0,
) -> list[float]:
    """Send `requests` in turn at a fixed rate; latency of each, from when it was due.

    Open loop: a slow answer does not delay the schedule, it only makes the
    next requests wait for a free connection, and that wait counts too (no
    coordinated omission). Requests still unanswered `grace` seconds after
    the last one was due are abandoned and counted with their latency so far
    (a lower bound). Any answer but 2xx raises.
    """
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    opened = [await Conn.open(port) for _ in range(connections)]
    for conn in opened:
        idle.put_nowait(conn)
    latencies: list[float] = []
    pending: dict[asyncio.Task[None], float] = {}
    errors: list[BaseException] = []

    def finished(task: asyncio.Task[None]) -> None:
        pending.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            errors.append(task.exception())  # type: ignore[arg-type]

    async def one(conn: Conn, due: float, method: str, path: str, body: bytes | None) -> None:
        response = await conn.request(method, path, body)
        latencies.append(loop.time() - due)
        idle.put_nowait(conn)
        if not 200 <= response.status < 300:
            raise BenchError(f"{method} {path}: {response.status} {response.body[:200]!r}")

    start = loop.time()
    end = start + seconds
    try:
        for n in range(int(rate * seconds)):
            due = start + n / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                conn = await asyncio.wait_for(idle.get(), max(0.0, end + grace - loop.time()))
            except TimeoutError:
                latencies.append(loop.time() - due)  # never even sent: a lower bound
                continue
            task = asyncio.create_task(one(conn, due, *requests[n % len(requests)]))
            pending[task] = due
            task.add_done_callback(finished)
        await _abandon_late(pending, end + grace, latencies)
    finally:
        for conn in opened:
            await conn.close()
    if errors:
        raise BenchError(f"API request failed: {errors[0]!r}")
    return latencies


def scrape_metrics(port: int) -> dict[str, float]:
    """`/metrics` as {'name{labels}': value}."""
    answer = http_call(port, "GET", "/metrics", auth=False).ok("/metrics")
    values: dict[str, float] = {}
    for line in answer.body.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[key] = float(value)
    return values


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run a load generator's coroutine, on uvloop when it is installed (a faster client)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def register_body(
    service: str,
    instance: str,
    port: int,
    health: str = "/health",
    metadata: dict[str, str] | None = None,
) -> bytes:
    meta = metadata if metadata is not None else {"version": "1.0.0", "zone": "a"}
    doc = instance_body(service, instance, port, health_endpoint=health, metadata=meta)
    return json.dumps(doc, separators=(",", ":")).encode()


def heartbeat_body(service: str, instance: str) -> bytes:
    document = {"service_name": service, "instance_id": instance}
    return json.dumps(document, separators=(",", ":")).encode()
