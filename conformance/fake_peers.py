"""The one fake-peer server: every probed instance the tests and benchmarks need.

The registry's health checks are only testable, and only measurable, against
endpoints whose answers the caller decides. One raw asyncio protocol serves
all of them, so the conformance suite, the probe-capacity benchmark and the
hostile-peer matrix exercise the same server: cheap enough for thousands of
probes a second on many ports (pipelined requests are answered in one write),
yet able to hang, trickle or reset a single connection without slowing the
others. The behaviour is chosen by the path:

| path | answer |
|---|---|
| `/h/...` | `200 {"status":"healthy"}`, probe gaps tracked per path (`/_window`) |
| `/ok`, `/json-*`, `/plain`, `/no-content`, `/500`, `/503` | fixed answers (`_FIXED`) |
| `/toggle` | healthy or `500`, scripted in process (`PeerState.set_toggle`) |
| `/healthy/{tag}` | `200 {"status":"healthy"}` |
| `/invalid_json/{tag}` | `200`, `application/json`, truncated JSON |
| `/slow/{tag}?delay=S` | healthy after S seconds (default 0.5) |
| `/redirect[/{tag}]` | `302` to `/healthy/{tag}` (`/ok` without a tag) |
| `/hang[/{tag}]` | never answers; closes once the client hangs up or `hang_seconds` pass |
| `/trickle/{tag}` | the whole response, status line included, one byte a second |
| `/trickle_body/{tag}` | headers at once, then the body one byte a second |
| `/huge[/{tag}]` | `200` with a 5 MiB body, written as fast as the client reads |
| `/reset/{tag}` | closes with `SO_LINGER 0`: a TCP RST |
| anything else | `404` |

Every request is recorded when it arrives, before it is answered (the
arrival time is `time.monotonic()`, CLOCK_MONOTONIC on Linux, so a driver in
another process can compare it with its own clock). Control paths, for a
server in another process:

- `GET /_ready`: 200.
- `GET /_window`: what `/h/` paths saw since the previous call (`Tracker`).
- `GET /_log?prefix=/healthy/r1-`: `{"now": t, "paths": {path: [t, ...]}}`.
- `GET /_stats`: requests per kind, open connections, bytes sent, resets.
- `GET /_reset`: forget every recorded request.
- any other `/_...` path: `200 {}` (an instance nobody watches).

In process, `conformance.fake_instances.FakeInstance` runs it on a thread;
as a process, `python -m conformance.fake_peers --fd N [--fd M ...]` (or
`--port P`), on uvloop when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import signal
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: The load the `/ok` endpoint reports; the probe tests check it is taken up.
OK_LOAD = 0.42

#: Size of the `huge` body: far over the registry's 64 KiB probe limit.
HUGE_BODY_BYTES = 5 * 1024 * 1024
HUGE_CHUNK = 64 * 1024

#: A hung or trickling connection is dropped after this long at the latest (by default).
HANG_CAP_SECONDS = 300.0
DEFAULT_SLOW_DELAY = 0.5

#: Listening backlog: load generators and probers open hundreds of connections at once.
BACKLOG = 4096

#: The paths whose probes are counted in windows instead of logged one by one.
TRACKED_PREFIX = b"/h/"

#: kind (first path segment) -> the status the registry must give an instance of that kind.
EXPECTED: dict[str, str] = {
    "healthy": "healthy",
    "hang": "unhealthy",
    "trickle": "unhealthy",
    "trickle_body": "unhealthy",
    "huge": "unhealthy",
    "redirect": "unhealthy",
    "reset": "unhealthy",
    "invalid_json": "healthy",
    "slow": "healthy",
}


def response(
    status: str, body: bytes, content_type: str | None = "application/json", headers: str = ""
) -> bytes:
    """A whole HTTP/1.1 response (keep-alive) with a content-length."""
    kind = f"content-type: {content_type}\r\n" if content_type else ""
    head = f"HTTP/1.1 {status}\r\n{kind}{headers}content-length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _json(status: str, value: Any) -> bytes:
    return response(status, json.dumps(value).encode())


_HEALTHY_BODY = b'{"status":"healthy"}'
_HEALTHY = response("200 OK", _HEALTHY_BODY)
_UNHEALTHY_500 = _json("500 Internal Server Error", {"status": "unhealthy"})
_NOT_FOUND = _json("404 Not Found", {"error": "no such path"})
_EMPTY = _json("200 OK", {})

#: Fixed answers, by exact path (the conformance suite's probe matrix).
_FIXED: dict[str, bytes] = {
    "/ok": _json("200 OK", {"status": "healthy", "load_percentage": OK_LOAD}),
    "/json-unhealthy": _json("200 OK", {"status": "unhealthy"}),
    "/json-down": _json("200 OK", {"status": "down"}),
    "/json-fail": _json("200 OK", {"status": "fail"}),
    "/json-upper-ok": _json("200 OK", {"status": "OK"}),
    "/json-up": _json("200 OK", {"status": "Up"}),
    "/json-nostatus": _json("200 OK", {"service": "fake", "uptime": 12}),
    "/json-array": _json("200 OK", [1, 2, 3]),
    "/json-status-number": _json("200 OK", {"status": 1}),
    "/json-load-string": _json("200 OK", {"status": "pass", "load_percentage": "high"}),
    "/json-load-clamp": _json("200 OK", {"status": "ok", "load_percentage": 7.5}),
    "/plain": response("200 OK", b"OK", "text/plain"),
    "/no-content": response("204 No Content", b"", None),
    # A body that says healthy: only the status code may decide.
    "/500": response("500 Internal Server Error", b'{"status": "healthy"}'),
    "/503": response("503 Service Unavailable", b"", None),
    "/healthy": _HEALTHY,
    "/invalid_json": response("200 OK", b'{"status": "healthy", "load_percentage": 0.1'),
}

_HUGE_HEAD = (
    f"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
    f"content-length: {HUGE_BODY_BYTES}\r\n\r\n".encode()
)


class Tracker:
    """Probe gaps of the `/h/` paths, one window at a time (the probe-capacity scenario)."""

    def __init__(self) -> None:
        self.last: dict[bytes, float] = {}
        self.window_start = time.monotonic()
        self.hits = 0
        self.gaps: list[float] = []
        self.seen: set[bytes] = set()

    def hit(self, path: bytes) -> None:
        now = time.monotonic()
        previous = self.last.get(path)
        self.last[path] = now
        self.hits += 1
        self.seen.add(path)
        if previous is not None:
            self.gaps.append(now - previous)

    def window(self) -> dict[str, float]:
        """What happened since the previous window; starts a new one.

        `max_gap` counts the time since each path's last probe as an open gap.
        """
        now = time.monotonic()
        gaps = sorted(self.gaps)
        open_gap = max((now - t for t in self.last.values()), default=0.0)
        p99 = gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))] if gaps else 0.0
        report = {
            "seconds": now - self.window_start,
            "hits": self.hits,
            "instances_hit": len(self.seen),
            "known": len(self.last),
            "max_gap": max(gaps[-1] if gaps else 0.0, open_gap),
            "max_closed_gap": gaps[-1] if gaps else 0.0,
            "p99_gap": p99,
        }
        self.window_start = now
        self.hits = 0
        self.gaps = []
        self.seen = set()
        return report


class PeerState:
    """What the server saw and what `/toggle` says next.

    The server's loop thread writes it; a test thread reads it (in-process
    `FakeInstance`), hence the lock. The `/h/` tracker is only touched on the
    loop thread, so the hot path takes no lock.
    """

    def __init__(self, keep_targets: bool = False) -> None:
        self._lock = threading.Lock()
        self._keep_targets = keep_targets
        self.tracker = Tracker()
        self.targets: list[str] = []
        self.hits: collections.Counter[str] = collections.Counter()
        self.kinds: collections.Counter[str] = collections.Counter()
        self.log: dict[str, list[float]] = collections.defaultdict(list)
        self.open_connections = 0
        self.max_open_connections = 0
        self.bytes_sent = 0
        self.resets = 0
        self._toggle_default = True
        self._toggle_queue: collections.deque[bool] = collections.deque()
        self._toggle_log: list[bool] = []

    def record(self, target: str, path: str, kind: str) -> None:
        with self._lock:
            if self._keep_targets:
                self.targets.append(target)
            self.hits[path] += 1
            self.kinds[kind] += 1
            self.log[path].append(time.monotonic())

    def reset(self) -> None:
        with self._lock:
            self.tracker = Tracker()
            self.targets.clear()
            self.hits.clear()
            self.log.clear()

    def connection_opened(self) -> None:
        self.open_connections += 1
        self.max_open_connections = max(self.max_open_connections, self.open_connections)

    def connection_closed(self) -> None:
        self.open_connections -= 1

    def next_toggle(self) -> bool:
        """Decide and log what this probe of `/toggle` gets: the script first, then the default."""
        with self._lock:
            outcome = self._toggle_queue.popleft() if self._toggle_queue else self._toggle_default
            self._toggle_log.append(outcome)
            return outcome

    def set_toggle(self, healthy: bool) -> int:
        """Set what /toggle answers from now on; returns the log length at the switch."""
        with self._lock:
            self._toggle_default = healthy
            self._toggle_queue.clear()
            return len(self._toggle_log)

    def queue_toggle(self, *outcomes: bool) -> int:
        """Answer the next probes of /toggle with `outcomes`, then the default."""
        with self._lock:
            self._toggle_queue.clear()
            self._toggle_queue.extend(outcomes)
            return len(self._toggle_log)

    def toggle_outcomes(self, since: int = 0) -> list[bool]:
        with self._lock:
            return self._toggle_log[since:]

    def hits_of(self, path: str) -> int:
        with self._lock:
            return self.hits[path]

    def recorded_targets(self) -> list[str]:
        with self._lock:
            return list(self.targets)

    def control(self, path: str, query: str) -> bytes:
        """The answer to a `/_...` path."""
        if path == "/_window":
            return _json("200 OK", self.tracker.window())
        if path == "/_log":
            prefix = parse_qs(query).get("prefix", [""])[0]
            with self._lock:
                paths = {p: list(t) for p, t in self.log.items() if p.startswith(prefix)}
            return _json("200 OK", {"now": time.monotonic(), "paths": paths})
        if path == "/_stats":
            return _json(
                "200 OK",
                {
                    "requests": dict(self.kinds),
                    "open_connections": self.open_connections,
                    "max_open_connections": self.max_open_connections,
                    "bytes_sent": self.bytes_sent,
                    "resets": self.resets,
                },
            )
        if path == "/_reset":
            self.reset()
            return _json("200 OK", {"reset": True})
        return _EMPTY


#: A behaviour that needs time: runs on its own, the connection's later
#: requests wait for it; returns whether the connection may serve more.
SlowAnswer = Callable[["PeerConnection"], Awaitable[bool]]


class PeerConnection(asyncio.Protocol):
    """One client connection: parses requests from the buffer and answers each in turn."""

    def __init__(self, server: PeerServer) -> None:
        self._server = server
        self._state = server.state
        self._buffer = b""
        self._busy = False
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._closed: asyncio.Future[None] = loop.create_future()
        self._writable: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._server.connections.add(self)
        self._state.connection_opened()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._state.connection_closed()
        if not self._closed.done():
            self._closed.set_result(None)
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    @property
    def closed(self) -> bool:
        return self._closed.done()

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self.closed:
            self._transport.write(data)
            self._state.bytes_sent += len(data)

    async def drain(self) -> None:
        """Wait while the client reads slower than we write (flow control)."""
        if self._writable is not None:
            await self._writable

    async def hung_up(self, seconds: float) -> bool:
        """Wait up to `seconds` for the client to hang up; True if it did."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._closed), seconds)
        return self.closed

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self, reset: bool = False) -> None:
        """Drop the connection at once; with `reset`, SO_LINGER 0 makes it a TCP RST."""
        if self._transport is None:
            return
        sock = self._transport.get_extra_info("socket")
        if reset and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._transport.abort()

    # ------------------------------------------------------------- requests

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._serve_buffer()

    def _next_target(self) -> bytes | None:
        """The target of the next whole request in the buffer (which drops it), or None."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = buffer[:end]
        length = 0
        at = head.lower().find(b"content-length:")
        if at >= 0:
            length = int(head[at + 15 :].split(b"\r\n", 1)[0])
        if len(buffer) < end + 4 + length:
            return None
        self._buffer = buffer[end + 4 + length :]
        parts = head.split(b" ", 2)
        return parts[1] if len(parts) == 3 else b""

    def _serve_buffer(self) -> None:
        """Answer every whole request buffered, in one write, until one needs time."""
        out: list[bytes] = []
        while not self.closed:
            target = self._next_target()
            if target is None:
                break
            if target.startswith(TRACKED_PREFIX):
                self._state.tracker.hit(target)
                out.append(_HEALTHY)
                continue
            answer = self._server.answer(target.decode("latin-1"))
            if isinstance(answer, bytes):
                out.append(answer)
                continue
            self.write(b"".join(out))
            self._busy = True
            self._server.spawn(self._run_slow(answer))
            return
        if out:
            self.write(b"".join(out))

    async def _run_slow(self, answer: SlowAnswer) -> None:
        try:
            keep = await answer(self)
        except (ConnectionError, asyncio.CancelledError):
            keep = False
        self._busy = False
        if not keep:
            self.close()
        elif not self.closed:
            self._serve_buffer()


class PeerServer:
    """Routes requests to behaviours; owns the listening servers and open connections."""

    def __init__(self, state: PeerState, hang_seconds: float = HANG_CAP_SECONDS) -> None:
        self.state = state
        self.hang_seconds = hang_seconds
        self.connections: set[PeerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._servers: list[asyncio.Server] = []
        self._closing_kinds: dict[str, SlowAnswer] = {
            "hang": self._hang,
            "trickle": self._trickle,
            "trickle_body": self._trickle_body,
            "huge": self._huge,
            "reset": self._reset,
        }

    async def listen(self, sockets: Sequence[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_exceptions)
        for sock in sockets:
            sock.setblocking(False)
            server = await loop.create_server(
                lambda: PeerConnection(self), sock=sock, backlog=BACKLOG
            )
            self._servers.append(server)

    async def aclose(self) -> None:
        """Stop listening, drop every connection and wait for the answers under way to end."""
        for server in self._servers:
            server.close()
        for connection in list(self.connections):
            connection.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.sleep(0)  # let the aborted transports report connection_lost

    def spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def answer(self, target: str) -> bytes | SlowAnswer:
        """What `target` gets: a whole response, or a behaviour that takes time."""
        split = urlsplit(target)
        path = split.path
        if path.startswith("/_"):
            return self.state.control(path, split.query)
        _, kind, tag = (path + "/").split("/", 2)
        self.state.record(target, path, kind)
        fixed = _FIXED.get(path) or _FIXED.get(f"/{kind}")
        if fixed is not None:
            return fixed
        if path == "/toggle":
            return _HEALTHY if self.state.next_toggle() else _UNHEALTHY_500
        if kind == "redirect":
            location = f"/healthy/{tag.rstrip('/')}" if tag else "/ok"
            return response("302 Found", b"", None, f"location: {location}\r\n")
        if kind == "slow":
            delay = float(parse_qs(split.query).get("delay", [DEFAULT_SLOW_DELAY])[0])
            return self._slow(min(delay, self.hang_seconds))
        slow = self._closing_kinds.get(kind)
        return slow if slow is not None else _NOT_FOUND

    # ------------------------------------------------------------ behaviours

    @staticmethod
    def _slow(delay: float) -> SlowAnswer:
        async def answer(connection: PeerConnection) -> bool:
            await asyncio.sleep(delay)
            connection.write(_HEALTHY)
            return True

        return answer

    async def _hang(self, connection: PeerConnection) -> bool:
        await connection.hung_up(self.hang_seconds)
        return False

    @staticmethod
    async def _trickle_bytes(connection: PeerConnection, data: bytes) -> bool:
        """One byte a second; stop as soon as the client hangs up."""
        for index in range(len(data)):
            connection.write(data[index : index + 1])
            if await connection.hung_up(1.0):
                break
        return False

    async def _trickle(self, connection: PeerConnection) -> bool:
        return await self._trickle_bytes(connection, _HEALTHY)

    async def _trickle_body(self, connection: PeerConnection) -> bool:
        connection.write(_HEALTHY[: -len(_HEALTHY_BODY)])
        return await self._trickle_bytes(connection, _HEALTHY_BODY)

    @staticmethod
    async def _huge(connection: PeerConnection) -> bool:
        """5 MiB, paced by the client's reading, until it hangs up."""
        connection.write(_HUGE_HEAD)
        chunk = b"x" * HUGE_CHUNK
        for _ in range(HUGE_BODY_BYTES // HUGE_CHUNK):
            if connection.closed:
                break
            connection.write(chunk)
            await connection.drain()
        return False

    async def _reset(self, connection: PeerConnection) -> bool:
        self.state.resets += 1
        connection.abort(reset=True)
        return False


def _quiet_exceptions(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Clients hanging up mid-answer is what this server is for; report anything else."""
    if isinstance(context.get("exception"), (ConnectionError, asyncio.CancelledError)):
        return
    loop.default_exception_handler(context)


async def serve(sockets: Sequence[socket.socket]) -> None:
    """Serve on `sockets` until SIGTERM or SIGINT."""
    server = PeerServer(PeerState())
    await server.listen(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, action="append", default=[], help="inherited socket")
    parser.add_argument("--port", type=int, action="append", default=[], help="bind 127.0.0.1")
    args = parser.parse_args()
    sockets = [socket.socket(fileno=fd) for fd in args.fd]
    for port in args.port:
        sock = socket.create_server(("127.0.0.1", port), backlog=BACKLOG)
        print(f"listening on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
        sockets.append(sock)
    if not sockets:
        parser.error("give at least one --fd or --port")
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(sockets))
    else:
        uvloop.run(serve(sockets))


if __name__ == "__main__":
    main()
