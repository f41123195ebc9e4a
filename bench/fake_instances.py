"""A fast stand-in for a fleet of instances: one process, any number of health paths.

Every `GET` of a path not starting with `/_` answers `200 {"status":"healthy"}`
and is recorded per path (one path per instance, e.g. `/h/17`), so the probe
scenario can see whether each instance is probed on schedule:

- `GET /_window` returns, as JSON, what happened since the previous call and
  starts a new window: `hits`, `instances_hit`, `known` (paths ever probed),
  `max_gap` (the longest time between two probes of one path, counting the
  time since the last probe of each path as an open gap) and `p99_gap`.
- `GET /_reset` forgets every path (a new registry is about to probe).
- `GET /_ready` answers 200.

Raw asyncio protocol (on uvloop when installed), so it costs little next to
the registry it serves:

    python -m bench.fake_instances --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import time

_HEALTHY = b'{"status":"healthy"}'
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(_HEALTHY)).encode()
    + b"\r\n\r\n"
    + _HEALTHY
)


class Tracker:
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

    def window(self) -> bytes:
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
        return json.dumps(report).encode()


def _answer(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class Handler(asyncio.Protocol):
    def __init__(self, tracker: Tracker) -> None:
        self._tracker = tracker
        self._buffer = b""
        self._transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data
        out = []
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            length = 0
            lower = head.lower()
            at = lower.find(b"content-length:")
            if at >= 0:
                length = int(lower[at + 15 :].split(b"\r\n", 1)[0])
            if len(buffer) < end + 4 + length:
                break
            buffer = buffer[end + 4 + length :]
            path = head.split(b" ", 2)[1]
            if path.startswith(b"/_"):
                if path == b"/_reset":
                    self._tracker.__init__()  # type: ignore[misc]
                out.append(_answer(self._tracker.window() if path == b"/_window" else b"{}"))
            else:
                self._tracker.hit(path)
                out.append(_RESPONSE)
        self._buffer = buffer
        if out and self._transport is not None:
            self._transport.write(b"".join(out))


async def serve(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    tracker = Tracker()
    server = await loop.create_server(lambda: Handler(tracker), sock=sock, backlog=4096)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--fd", type=int, help="an inherited listening socket")
    where.add_argument("--port", type=int, help="bind 127.0.0.1:PORT")
    args = parser.parse_args()
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        sock = socket.create_server(("127.0.0.1", args.port), backlog=4096)
    sock.setblocking(False)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(sock))
    else:
        uvloop.run(serve(sock))


if __name__ == "__main__":
    main()
