"""Hypercorn 0.18 holds a connection the client closed: give its fd back at once.

The behaviour (both workers, `asyncio/tcp_server.py` and `trio/tcp_server.py`):
`TCPServer.run` opens a task group, starts the keep-alive idle task in it
(`_idle_timeout`: sleep `keep_alive_timeout`, then close), and reads in
`_read_data`. When the client closes, `_read_data` does see the end of the
stream (`read()` returns `b""`, h11 reports `ConnectionClosed`), hands
`Closed()` to the protocol and returns; but an idle connection has no stream
for `Closed()` to end, so nothing stops the idle task, and the socket is only
closed in `run`'s `finally`, after the task group has waited for every task
in it, the idle sleep included. So a connection the client closed between
requests (or before its first one, as a load balancer's TCP check does) sits
in CLOSE-WAIT, holding its fd, for the whole `keep_alive_timeout`: N closed
connections a second held N x that many fds (found by the soak,
`tests/soak/test_connection_release.py`).

The fix: once `_read_data` has returned, nothing more will be read, so the
idle timer has nothing left to guard; stop it, and the task group ends as soon
as the app (if one is still running, it has been sent `http.disconnect`) does.
uvicorn needs nothing of the kind: it closes on the end of the stream at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from hypercorn.asyncio.tcp_server import TCPServer as AsyncioTCPServer
from hypercorn.trio.tcp_server import TCPServer as TrioTCPServer

_PATCHED = "_sd_releases_closed_connections"


class _SingleTask(Protocol):
    async def stop(self) -> None: ...


class _Server(Protocol):
    idle_task: _SingleTask


def _stop_idle_timer_after_reading(
    read_data: Callable[[Any], Awaitable[None]],
) -> Callable[[Any], Awaitable[None]]:
    async def _read_data(self: _Server) -> None:
        await read_data(self)
        # The client closed (or reading failed): no keep-alive left to time.
        await self.idle_task.stop()

    setattr(_read_data, _PATCHED, True)
    return _read_data


def release_closed_connections() -> None:
    """Patch both hypercorn workers to close a client-closed connection at once (idempotent).

    Fails loudly if a hypercorn upgrade renamed what this relies on, rather
    than silently holding fds again; the soak test pins the behaviour.
    """
    for server in (AsyncioTCPServer, TrioTCPServer):
        read_data = getattr(server, "_read_data", None)
        if read_data is None or not hasattr(server, "_idle_timeout"):
            raise RuntimeError(
                f"hypercorn's {server.__module__}.TCPServer has no _read_data/_idle_timeout "
                "any more: re-check how it closes a connection the client closed"
            )
        if not getattr(read_data, _PATCHED, False):
            server._read_data = _stop_idle_timer_after_reading(read_data)  # type: ignore[method-assign, assignment]
