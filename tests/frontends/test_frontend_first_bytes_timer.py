"""The asyncio first-bytes gate's head timer spares a connection whose request waits unread.

A process starved of CPU past the head timeout can run the expired timer before
the reader in the same loop turn (`FirstBytes`'s docstring). The timer is called
here directly, as that loop turn would, with and without bytes in the socket: no
clock, no sleep.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

from frontends.runtime.watch_streams import WatchServing
from frontends.servers.direct.asyncio_streams import FirstBytes

HEAD_TIMEOUT = 5.0


class Transport(asyncio.Transport):
    """Just what the gate asks of a transport: its socket, and whether it was closed."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _gate() -> FirstBytes:
    def hand_off(transport: asyncio.Transport, first: bytes, deadline: float) -> None:
        raise AssertionError("nothing was read, so nothing is handed off")

    return FirstBytes(cast("WatchServing", None), hand_off, HEAD_TIMEOUT)


def _expire(gate: FirstBytes) -> None:
    """What the loop does when the head's deadline is due: run the timer's callback."""
    timer = gate._timer
    assert timer is not None and not timer.cancelled()
    assert timer.when() == gate._deadline
    timer.cancel()  # run it here, not again by the loop
    gate._head_timed_out()


def _starved(waiting: bytes) -> tuple[bool, bool]:
    """Whether the connection was closed after one expiry, and after a second, with
    `waiting` sent by the client and left unread (as in a process given no CPU)."""

    async def scenario() -> tuple[bool, bool]:
        server, client = socket.socketpair()
        with server, client:
            transport = Transport(server)
            gate = _gate()
            gate.connection_made(transport)
            first_deadline = gate._deadline
            client.sendall(waiting)
            _expire(gate)
            after_one = transport.closed
            if after_one:
                return True, True
            assert gate._deadline >= first_deadline  # re-armed: a whole new period
            _expire(gate)  # still unread a whole period later: a trickler, or stuck
            return after_one, transport.closed

    return asyncio.run(scenario())


def test_a_silent_connection_is_closed_when_its_head_time_runs_out() -> None:
    assert _starved(b"") == (True, True)


def test_waiting_bytes_earn_one_more_period_and_no_second() -> None:
    assert _starved(b"GET /v1/discovery/services HTTP/1.1\r\n") == (False, True)
