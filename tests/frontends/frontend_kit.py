"""One way to drive either frontend on a fake clock, so each scenario is written once.

A `Kit` hides the event loop: `clock()`, `sleep()`, `hang()`, `event()`, a task
group, and the loop's `LoopParts` and `create_app`. A test writes an
`async def scenario(kit, group)` and runs it with `kit.run(...)`; the same
scenario then runs on both kits, each driving the frontend exactly as its
`server.py` builds it (the runtime built with the package's `PARTS`):

- `trio`: the trio frontend under `trio.testing.MockClock(autojump_threshold=0)`;
- `quart`: the asyncio frontend on a `VirtualTimeLoop`, whose clock jumps, so
  `asyncio.timeout` and the loop's timers run on fake time.

Every clock jumps only when every task is blocked, to the nearest deadline, so
fake time is deterministic and no test waits for real. A scenario that
deadlocks fails after `SCENARIO_LIMIT` fake seconds instead of hanging. Probes
are answered by a `FetchProber` passed to the runtime as its prober.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, NoReturn, Protocol

import httpx
import trio
import trio.testing

from frontends.quart_app import app as quart_app
from frontends.runtime.runtime import LoopParts, Runtime
from frontends.runtime.settings import load_settings
from frontends.trio_app import app as trio_app
from sd_core import HttpRequest, HttpResponse, ProbeResult, RunProbe

SECRET = "frontend-test-secret-6c1f"
READ_TOKEN = "frontend-test-read-token-91ab"
START = 1000.0  # fake monotonic start: not 0, so "time since start" bugs show
WALL_START = 1_700_000_000.0
SCENARIO_LIMIT = 36_000.0  # fake seconds before a stuck scenario fails

# Quiet defaults: instances never expire during a scenario unless a test says so.
BASE_ENV: dict[str, str] = {
    "SERVICE_DISCOVERY_SECRET": SECRET,
    "SERVICE_DISCOVERY_READ_TOKEN": READ_TOKEN,
    "SERVICE_REGISTRATION_TTL_SECONDS": "86400",
    "SERVICE_DISCOVERY_STATE_FILE": "",  # a test that wants one names it
    "HEALTH_CHECK_INTERVAL_SECONDS": "10",
    "HEALTH_CHECK_TIMEOUT_SECONDS": "2",
    "HEALTH_CHECK_FAILURE_THRESHOLD": "2",
    "HEALTH_CHECK_SUCCESS_THRESHOLD": "1",
    # Only the scheduled probes: scenarios count probes per interval (the core's
    # tests cover first-probe retries).
    "HEALTH_CHECK_FIRST_RETRY_SECONDS": "0",
}

Fetch = Callable[[RunProbe], Awaitable[ProbeResult]]
ASGIApp = Callable[..., Awaitable[None]]
#: Two connected trio socket streams, ours and the peer's (the `socket_pair` fixture).
SocketPair = tuple[trio.SocketStream, trio.SocketStream]


class Event(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    async def wait(self) -> object: ...


class Group(Protocol):
    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None: ...


class FetchProber:
    """A prober whose `probe` is the test's `fetch`: the runtime's prober, as in production."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch

    async def probe(self, probe: RunProbe) -> ProbeResult:
        return await self._fetch(probe)

    async def aclose(self) -> None:
        return None


Scenario = Callable[["Kit", Group], Coroutine[Any, Any, None]]


class Kit(Protocol):
    """What a scenario may use; `frontend` is the name `/health` reports."""

    frontend: str
    parts: LoopParts

    def clock(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...
    async def hang(self) -> NoReturn: ...
    def event(self) -> Event: ...
    async def in_thread(self, fn: Callable[[], object]) -> object: ...
    def make_app(self, runtime: Runtime) -> ASGIApp: ...
    def run(self, scenario: Scenario) -> None: ...


@contextlib.contextmanager
def unwrap_single() -> Iterator[None]:
    """Show a scenario's one failure as itself, not inside the task group's ExceptionGroup."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves: list[BaseException] = []

        def collect(error: BaseException) -> None:
            if isinstance(error, BaseExceptionGroup):
                for inner in error.exceptions:
                    collect(inner)
            else:
                leaves.append(error)

        collect(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


# ------------------------------------------------------------------ trio


class _TrioGroup:
    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        self._nursery.start_soon(fn, *args)


class TrioKit:
    """trio with `MockClock(autojump_threshold=0)`: the clock jumps when all tasks block.

    `real_idle` (seconds of real time) delays each jump, for tests that wait on
    a worker thread: fake time must not race ahead while a thread is busy.
    """

    frontend = "trio"
    parts = trio_app.PARTS

    def __init__(self, real_idle: float = 0.0) -> None:
        self.real_idle = real_idle

    def clock(self) -> float:
        return trio.current_time()

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    async def hang(self) -> NoReturn:
        await trio.sleep_forever()

    def event(self) -> Event:
        return trio.Event()

    async def in_thread(self, fn: Callable[[], object]) -> object:
        return await trio.to_thread.run_sync(fn)

    def make_app(self, runtime: Runtime) -> ASGIApp:
        return trio_app.create_app(runtime)

    def run(self, scenario: Scenario) -> None:
        clock = trio.testing.MockClock(autojump_threshold=self.real_idle)
        clock.jump(START)

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                try:
                    with trio.fail_after(SCENARIO_LIMIT):
                        await scenario(self, _TrioGroup(nursery))
                finally:
                    nursery.cancel_scope.cancel()

        with unwrap_single():
            trio.run(main, clock=clock)


# --------------------------------------------------------------- asyncio


class _AsyncioGroup:
    def __init__(self, tasks: asyncio.TaskGroup) -> None:
        self._tasks = tasks
        self.started: list[asyncio.Task[object]] = []

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        async def call() -> object:
            return await fn(*args)

        self.started.append(self._tasks.create_task(call()))

    def cancel_all(self) -> None:
        for task in self.started:
            task.cancel()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose `time()` is virtual and jumps to the next timer when idle.

    `_run_once` asks the selector to wait until the nearest `call_at` timer
    only when no callback is ready, that is when every task is blocked; this
    loop then moves its clock to that timer instead of waiting. So
    `asyncio.sleep` and `asyncio.timeout` run on fake time, which tests the
    code paths the servers run (no injected `sleep`) without real waiting.
    `real_idle` makes it wait that long in real time before each jump.
    """

    def __init__(self, real_idle: float = 0.0) -> None:
        super().__init__()
        self._virtual_now = START
        real = self._selector  # type: ignore[has-type]
        loop = self

        class JumpingSelector:
            def select(self, timeout: float | None = None) -> Any:
                events = real.select(0 if timeout == 0 else real_idle)
                if events or timeout == 0:
                    return events
                if timeout is None:  # no timer at all: only I/O could wake the loop
                    events = real.select(5.0)
                    if not events:
                        raise RuntimeError("every task is blocked and no timer is set")
                    return events
                scheduled = loop._scheduled  # type: ignore[attr-defined]
                loop._virtual_now = max(loop._virtual_now, scheduled[0]._when)
                return events

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        self._selector = JumpingSelector()

    def time(self) -> float:
        return self._virtual_now


class AsyncioKit:
    """The asyncio frontend exactly as `server.py` builds it, on a `VirtualTimeLoop`.

    The driver, watchers and app use `asyncio.timeout` and the loop's timers;
    the runtime's clock is `loop.time`, so every wait runs on fake time.
    `real_idle` (seconds of real time) delays each jump, for tests that wait on
    a worker thread.
    """

    frontend = "quart"
    parts = quart_app.PARTS

    def __init__(self, real_idle: float = 0.0) -> None:
        self.real_idle = real_idle

    def clock(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def hang(self) -> NoReturn:
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")

    def event(self) -> Event:
        return asyncio.Event()

    async def in_thread(self, fn: Callable[[], object]) -> object:
        return await asyncio.to_thread(fn)

    def make_app(self, runtime: Runtime) -> ASGIApp:
        return quart_app.create_app(runtime)

    def run(self, scenario: Scenario) -> None:
        async def main() -> None:
            async with asyncio.TaskGroup() as tasks:
                group = _AsyncioGroup(tasks)
                try:
                    async with asyncio.timeout(SCENARIO_LIMIT) as limit:
                        await scenario(self, group)
                except TimeoutError:
                    if limit.expired():
                        raise AssertionError(f"stuck for {SCENARIO_LIMIT} fake seconds") from None
                    raise
                finally:
                    group.cancel_all()
            for _ in range(10):  # cancelled tasks get a few turns to finish
                await asyncio.sleep(0)
            leftover = asyncio.all_tasks() - {asyncio.current_task()}
            assert not leftover, f"tasks still running after the scenario: {leftover}"

        with (
            unwrap_single(),
            asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(self.real_idle)) as runner,
        ):
            runner.run(main())


KITS: dict[str, Callable[[], Kit]] = {"quart": AsyncioKit, "trio": TrioKit}


# ------------------------------------------------------------- helpers


def make_runtime(kit: Kit, fetch: Fetch | None = None, /, **env: str) -> Runtime:
    """A Runtime built as the kit's server builds it, settings from BASE_ENV plus `env`.

    `fetch`, when given, answers every probe (through a `FetchProber`).
    """
    settings = load_settings({**BASE_ENV, **env})
    prober = FetchProber(fetch) if fetch is not None else None
    return Runtime(
        settings, kit.parts, clock=kit.clock, prober=prober, wall_clock=lambda: WALL_START
    )


def register_body(service: str, instance: str, *, port: int = 8080, **extra: object) -> bytes:
    document: dict[str, object] = {
        "service_name": service,
        "instance_id": instance,
        "host": "127.0.0.1",
        "port": port,
    }
    document.update(extra)
    return json.dumps(document).encode()


def register(
    runtime: Runtime, service: str, instance: str, *, port: int = 8080, **extra: object
) -> None:
    """Register through the runtime's HTTP mapping, as a frontend would."""
    result = runtime.handle(
        HttpRequest(
            "POST",
            "/v1/discovery/register",
            b"",
            f"Bearer {SECRET}",
            "application/json",
            register_body(service, instance, port=port, **extra),
        ),
    )
    assert isinstance(result, HttpResponse), result
    assert result.status == 200, result.body


def status_of(runtime: Runtime, service: str, instance: str) -> str:
    record = runtime.registry.instance_snapshot(service, instance)
    assert record is not None, f"{service}:{instance} is gone"
    return str(record.status)


def unregister(runtime: Runtime, service: str, instance: str) -> None:
    result = runtime.handle(
        HttpRequest(
            "DELETE",
            f"/v1/discovery/unregister/{service}/{instance}",
            b"",
            f"Bearer {SECRET}",
            None,
            b"",
        ),
    )
    assert isinstance(result, HttpResponse), result
    assert result.status == 200, result.body


@contextlib.asynccontextmanager
async def http_client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling the ASGI app in process, on whichever loop is running."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as client:
        yield client
