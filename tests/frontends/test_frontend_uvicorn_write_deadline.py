"""uvicorn's wait for a client that never reads ends at the write deadline.

`frontends/servers/uvicorn/http1.py` (`BoundedFlowControl`) says why; these
drive it over a real socket pair on asyncio, with the deadline shortened.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from frontends.servers.hypercorn import write_deadline
from frontends.servers.uvicorn.http1 import BoundedFlowControl, Http1OnlyProtocol


class _Lost(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost = asyncio.Event()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


async def _flow_over_a_socket_pair() -> tuple[BoundedFlowControl, _Lost, socket.socket]:
    ours, theirs = socket.socketpair()
    protocol = _Lost()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, ours)
    return BoundedFlowControl(transport), protocol, theirs  # type: ignore[arg-type]


def test_a_reader_that_never_reads_is_cut_off_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(write_deadline, "WRITE_TIMEOUT_SECONDS", 0.05)

    async def scenario() -> None:
        flow, protocol, theirs = await _flow_over_a_socket_pair()
        with theirs:
            flow.pause_writing()  # what the transport does once its buffer is full
            await asyncio.wait_for(flow.drain(), 5)
            assert protocol.lost.is_set(), "the connection was not aborted"

    asyncio.run(scenario())


def test_a_reader_that_catches_up_in_time_keeps_its_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(write_deadline, "WRITE_TIMEOUT_SECONDS", 5.0)

    async def scenario() -> None:
        flow, protocol, theirs = await _flow_over_a_socket_pair()
        with theirs:
            flow.pause_writing()
            asyncio.get_running_loop().call_soon(flow.resume_writing)
            await flow.drain()
            await asyncio.sleep(0)
            assert not protocol.lost.is_set()
            flow._transport.close()

    asyncio.run(scenario())


def test_the_protocol_uses_the_bounded_flow_control() -> None:
    async def scenario() -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            loop = asyncio.get_running_loop()
            from uvicorn.config import Config
            from uvicorn.server import ServerState

            config = Config(app=None, http=Http1OnlyProtocol)  # type: ignore[arg-type]
            config.load()  # type: ignore[no-untyped-call]
            protocol = Http1OnlyProtocol(config=config, server_state=ServerState(), app_state={})
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, ours)
            assert isinstance(protocol.flow, BoundedFlowControl)
            transport.close()

    asyncio.run(scenario())
