"""uvicorn's wait for a client that never reads ends at the write deadline.

`frontends/servers/uvicorn/http1.py` (`BoundedFlowControl`) says why; these
drive it over a real socket pair on asyncio, with the deadline shortened.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.config import Config
from uvicorn.server import ServerState

from frontends.runtime.settings import load_settings
from frontends.servers.uvicorn.http1 import BoundedFlowControl, Http1OnlyProtocol
from frontends.servers.uvicorn.server import connection_protocol


class _Lost(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost = asyncio.Event()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


async def _flow_over_a_socket_pair(
    write_seconds: float,
) -> tuple[BoundedFlowControl, _Lost, socket.socket]:
    ours, theirs = socket.socketpair()
    protocol = _Lost()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, ours)
    return BoundedFlowControl(transport, write_seconds), protocol, theirs  # type: ignore[arg-type]


def test_a_reader_that_never_reads_is_cut_off_at_the_deadline() -> None:
    async def scenario() -> None:
        flow, protocol, theirs = await _flow_over_a_socket_pair(0.05)
        with theirs:
            flow.pause_writing()  # what the transport does once its buffer is full
            await asyncio.wait_for(flow.drain(), 5)
            assert protocol.lost.is_set(), "the connection was not aborted"

    asyncio.run(scenario())


def test_a_reader_that_catches_up_in_time_keeps_its_connection() -> None:
    async def scenario() -> None:
        flow, protocol, theirs = await _flow_over_a_socket_pair(5.0)
        with theirs:
            flow.pause_writing()
            asyncio.get_running_loop().call_soon(flow.resume_writing)
            await flow.drain()
            await asyncio.sleep(0)
            assert not protocol.lost.is_set()
            flow._transport.close()

    asyncio.run(scenario())


def test_the_protocol_uses_the_bounded_flow_control_at_the_setting() -> None:
    """`SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS` reaches each connection's flow control."""
    settings = load_settings(
        {
            "SERVICE_DISCOVERY_SECRET": "s",
            "SERVICE_DISCOVERY_STATE_FILE": "",
            "SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS": "0.05",
        }
    )

    async def scenario() -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            loop = asyncio.get_running_loop()
            config = Config(app=None, http=Http1OnlyProtocol)  # type: ignore[arg-type]
            config.load()  # type: ignore[no-untyped-call]
            make = connection_protocol(settings)
            protocol = make(config=config, server_state=ServerState(), app_state={})
            lost = asyncio.Event()
            connection_lost = protocol.connection_lost

            def record_loss(exc: Exception | None) -> None:
                connection_lost(exc)
                lost.set()

            protocol.connection_lost = record_loss  # type: ignore[method-assign]
            await loop.connect_accepted_socket(lambda: protocol, ours)
            assert isinstance(protocol.flow, BoundedFlowControl)
            protocol.flow.pause_writing()  # a full buffer: the reader is behind
            await asyncio.wait_for(protocol.flow.drain(), 5)  # (the default would take 10 s)
            await asyncio.wait_for(lost.wait(), 5)

    asyncio.run(scenario())
