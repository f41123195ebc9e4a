"""A minimal Server-Sent Events client over a raw socket, for the watch-stream tests.

Raw, so the tests see exactly what the registry writes (the chunked framing,
comments, where the stream ends) and can stop reading to play a slow reader.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any

#: Guard against a hung test, not a timing assertion.
READ_TIMEOUT = 10.0


@dataclass
class Event:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SseStream:
    """One `GET` on its own connection; `status`/`headers` once read, then events."""

    sock: socket.socket
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""  # a non-stream answer's body
    comments: int = 0
    ended: bool = False  # the terminating chunk arrived
    closed: bool = False  # the server closed the connection
    _raw: bytes = b""
    _text: str = ""
    _chunked: bool = False

    @classmethod
    def open(
        cls,
        port: int,
        target: str,
        headers: dict[str, str] | None = None,
        *,
        rcvbuf: int | None = None,
    ) -> SseStream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(READ_TIMEOUT)
        sock.connect(("127.0.0.1", port))
        lines = [f"GET {target} HTTP/1.1", "Host: registry"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return cls.reading(sock)

    @classmethod
    def reading(cls, sock: socket.socket) -> SseStream:
        """The response to a request already written on `sock`, its head read."""
        stream = cls(sock)
        stream._read_head()
        return stream

    def close(self) -> None:
        self.sock.close()

    def _recv(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            return False
        self._raw += data
        return True

    def _read_head(self) -> None:
        while b"\r\n\r\n" not in self._raw:
            if not self._recv():
                raise AssertionError("connection closed before a response head")
        head, _, self._raw = self._raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split(" ")[1])
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        if not self._chunked:
            length = int(self.headers.get("content-length", "0"))
            while len(self._raw) < length and self._recv():
                pass
            self.body, self._raw = self._raw[:length], self._raw[length:]

    def _decode_chunks(self) -> None:
        while not self.ended:
            size_end = self._raw.find(b"\r\n")
            if size_end < 0:
                return
            size = int(self._raw[:size_end], 16)
            if len(self._raw) < size_end + 2 + size + 2:
                return
            chunk = self._raw[size_end + 2 : size_end + 2 + size]
            self._raw = self._raw[size_end + 2 + size + 2 :]
            if size == 0:
                self.ended = True
            self._text += chunk.decode()

    def _next_block(self) -> str | None:
        block, found, rest = self._text.partition("\n\n")
        if not found:
            return None
        self._text = rest
        return block

    def next_event(self) -> Event | None:
        """The next event (comments counted and skipped); None once the stream ended."""
        while True:
            self._decode_chunks()
            block = self._next_block()
            while block is not None:
                event = self._parse(block)
                if event is not None:
                    return event
                block = self._next_block()
            if self.ended or self.closed or not self._recv():
                return None

    def wait_comment(self) -> None:
        """Read until a comment (a keep-alive) arrives; events meanwhile are dropped."""
        seen = self.comments
        while self.comments == seen:
            self._decode_chunks()
            block = self._next_block()
            while block is not None and self.comments == seen:
                self._parse(block)
                block = self._next_block()
            if self.comments == seen and not self._recv():
                raise AssertionError("the stream ended before a comment")

    def _parse(self, block: str) -> Event | None:
        kind, data, event_id = "message", [], None
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value
        if not data:
            return None  # `retry:` or a comment-only block
        return Event(kind, "\n".join(data), event_id)

    def read_to_end(self) -> list[Event]:
        """Every event until the server ends the stream or closes the connection."""
        events = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events
