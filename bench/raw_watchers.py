"""Many watchers on raw connections, and one timed change: what the watch benches share.

`bench.watch_fanout` parks blocking queries and `bench.watch_streams` opens
watch streams; both open thousands of connections from one process (a raw
asyncio protocol each: a client library would cost more than the server),
then send one change and time how long until the last watcher has it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .common import AUTH, BenchError
from .http_client import Conn, http_get, post_all, register_body, run_async
from .processes import Proc


class Fleet:
    """The counts of one run's watchers; a subclass sets its events in `update`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lost = 0  # connections the server closed before the change reached them

    def update(self) -> None:
        raise NotImplementedError


F = TypeVar("F", bound=Fleet)
P = TypeVar("P", bound="OneRequest[Any]")


class OneRequest(asyncio.Protocol, Generic[F]):
    """A connection that sends one request as soon as it is open; a subclass reads the answer."""

    def __init__(self, request: bytes, fleet: F) -> None:
        self._request = request
        self._fleet = fleet
        self.transport: asyncio.Transport | None = None

    def has_change(self) -> bool:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        """Closed by the server before the change: done, but counted as lost."""
        if not self.has_change():
            self._fleet.lost += 1
            self._fleet.update()


def get_request(path: str, port: int) -> bytes:
    """An authorised keep-alive `GET path`, as bytes to write on a raw connection."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {AUTH}\r\n\r\n"
    ).encode()


async def connect_all(
    port: int, count: int, make: Callable[[], P], into: list[P], parallel: int = 200
) -> None:
    """Open `count` connections, `parallel` at a time; each joins `into` once open, so
    that `close_all(into)` closes every one that was, even if a later one failed."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(parallel)

    async def connect() -> None:
        async with gate:
            protocol = make()
            await loop.create_connection(lambda: protocol, "127.0.0.1", port)
            into.append(protocol)

    async with asyncio.TaskGroup() as group:
        for _ in range(count):
            group.create_task(connect())


def close_all(protocols: Iterable[OneRequest[Any]]) -> None:
    for protocol in protocols:
        if protocol.transport is not None:
            protocol.transport.close()


def seed_service(proc: Proc, service: str) -> None:
    """One instance in `service`, and its read path warmed, before the RSS baseline."""
    first = register_body(service, "i-0", 9)
    run_async(post_all(proc.port, "/v1/discovery/register", [first], connections=1, depth=1))
    for _ in range(50):
        http_get(proc.port, f"/v1/discovery/services/{service}", auth=True)


@dataclass(frozen=True)
class Change:
    """When the change was sent, and the server's CPU until every watcher had it."""

    sent_at: float  # perf_counter
    cpu_s: float
    waited_s: float  # meanwhile, time the server was runnable but another job had the CPU


async def timed_change(
    proc: Proc,
    trigger: tuple[str, bytes],
    everyone: asyncio.Event,
    *,
    what: str,
    missing: Callable[[], str],
) -> Change:
    """POST `trigger` (path, body) and wait up to 60 s until `everyone` is set.

    `what` names the trigger in an error; `missing()` says who lacks the change.
    """
    conn = await Conn.open(proc.port)
    try:
        path, body = trigger
        cpu0, wait0 = proc.cpu_seconds(), proc.runqueue_seconds()
        sent_at = time.perf_counter()
        answer = await conn.request("POST", path, body)
        if answer.status != 200:
            raise BenchError(f"{what}: {answer.status} {answer.body[:200]!r}")
        try:
            await asyncio.wait_for(everyone.wait(), 60)
        except TimeoutError:
            raise BenchError(missing()) from None
        return Change(sent_at, proc.cpu_seconds() - cpu0, proc.runqueue_seconds() - wait0)
    finally:
        await conn.close()
