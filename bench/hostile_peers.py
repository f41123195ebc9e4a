"""Hostile (and healthy) fake instances: one asyncio process, the behaviour chosen by path.

Each registered instance gets its own health path `/{kind}/{tag}` (optionally
with a query string, e.g. `/slow/r1-7?delay=0.5`) on one of a few ports this
process listens on; every port serves every path. The kinds, and the status
docs/api.md makes the registry give each of them:

| kind | what the peer does | expected |
|---|---|---|
| `healthy` | `200 {"status":"healthy"}`, keep-alive | healthy |
| `hang` | reads the request, never answers (until the client hangs up) | unhealthy (timeout) |
| `trickle` | the whole response, status line included, one byte per second | unhealthy (timeout) |
| `trickle_body` | headers at once, then the body one byte per second | unhealthy (timeout) |
| `huge` | `200` with a 5 MiB body, written as fast as the client reads | unhealthy (over 64 KiB) |
| `redirect` | `302` to the healthy path (redirects are never followed) | unhealthy |
| `reset` | reads the request, then closes with `SO_LINGER 0`: a TCP RST | unhealthy |
| `invalid_json` | `200`, `application/json`, truncated JSON | healthy (1) |
| `slow` | sleeps `delay` s (query parameter, default 0.5), then healthy | healthy (2) |

(1) docs/api.md: a 2xx whose body is not JSON passes, so a broken JSON body
is healthy. (2) as long as `delay` is under HEALTH_CHECK_TIMEOUT_SECONDS.

Every request to a kind's path is logged with its arrival time
(`time.monotonic()`, the system-wide CLOCK_MONOTONIC on Linux, so a driver in
another process can compare it with its own clock) before it is answered.
Control paths:

- `GET /_log?prefix=/healthy/r1-` : `{"now": t, "paths": {path: [t, ...]}}`
  (paths without their query string), every logged path when no prefix.
- `GET /_stats` : request counts per kind, open connections, bytes sent, resets.
- `GET /_reset` : forget the log.

Run it by hand (`python -m bench.hostile_peers --port 9100 --port 9101`) or
through `start_peers()`, which hands it pre-bound 127.0.0.1 sockets.
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
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

#: kind -> the status the registry must end up giving an instance of that kind.
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
KINDS = tuple(EXPECTED)
HOSTILE_KINDS = tuple(kind for kind in KINDS if kind != "healthy")
#: Kinds whose connection a probe can never use again: the registry must close
#: it (timed out, over the body limit, or reset). Drivers put these on ports of
#: their own (`port_for`), so any registry socket still connected to one of
#: those ports once every such instance is gone is a leaked connection, whatever
#: the probe client's keep-alive policy does with the reusable ones.
CLOSING_KINDS = ("hang", "trickle", "trickle_body", "huge", "reset")


def split_ports(ports: Sequence[int]) -> tuple[list[int], list[int]]:
    """(keep-alive ports, closing ports): the first half for the kinds whose connection
    can be kept alive, the rest for `CLOSING_KINDS`; one port serves both when alone."""
    if len(ports) < 2:
        return list(ports), list(ports)
    half = len(ports) // 2
    return list(ports[:half]), list(ports[half:])


def port_for(kind: str, number: int, ports: Sequence[int]) -> int:
    """The peer port an instance of `kind` numbered `number` uses (see `split_ports`)."""
    keep_alive, closing = split_ports(ports)
    group = closing if kind in CLOSING_KINDS else keep_alive
    return group[number % len(group)]


HUGE_BODY_BYTES = 5 * 1024 * 1024
HUGE_CHUNK = 64 * 1024
#: A hung or trickling connection is dropped by the peer after this long at the latest.
HANG_CAP_SECONDS = 300.0
DEFAULT_SLOW_DELAY = 0.5

_HEALTHY_BODY = b'{"status":"healthy"}'
_INVALID_JSON_BODY = b'{"status": "healthy", "load_percentage": 0.1'


def _response(status: str, body: bytes, *, content_type: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


_HEALTHY = _response("200 OK", _HEALTHY_BODY)
_INVALID_JSON = _response("200 OK", _INVALID_JSON_BODY)
_NOT_FOUND = _response("404 Not Found", b'{"error":"no such kind"}')
_TRICKLE = _response("200 OK", _HEALTHY_BODY)
_TRICKLE_BODY_HEAD = (
    f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    f"content-length: {len(_HEALTHY_BODY)}\r\n\r\n".encode()
)
_HUGE_HEAD = (
    f"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
    f"content-length: {HUGE_BODY_BYTES}\r\n\r\n".encode()
)


class Peers:
    """The state of the peer server: the probe log and a few counters."""

    def __init__(self) -> None:
        self.log: dict[str, list[float]] = collections.defaultdict(list)
        self.requests: collections.Counter[str] = collections.Counter()
        self.open_connections = 0
        self.max_open_connections = 0
        self.bytes_sent = 0
        self.resets = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        self.max_open_connections = max(self.max_open_connections, self.open_connections)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                parts = head.split(b" ", 2)
                if len(parts) < 3:
                    return
                if not await self._answer(parts[1].decode("latin-1"), reader, writer):
                    return
        except (ConnectionError, TimeoutError):
            return
        except RuntimeError:  # uvloop: a write on a transport the client already closed
            return
        except asyncio.CancelledError:  # the server is shutting down
            return
        finally:
            self.open_connections -= 1
            if not writer.is_closing():
                writer.close()

    def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        self.bytes_sent += len(data)

    async def _answer(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection must end."""
        split = urlsplit(target)
        path = split.path
        if path.startswith("/_"):
            self._write(writer, self._control(path, parse_qs(split.query)))
            await writer.drain()
            return True
        kind = path.split("/", 2)[1]
        if kind not in EXPECTED:
            self._write(writer, _NOT_FOUND)
            await writer.drain()
            return True
        self.log[path].append(time.monotonic())
        self.requests[kind] += 1
        if kind == "healthy":
            self._write(writer, _HEALTHY)
        elif kind == "invalid_json":
            self._write(writer, _INVALID_JSON)
        elif kind == "slow":
            delay = float(parse_qs(split.query).get("delay", [DEFAULT_SLOW_DELAY])[0])
            await asyncio.sleep(min(delay, HANG_CAP_SECONDS))
            self._write(writer, _HEALTHY)
        elif kind == "redirect":
            tag = path.split("/", 2)[2] if path.count("/") >= 2 else ""
            self._write(
                writer,
                f"HTTP/1.1 302 Found\r\nlocation: /healthy/{tag}\r\n"
                "content-length: 0\r\n\r\n".encode(),
            )
        elif kind == "hang":
            await self._wait_for_hangup(reader, HANG_CAP_SECONDS)
            return False
        elif kind == "trickle":
            await self._trickle(reader, writer, _TRICKLE)
            return False
        elif kind == "trickle_body":
            self._write(writer, _TRICKLE_BODY_HEAD)
            await self._trickle(reader, writer, _HEALTHY_BODY)
            return False
        elif kind == "huge":
            await self._huge(writer)
            return False
        elif kind == "reset":
            self._reset(writer)
            return False
        await writer.drain()
        return True

    @staticmethod
    async def _wait_for_hangup(reader: asyncio.StreamReader, seconds: float) -> bool:
        """Wait up to `seconds` for the client to hang up; True if it did."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while await reader.read(4096):
                    pass
                return True
        return False

    async def _trickle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
    ) -> None:
        """One byte a second; stop as soon as the client hangs up."""
        for index in range(len(data)):
            self._write(writer, data[index : index + 1])
            await writer.drain()
            if await self._wait_for_hangup(reader, 1.0):
                return

    async def _huge(self, writer: asyncio.StreamWriter) -> None:
        """5 MiB, paced by the client's reading (flow control), until it hangs up."""
        self._write(writer, _HUGE_HEAD)
        chunk = b"x" * HUGE_CHUNK
        for _ in range(HUGE_BODY_BYTES // HUGE_CHUNK):
            if writer.is_closing():
                return
            self._write(writer, chunk)
            await writer.drain()

    def _reset(self, writer: asyncio.StreamWriter) -> None:
        """Close with SO_LINGER 0, which makes the kernel send RST instead of FIN."""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.resets += 1
        writer.transport.abort()

    def _control(self, path: str, query: dict[str, list[str]]) -> bytes:
        if path == "/_log":
            prefix = query.get("prefix", [""])[0]
            paths = {p: times for p, times in self.log.items() if p.startswith(prefix)}
            body: dict[str, Any] = {"now": time.monotonic(), "paths": paths}
        elif path == "/_stats":
            body = {
                "requests": dict(self.requests),
                "open_connections": self.open_connections,
                "max_open_connections": self.max_open_connections,
                "bytes_sent": self.bytes_sent,
                "resets": self.resets,
            }
        elif path == "/_reset":
            self.log.clear()
            body = {"reset": True}
        else:
            return _NOT_FOUND
        return _response("200 OK", json.dumps(body).encode())


def _quiet_exceptions(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Clients hanging up mid-answer is what this server is for; report anything else."""
    if isinstance(context.get("exception"), (ConnectionError, asyncio.CancelledError)):
        return
    loop.default_exception_handler(context)


async def serve(sockets: list[socket.socket]) -> None:
    peers = Peers()
    loop = asyncio.get_running_loop()
    servers = [
        await asyncio.start_server(peers.handle, sock=sock, backlog=4096, limit=16 * 1024)
        for sock in sockets
    ]
    loop.set_exception_handler(_quiet_exceptions)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()


# ----------------------------------------------------------------- driver side


@dataclass
class PeersProcess:
    """A running peer server (child process) and a small client for its control paths."""

    proc: subprocess.Popen[bytes]
    ports: list[int]
    client: httpx.Client = field(repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    def log(self, prefix: str = "") -> tuple[float, dict[str, list[float]]]:
        """(peer's now, {path: arrival times}) for the paths starting with `prefix`."""
        response = self.client.get(f"{self.base}/_log", params={"prefix": prefix})
        response.raise_for_status()
        data = response.json()
        return float(data["now"]), data["paths"]

    def stats(self) -> dict[str, Any]:
        response = self.client.get(f"{self.base}/_stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def reset(self) -> None:
        self.client.get(f"{self.base}/_reset").raise_for_status()


@contextlib.contextmanager
def start_peers(ports: int = 4) -> Iterator[PeersProcess]:
    """Start the peer server on `ports` pre-bound 127.0.0.1 sockets; stop it afterwards."""
    from conformance.server_process import REPO_ROOT, child_environment, listening_socket

    socks = [listening_socket() for _ in range(ports)]
    fds = [sock.fileno() for sock in socks]
    args = [sys.executable, "-m", "bench.hostile_peers"]
    for fd in fds:
        args += ["--fd", str(fd)]
    proc = subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        env=child_environment({}),
        stdin=subprocess.DEVNULL,
        pass_fds=fds,
    )
    numbers = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    client = httpx.Client(timeout=10.0, trust_env=False)
    peers = PeersProcess(proc, numbers, client)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                peers.stats()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("hostile peer server did not start") from None
                time.sleep(0.05)
        yield peers
    finally:
        client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, action="append", default=[], help="inherited socket")
    parser.add_argument("--port", type=int, action="append", default=[], help="bind 127.0.0.1")
    args = parser.parse_args()
    sockets = [socket.socket(fileno=fd) for fd in args.fd]
    sockets += [socket.create_server(("127.0.0.1", p), backlog=4096) for p in args.port]
    if not sockets:
        parser.error("give at least one --fd or --port")
    for sock in sockets:
        sock.setblocking(False)
        if args.port:
            print(f"listening on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(sockets))
    else:
        uvloop.run(serve(sockets))


if __name__ == "__main__":
    main()
