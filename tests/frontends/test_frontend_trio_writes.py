"""The trio worker's writes: straight to the socket when it has room, under a deadline when not.

`frontends/servers/hypercorn/write_deadline.py` (`bound_trio_writes`) says why; these run
hypercorn's patched `protocol_send` against a stand-in for its trio `TCPServer`
over a real socket pair, on trio's mock clock so that the deadline is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
from frontend_kit import SocketPair
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.tcp_server import TCPServer

from frontends.runtime.settings import load_settings
from frontends.servers.hypercorn.config import ServerConfig, hypercorn_config
from frontends.servers.hypercorn.write_deadline import WRITE_TIMEOUT_SECONDS, bound_trio_writes


@dataclass
class _Protocol:
    events: list[Event] = field(default_factory=list)

    async def handle(self, event: Event) -> None:
        self.events.append(event)


@dataclass
class _Server:
    """What the patched write reads of hypercorn's trio `TCPServer`."""

    stream: trio.SocketStream
    send_lock: trio.Lock = field(default_factory=trio.Lock)
    protocol: _Protocol = field(default_factory=_Protocol)
    config: ServerConfig = field(default_factory=ServerConfig)


async def _send(server: _Server, data: bytes) -> None:
    bound_trio_writes()
    await TCPServer.protocol_send(server, RawData(data))  # type: ignore[arg-type]


async def test_a_write_with_room_reaches_the_reader_at_once(socket_pair: SocketPair) -> None:
    ours, theirs = socket_pair
    server = _Server(ours)
    await _send(server, b"event: 1\n\n")
    assert await theirs.receive_some(100) == b"event: 1\n\n"
    assert server.protocol.events == []


async def test_a_write_with_room_takes_no_deadline(
    monkeypatch: pytest.MonkeyPatch, socket_pair: SocketPair
) -> None:
    """The fast path: no `send_all` (and so no cancel scope) for what the socket takes."""
    ours, theirs = socket_pair

    async def slow_path(data: object) -> None:
        raise AssertionError("a write the socket had room for went the slow way")

    monkeypatch.setattr(ours, "send_all", slow_path)
    await _send(_Server(ours), b"event: 2\n\n")
    assert await theirs.receive_some(100) == b"event: 2\n\n"


async def test_what_does_not_fit_is_sent_once_the_reader_reads(socket_pair: SocketPair) -> None:
    ours, theirs = socket_pair
    server = _Server(ours)
    data = bytes(range(256)) * 40_000  # 10 MB: far more than the socket buffers hold
    received = bytearray()

    async def read_all() -> None:
        while len(received) < len(data):
            received.extend(await theirs.receive_some(1 << 16))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await _send(server, data)
    assert bytes(received) == data
    assert server.protocol.events == []


@pytest.mark.parametrize("setting", [None, "2.5"])
async def test_a_reader_that_never_reads_is_cut_off_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
    socket_pair: SocketPair,
    setting: str | None,
) -> None:
    """At `SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS`, carried by the server's config."""
    env = {"SERVICE_DISCOVERY_SECRET": "s", "SERVICE_DISCOVERY_STATE_FILE": ""}
    if setting is not None:
        env["SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS"] = setting
    ours, _theirs = socket_pair
    server = _Server(ours, config=hypercorn_config(load_settings(env)))
    started = trio.current_time()
    await _send(server, b"x" * 10_000_000)
    expected = WRITE_TIMEOUT_SECONDS if setting is None else float(setting)
    assert trio.current_time() - started == pytest.approx(expected)
    assert [type(e) for e in server.protocol.events] == [Closed]


async def test_a_write_to_a_closed_connection_reports_it_closed(socket_pair: SocketPair) -> None:
    ours, theirs = socket_pair
    await theirs.aclose()
    server = _Server(ours)
    for _ in range(3):  # the first write may still be taken before the reset is seen
        await _send(server, b"late")
    assert Closed in [type(e) for e in server.protocol.events]
