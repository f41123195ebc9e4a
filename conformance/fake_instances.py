"""Registered service instances that the tests control, served in process.

The registry's active health checks are only testable against endpoints whose
answers the test decides, so each `FakeInstance` is the one fake-peer server
(`conformance.fake_peers`, which lists every path and what it answers) on its
own thread and event loop, on 127.0.0.1 (or ::1) port 0. It records every
request at the *start* of handling, before answering, so a test can reason
about what the registry must already have seen when it reads the registry's
state afterwards; `/toggle` is scripted from the test (hysteresis tests).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType

from conformance.fake_peers import HUGE_BODY_BYTES, OK_LOAD, PeerServer, PeerState

__all__ = [
    "HUGE_BODY_BYTES",
    "OK_LOAD",
    "FakeInstance",
    "ipv6_loopback_available",
    "refused_port",
]


class FakeInstance:
    """A controllable service instance; use as a context manager.

    `hits(path)` counts requests per path; `toggle_outcomes()` lists what
    `/toggle` answered, in order (`True` = passed). `/toggle` answers from a
    queue of scripted outcomes first, then from its default.
    """

    def __init__(self, host: str = "127.0.0.1", hang_seconds: float = 30.0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self._sock.listen(128)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self._state = PeerState(keep_targets=True)
        self._server = PeerServer(self._state, hang_seconds)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"fake-instance-{self.port}", daemon=True
        )

    def start(self) -> FakeInstance:
        """Start serving on a background thread."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._server.listen([self._sock]), self._loop).result(5)
        return self

    def stop(self) -> None:
        """Stop serving, end hanging answers, close the socket and the loop."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._server.aclose(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()
        self._sock.close()

    def __enter__(self) -> FakeInstance:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def hits(self, path: str) -> int:
        """How many requests reached `path` (query string ignored)."""
        return self._state.hits_of(path)

    def requests(self) -> list[str]:
        """Every request target received, query string included, in order."""
        return self._state.recorded_targets()

    def set_toggle(self, healthy: bool) -> int:
        """Set what /toggle answers from now on; returns the log length at the switch."""
        return self._state.set_toggle(healthy)

    def queue_toggle(self, *outcomes: bool) -> int:
        """Answer the next probes of /toggle with `outcomes`, then the default.

        Returns the log length at the moment the script was queued, so the
        caller can look at exactly the outcomes that followed.
        """
        return self._state.queue_toggle(*outcomes)

    def toggle_outcomes(self, since: int = 0) -> list[bool]:
        """What /toggle answered, oldest first, from log position `since`."""
        return self._state.toggle_outcomes(since)


def refused_port(host: str = "127.0.0.1") -> int:
    """A port on `host` where nothing listens: bound, then closed at once."""
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
