"""The trio worker's keep-alive timer spares, once, a connection whose client has spoken.

`frontends/servers/hypercorn/patches.py` (`spare_connections_with_waiting_requests`)
explains why; these run the patched timer against a stand-in for hypercorn's
`TCPServer` on trio's mock clock, so each expiry is exact and nothing sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h11
import trio
import trio.testing
from frontend_kit import SocketPair

from frontends.servers.hypercorn.patches import (
    _idle_timeout_unless_readable,
    spare_connections_with_waiting_requests,
)

KEEP_ALIVE = 5.0


@dataclass
class _Config:
    keep_alive_timeout: float = KEEP_ALIVE


@dataclass
class _Context:
    terminated: trio.Event = field(default_factory=trio.Event)


@dataclass
class _H11Protocol:
    connection: h11.Connection = field(default_factory=lambda: h11.Connection(h11.SERVER))


@dataclass
class _ProtocolWrapper:
    protocol: _H11Protocol = field(default_factory=_H11Protocol)


@dataclass
class _Server:
    """What the timer reads of hypercorn's trio `TCPServer`, and when it closed."""

    stream: trio.SocketStream
    config: _Config = field(default_factory=_Config)
    context: _Context = field(default_factory=_Context)
    protocol: _ProtocolWrapper = field(default_factory=_ProtocolWrapper)
    closed_at: float | None = None

    async def _initiate_server_close(self) -> None:
        self.closed_at = trio.current_time()


async def _closed_after(server: _Server) -> float:
    started = trio.current_time()
    await _idle_timeout_unless_readable(server)
    assert server.closed_at is not None
    return server.closed_at - started


async def test_a_silent_connection_closes_after_one_period(
    autojump_clock: trio.testing.MockClock,
    socket_pair: SocketPair,
) -> None:
    ours, _theirs = socket_pair
    assert await _closed_after(_Server(ours)) == KEEP_ALIVE


async def test_bytes_waiting_in_the_socket_earn_one_more_period_only(
    autojump_clock: trio.testing.MockClock,
    socket_pair: SocketPair,
) -> None:
    ours, theirs = socket_pair
    await theirs.send_all(b"GET / HTTP/1.1\r\n")  # never read: the reader was starved
    assert await _closed_after(_Server(ours)) == 2 * KEEP_ALIVE


async def test_a_request_already_in_h11_earns_one_more_period(
    autojump_clock: trio.testing.MockClock,
    socket_pair: SocketPair,
) -> None:
    ours, _theirs = socket_pair
    server = _Server(ours)
    # The reader took the request from the socket, one turn short of stopping the timer.
    server.protocol.protocol.connection.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    server.protocol.protocol.connection.next_event()
    assert await _closed_after(server) == 2 * KEEP_ALIVE


async def test_the_server_stopping_closes_at_once(
    autojump_clock: trio.testing.MockClock, socket_pair: SocketPair
) -> None:
    ours, _theirs = socket_pair
    server = _Server(ours)
    server.context.terminated.set()
    assert await _closed_after(server) == 0


async def test_a_stopped_timer_closes_nothing(
    autojump_clock: trio.testing.MockClock, socket_pair: SocketPair
) -> None:
    ours, theirs = socket_pair
    await theirs.send_all(b"GET")
    server = _Server(ours)
    with trio.move_on_after(KEEP_ALIVE + 1):  # the reader stopped it while it spared
        await _idle_timeout_unless_readable(server)
    assert server.closed_at is None


def test_the_patch_is_in_place_once() -> None:
    from hypercorn.trio.tcp_server import TCPServer

    spare_connections_with_waiting_requests()
    spare_connections_with_waiting_requests()
    assert TCPServer._idle_timeout is _idle_timeout_unless_readable
