"""The heartbeat loop, and running it in the background on asyncio or in a task group.

The loop is written against anyio primitives only, so the same code runs on
asyncio and on trio. Its sleeping is a parameter, so tests drive it with a fake
clock instead of waiting.

What it guarantees:

* an instance that is not registered yet (the registry was down when the
  service started) is registered at once, and retried with the backoff below
  until it is, instead of waiting a whole interval for the first try;
* a heartbeat answered ``404`` (the registry restarted, or our TTL ran out)
  registers again at once, without waiting for the next interval;
* any other failure is retried after a capped, jittered exponential backoff
  (never faster than ``Backoff.initial / 2``, never slower than the interval);
* no exception escapes: the loop only ends by cancellation;
* a streak of failures logs one warning, then one per minute, not one per try.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio

from .backoff import Backoff, FailureLog
from .errors import NotFoundError

__all__ = ["BackgroundHeartbeat", "TaskStarter", "heartbeat_forever"]

logger = logging.getLogger("service_discovery.heartbeat")

SleepFn = Callable[[float], Awaitable[Any]]
ClockFn = Callable[[], float]


class TaskStarter(Protocol):
    """Anything with ``start_soon``: an anyio ``TaskGroup`` or a trio ``Nursery``."""

    def start_soon(self, func: Callable[[], Awaitable[Any]], /) -> Any: ...


async def heartbeat_forever(
    send_heartbeat: Callable[[], Awaitable[object]],
    register: Callable[[], Awaitable[object]],
    *,
    interval: Callable[[], float],
    registered: bool = True,
    sleep: SleepFn,
    clock: ClockFn,
    backoff: Backoff,
    rng: random.Random,
) -> None:
    """Send a heartbeat every ``interval`` seconds until cancelled.

    ``send_heartbeat`` raises :class:`~service_discovery.NotFoundError` when
    the registry does not know the instance; ``register`` registers it again.
    Registration counts as the first heartbeat, so the loop sleeps first;
    with ``registered=False`` (the first registration failed) it registers
    first, and sleeps only after that worked. ``interval()`` is read every
    round, so a period shortened to fit the registry's TTL applies at once.
    """
    failures = FailureLog(logger, "Heartbeat to the service registry", clock=clock)
    must_register = not registered
    while True:
        period = interval()
        if failures.failures:
            await sleep(backoff.delay(failures.failures, rng, cap=period))
        elif not must_register:
            await sleep(period)
        try:
            if not must_register:
                try:
                    await send_heartbeat()
                except NotFoundError:
                    logger.info(
                        "The registry does not know this instance (it restarted, or the "
                        "registration expired); registering again"
                    )
                    must_register = True
            if must_register:
                await register()
                must_register = False
        except Exception as exc:
            # Anything, including a bug in a user-supplied transport: the loop
            # must survive it, retry later, and say so in the log.
            failures.failure(exc)
        else:
            failures.success()


class BackgroundHeartbeat:
    """One heartbeat loop started in the background, and the means to stop it.

    The loop runs inside a cancel scope created here, so :meth:`stop` works the
    same whether the loop is an asyncio task of ours or a task in the caller's
    task group or nursery.
    """

    def __init__(self, run: Callable[[], Awaitable[None]]) -> None:
        self._run = run
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """True until the loop has finished (after :meth:`stop`, or its task group ended)."""
        return not self._done.is_set()

    async def run(self) -> None:
        """The loop inside our cancel scope; what the task (or task group) runs."""
        try:
            with self._scope:
                await self._run()
        finally:
            self._done.set()

    def start_asyncio_task(self) -> None:
        """Start as a task of the running asyncio loop (we keep the reference)."""
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self.run(), name="service-discovery-heartbeat")

    def start_in(self, task_group: TaskStarter) -> None:
        """Start in the caller's task group or nursery (any event loop)."""
        task_group.start_soon(self.run)

    async def stop(self) -> None:
        """Cancel the loop and wait until it has finished."""
        self._scope.cancel()
        if self._task is not None:
            # Waiting on the task, not the event, also covers a task cancelled
            # before it ever ran (then the event is never set).
            await asyncio.wait({self._task})
        else:
            await self._done.wait()
