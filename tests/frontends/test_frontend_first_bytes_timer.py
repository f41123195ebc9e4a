"""Both first-bytes gates' head timers spare a connection whose request waits unread, once.

A process starved of CPU past the head timeout can run the expired timer before
the reader in the same loop turn (`FirstBytes`'s docstring). On asyncio the timer
is called here directly, as that loop turn would; on trio the reader never gets
the bytes (a stream that only waits) while trio's mock clock jumps. With and
without bytes in the socket; no sleep.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

import trio
import trio.testing

from frontends.runtime.watch_streams import WatchServing
from frontends.servers.direct.asyncio_streams import FirstBytes
from frontends.servers.direct.trio_streams import _first_request

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


class Starved:
    """A trio stream whose reader never runs: `receive_some` only waits, while the
    client's bytes (if any) stay in `socket`."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.sleep_forever()
        raise AssertionError("unreachable")


def _trio_gives_up_after(waiting: bytes) -> float:
    """Seconds of trio's clock until the gate gives the head up, `waiting` sent unread."""

    async def scenario() -> float:
        server, client = socket.socketpair()
        with server, client:
            client.sendall(waiting)
            start = trio.current_time()
            stream = cast("trio.SocketStream", Starved(server))
            assert await _first_request(stream, HEAD_TIMEOUT) is None
            return trio.current_time() - start

    return trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))


def test_trio_gives_a_silent_head_one_period() -> None:
    assert _trio_gives_up_after(b"") == HEAD_TIMEOUT


def test_trio_gives_a_head_whose_bytes_wait_one_more_period_and_no_second() -> None:
    assert _trio_gives_up_after(b"GET /v1/discovery/watch HTTP/1.1\r\n") == 2 * HEAD_TIMEOUT
