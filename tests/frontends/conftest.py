"""Fixtures of every frontend test: a private home, and `make_kit` once per frontend."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trio
from frontend_kit import KITS, Kit, SocketPair


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings default a state file under the user's home: never the real one in tests."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)


@pytest.fixture(params=list(KITS.values()), ids=list(KITS))
def make_kit(request: pytest.FixtureRequest) -> Callable[[], Kit]:
    """Each test that takes a kit runs on both: trio, and quart on asyncio. A test that
    needs other kits parametrizes `make_kit` itself, which overrides this."""
    make: Callable[[], Kit] = request.param
    return make


@pytest.fixture
async def socket_pair() -> AsyncIterator[SocketPair]:
    """Two connected trio socket streams (ours, theirs), closed after the test."""
    ours, theirs = trio.socket.socketpair()
    async with trio.SocketStream(ours) as mine, trio.SocketStream(theirs) as peer:
        yield mine, peer


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback port that accepts connections (the backlog takes them; nobody reads)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]
