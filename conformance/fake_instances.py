"""Small HTTP servers that play registered service instances.

The registry's active health checks are only testable against endpoints whose
answers the test decides, so each ``FakeInstance`` is a real HTTP server on
127.0.0.1 (or ::1), port 0, whose paths give every outcome docs/api.md names:
passing and failing bodies, error codes, a redirect, a hang, a huge body, and
a switchable ``/toggle`` for the hysteresis tests. It records every request it
gets (at the *start* of handling, before answering), so a test can reason
about what the registry must already have seen when it reads the registry's
state afterwards.
"""

from __future__ import annotations

import collections
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

#: The load the ``/ok`` endpoint reports; the probe tests check it is taken up.
OK_LOAD = 0.42

#: Size of the ``/huge`` body: far over the registry's 64 KiB probe limit.
HUGE_BODY_BYTES = 5 * 1024 * 1024

#: JSON bodies answered with 200, by path.
_JSON_200: dict[str, Any] = {
    "/ok": {"status": "healthy", "load_percentage": OK_LOAD},
    "/json-unhealthy": {"status": "unhealthy"},
    "/json-down": {"status": "down"},
    "/json-fail": {"status": "fail"},
    "/json-upper-ok": {"status": "OK"},
    "/json-up": {"status": "Up"},
    "/json-nostatus": {"service": "fake", "uptime": 12},
    "/json-array": [1, 2, 3],
    "/json-status-number": {"status": 1},
    "/json-load-string": {"status": "pass", "load_percentage": "high"},
    "/json-load-clamp": {"status": "ok", "load_percentage": 7.5},
}


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its owner and keeps quiet about hang-ups.

    The registry closes connections on timeout or on an oversized body, which
    makes the handler's write fail; that is the expected outcome, not an error
    worth printing into the test output.
    """

    daemon_threads = True
    owner: FakeInstance

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Swallow connection resets caused by the registry hanging up."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _IPv6Server(_Server):
    """The same server on an IPv6 socket, for the bracketed-address probe test."""

    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """Routes a probe to the behaviour its path names."""

    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the registry's probes would flood the test output."""

    def do_GET(self) -> None:
        """Answer one probe, after recording it."""
        owner = self.server.owner
        path = urlsplit(self.path).path
        toggle_outcome = owner._record(self.path, path)
        if path in _JSON_200:
            self._send(200, json.dumps(_JSON_200[path]).encode(), "application/json")
        elif path == "/plain":
            self._send(200, b"OK", "text/plain")
        elif path == "/no-content":
            self._send(204, b"", None)
        elif path == "/500":
            # A body that says healthy: only the status code may decide.
            self._send(500, b'{"status": "healthy"}', "application/json")
        elif path == "/503":
            self._send(503, b"", None)
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/hang":
            # Wait on the stop event, not time.sleep, so stop() ends it at once.
            owner._stop.wait(owner.hang_seconds)
            self._send(200, b'{"status": "healthy"}', "application/json")
        elif path == "/huge":
            self._send_huge()
        elif path == "/toggle":
            if toggle_outcome:
                self._send(200, b'{"status": "healthy"}', "application/json")
            else:
                self._send(500, b'{"status": "unhealthy"}', "application/json")
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _send_huge(self) -> None:
        """A 2xx whose body is far over the probe limit; it must fail the probe."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(HUGE_BODY_BYTES))
        self.end_headers()
        chunk = b"x" * 65536
        for _ in range(HUGE_BODY_BYTES // len(chunk)):
            if self.server.owner._stop.is_set():
                return
            self.wfile.write(chunk)


class FakeInstance:
    """A controllable service instance; use as a context manager.

    ``hits(path)`` counts requests per path; ``toggle_outcomes()`` lists what
    ``/toggle`` answered, in order (``True`` = passed). ``/toggle`` answers
    from a queue of scripted outcomes first, then from its default.
    """

    def __init__(self, host: str = "127.0.0.1", hang_seconds: float = 30.0) -> None:
        server_class = _IPv6Server if ":" in host else _Server
        self._server = server_class((host, 0), _Handler)
        self._server.owner = self
        self.host = host
        self.port: int = self._server.server_address[1]
        self.hang_seconds = hang_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[str] = []
        self._hits: collections.Counter[str] = collections.Counter()
        self._toggle_default = True
        self._toggle_queue: collections.deque[bool] = collections.deque()
        self._toggle_log: list[bool] = []
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-instance-{self.port}",
            daemon=True,
        )
        self._started = False

    def start(self) -> FakeInstance:
        """Start serving in a background thread."""
        self._thread.start()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop serving, release hanging handlers and close the socket."""
        self._stop.set()
        if self._started:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> FakeInstance:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _record(self, raw_path: str, path: str) -> bool:
        """Record a request; for /toggle, decide and log its outcome."""
        with self._lock:
            self._requests.append(raw_path)
            self._hits[path] += 1
            if path != "/toggle":
                return True
            outcome = self._toggle_queue.popleft() if self._toggle_queue else self._toggle_default
            self._toggle_log.append(outcome)
            return outcome

    def hits(self, path: str) -> int:
        """How many requests reached ``path`` (query string ignored)."""
        with self._lock:
            return self._hits[path]

    def requests(self) -> list[str]:
        """Every request target received, query string included, in order."""
        with self._lock:
            return list(self._requests)

    def set_toggle(self, healthy: bool) -> int:
        """Set what /toggle answers from now on; returns the log length at the switch."""
        with self._lock:
            self._toggle_default = healthy
            self._toggle_queue.clear()
            return len(self._toggle_log)

    def queue_toggle(self, *outcomes: bool) -> int:
        """Answer the next probes of /toggle with ``outcomes``, then the default.

        Returns the log length at the moment the script was queued, so the
        caller can look at exactly the outcomes that followed.
        """
        with self._lock:
            self._toggle_queue.clear()
            self._toggle_queue.extend(outcomes)
            return len(self._toggle_log)

    def toggle_outcomes(self, since: int = 0) -> list[bool]:
        """What /toggle answered, oldest first, from log position ``since``."""
        with self._lock:
            return self._toggle_log[since:]


def refused_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` where nothing listens: bound, then closed at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def ipv6_loopback_available() -> bool:
    """Whether ::1 can be bound here (some containers have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True
