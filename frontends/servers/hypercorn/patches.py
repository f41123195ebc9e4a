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

A second patch, trio worker only: hypercorn restarts the keep-alive timer
after every response with `nursery.start`, which holds the response's task
until the new timer task has run once (one more loop turn per response).
`_restart_idle_timer` starts it with `start_soon` in a cancel scope made
first; cancelling that scope before the task runs stops it just the same.
With 19,900 watchers answered at once on trio this took the wake from about
11.7 s to 10.0-10.3 s and the health checks' p99 from 83-89 ms to 60-74 ms
(`python -m tests.soak.harness.parked_wake --frontend trio`, two runs each,
alternated).
`tests/reliability/test_reliability_keep_alive.py` pins the timer's behaviour.

A third, trio worker only: the keep-alive timer also runs from the accept to
the first request, and when the process was starved of CPU past
`keep_alive_timeout` (a load average of 10 on 2 cores, 10,000 watchers
connecting), trio may run the expired timer before the reader that has the
request waiting in the socket, and the timer closes a connection whose client
did everything right (`bench.watch_streams` saw 41 and 153 of 10,000 streams
closed so, on trio only: asyncio runs I/O callbacks before expired timers).
`_idle_timeout_unless_readable` looks first: if the client's bytes wait in the
socket or in h11's buffer, the reader is due, so the timer grants one more period;
a second expiry closes even so, so a client cannot hold a connection by
trickling bytes (the reader consumes bytes within a loop turn; only a starved
process finds them still waiting).

Upstream: the first two have no known report, drafted in docs/upstream.md ("A
connection the client closed is held...", "trio: restart the keep-alive timer...");
the third is related to pgjones/hypercorn#235, drafted there too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import h11
import trio
from hypercorn.asyncio.tcp_server import TCPServer as AsyncioTCPServer
from hypercorn.trio.tcp_server import TCPServer as TrioTCPServer
from hypercorn.trio.worker_context import TrioSingleTask

from frontends.servers.sockets import bytes_waiting

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


def restart_idle_timers_at_once() -> None:
    """Patch the trio worker's keep-alive timer restart (idempotent; see the module docstring).

    Fails loudly if a hypercorn upgrade changed the timer's shape, rather than
    patching something else.
    """
    if not hasattr(TrioSingleTask, "restart") or "_handle" not in vars(TrioSingleTask()):
        raise RuntimeError(
            "hypercorn's trio TrioSingleTask changed: re-check how it restarts the idle timer"
        )
    if not getattr(TrioSingleTask.restart, _PATCHED, False):
        TrioSingleTask.restart = _restart_idle_timer  # type: ignore[method-assign]


async def _restart_idle_timer(
    self: Any, task_group: Any, action: Callable[[], Awaitable[None]]
) -> None:
    """Restart a connection's keep-alive timer without waiting for it to start.

    Hypercorn's trio worker does it with `nursery.start` after every response,
    which holds the response's task until the new timer task has run once.
    """
    handle = self._handle
    if handle is not None:
        handle.cancel()
    scope = trio.CancelScope()
    self._handle = scope
    task_group._nursery.start_soon(_in_scope, scope, action)


setattr(_restart_idle_timer, _PATCHED, True)


async def _in_scope(scope: trio.CancelScope, action: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await action()


def spare_connections_with_waiting_requests() -> None:
    """Patch the trio worker's keep-alive timer to spare a connection whose bytes wait unread.

    Idempotent; fails loudly if a hypercorn upgrade changed the timer's shape.
    """
    idle_timeout = getattr(TrioTCPServer, "_idle_timeout", None)
    if idle_timeout is None or not hasattr(TrioTCPServer, "_initiate_server_close"):
        raise RuntimeError(
            "hypercorn's trio TCPServer changed: re-check how its keep-alive timer closes"
        )
    if not getattr(idle_timeout, _PATCHED, False):
        TrioTCPServer._idle_timeout = _idle_timeout_unless_readable  # type: ignore[method-assign]


async def _idle_timeout_unless_readable(self: Any) -> None:
    """Hypercorn's keep-alive timer, granting one more period when the client has spoken."""
    spared = False
    while True:
        with trio.move_on_after(self.config.keep_alive_timeout):
            await self.context.terminated.wait()
            break  # the server is stopping: close now
        if spared or not client_has_spoken(self):
            break
        spared = True
    with trio.CancelScope(shield=True):
        await self._initiate_server_close()


setattr(_idle_timeout_unless_readable, _PATCHED, True)


def client_has_spoken(server: Any) -> bool:
    """Whether bytes of the client's wait unread, in the socket or in h11's buffer.

    Both places count: the reader may have taken the request from the socket
    and be one loop turn short of stopping the timer. A TLS stream has no
    `socket` of its own, and a hypercorn without these attributes reads as
    silent: the timer then closes as hypercorn's own does.
    """
    connection = getattr(getattr(server, "protocol", None), "protocol", None)
    h11_connection = getattr(connection, "connection", None)
    if isinstance(h11_connection, h11.Connection) and (
        h11_connection.their_state is not h11.IDLE or h11_connection.trailing_data[0]
    ):
        return True
    sock = getattr(server.stream, "socket", None)
    return sock is not None and bytes_waiting(sock.fileno())
