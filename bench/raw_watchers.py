"""Many watchers on raw connections, and one timed change: what the watch benches share.

`bench.watch_fanout` parks blocking queries and `bench.watch_streams` opens
watch streams; both open thousands of connections from one process (a raw
asyncio protocol each: a client library would cost more than the server),
then send one change and time how long until the last watcher has it.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

from .common import AUTH, BenchError
from .http_client import Conn, http_get, post_all, register_body, run_async
from .processes import Proc

P = TypeVar("P", bound="OneRequest[Any]")
F = TypeVar("F", bound="Fleet[Any]")


@dataclass(frozen=True)
class Opened:
    """A fleet of watchers, all open: how long that took, and what each costs the server."""

    ready_s: float
    kib_each: float  # the server's RSS growth per watcher


@dataclass(frozen=True)
class Change:
    """When the change was sent, and the server's CPU until every watcher had it."""

    sent_at: float  # perf_counter
    cpu_s: float
    waited_s: float  # meanwhile, time the server was runnable but another job had the CPU


class Fleet(ABC, Generic[P]):
    """One run's watchers and their counts; a subclass sets its events in `update`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.members: list[P] = []  # each joins once its connection is open
        self.lost = 0  # connections the server closed before the change reached them
        self.everyone = asyncio.Event()  # set by `update` once every watcher had the change

    @abstractmethod
    def update(self) -> None:
        """Count what the watchers received; set `everyone` once each had the change."""

    async def open(
        self,
        proc: Proc,
        make: Callable[[], P],
        until_ready: Callable[[], Awaitable[None]],
        settle: float,
        parallel: int = 200,
    ) -> Opened:
        """Open `size` watchers (`parallel` connecting at a time), wait until `until_ready()`
        says all are in place, then `settle` seconds before the server's RSS is read."""
        rss_before = proc.rss_kib()
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(parallel)

        async def connect() -> None:
            async with gate:
                protocol = make()
                await loop.create_connection(lambda: protocol, "127.0.0.1", proc.port)
                self.members.append(protocol)

        async with asyncio.TaskGroup() as group:
            for _ in range(self.size):
                group.create_task(connect())
        await until_ready()
        ready_s = time.perf_counter() - started
        await asyncio.sleep(settle)
        return Opened(ready_s, (proc.rss_kib() - rss_before) / self.size)

    async def change(
        self, proc: Proc, trigger: tuple[str, bytes], *, what: str, missing: Callable[[], str]
    ) -> Change:
        """POST `trigger` (path, body) and wait up to 60 s until every watcher had it.

        `what` names the trigger in an error; `missing()` says who lacks the change.
        """
        conn = await Conn.open(proc.port)
        try:
            path, body = trigger
            cpu0, wait0 = proc.cpu_seconds(), proc.runqueue_seconds()
            sent_at = time.perf_counter()
            (await conn.request("POST", path, body)).ok(what)
            try:
                await asyncio.wait_for(self.everyone.wait(), 60)
            except TimeoutError:
                raise BenchError(missing()) from None
            return Change(sent_at, proc.cpu_seconds() - cpu0, proc.runqueue_seconds() - wait0)
        finally:
            await conn.close()

    def close(self) -> None:
        """Close every connection that was opened (even if a later one failed)."""
        for protocol in self.members:
            if protocol.transport is not None:
                protocol.transport.close()


class OneRequest(asyncio.Protocol, Generic[F]):
    """A connection that sends one request as soon as it is open; a subclass reads the answer."""

    def __init__(self, request: bytes, fleet: F) -> None:
        self._request = request
        self._fleet = fleet
        self.transport: asyncio.Transport | None = None
        self.changed_at: float | None = None  # perf_counter when the change arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        """Closed by the server before the change: done, but counted as lost."""
        if self.changed_at is None:
            self._fleet.lost += 1
            self._fleet.update()


def get_request(path: str, port: int) -> bytes:
    """An authorised keep-alive `GET path`, as bytes to write on a raw connection."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {AUTH}\r\n\r\n"
    ).encode()


def seed_service(proc: Proc, service: str) -> None:
    """One instance in `service`, and its read path warmed, before the RSS baseline."""
    first = register_body(service, "i-0", 9)
    run_async(post_all(proc.port, "/v1/discovery/register", [first], connections=1, depth=1))
    for _ in range(50):
        http_get(proc.port, f"/v1/discovery/services/{service}", auth=True)


@dataclass(frozen=True)
class Figures:
    """One run's figures, whatever the watchers were (a subclass adds its own)."""

    fanout_s: float  # from the change until the last watcher had it
    median_s: float
    kib_each: float  # the server's RSS growth per watcher
    ready_s: float  # to open them all
    cpu_s: float  # the server's, from the change until the last watcher had it
    waited_s: float  # meanwhile, time the server was runnable but another job had the CPU

    def describe(self) -> str:
        """The run in one line, for the log."""
        return (
            f"all had the change {self.fanout_s:.3f}s after it (server CPU {self.cpu_s:.3f}s, "
            f"waited {self.waited_s:.3f}s), {self.kib_each:.1f} KiB each (open in "
            f"{self.ready_s:.1f}s)"
        )

    @classmethod
    def of(cls, opened: Opened, change: Change, arrived: Iterable[float], **more: Any) -> Self:
        """From the fleet, the change, and when each watcher had it (perf_counter)."""
        times = sorted(at - change.sent_at for at in arrived)
        if not times:
            raise BenchError("no watcher had the change")
        return cls(
            fanout_s=times[-1],
            median_s=times[len(times) // 2],
            kib_each=opened.kib_each,
            ready_s=opened.ready_s,
            cpu_s=change.cpu_s,
            waited_s=change.waited_s,
            **more,
        )
