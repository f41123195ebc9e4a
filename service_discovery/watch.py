"""Following a service through the registry's blocking queries.

Consul's model: each query carries the last index seen and the registry holds
it until the service's index moves past it (or the wait runs out), so a
change arrives as soon as it happens and an idle service costs one held
request per wait. The loop here only decides what to ask next, what to yield
and how to wait after an error; the request itself is a parameter.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable

from .backoff import Backoff, FailureLog
from .errors import RegistryUnavailableError
from .heartbeat import ClockFn, SleepFn
from .models import ServiceInstanceList

__all__ = ["watch_instances"]

logger = logging.getLogger("service_discovery.watch")

POLL_WITHOUT_INDEX = 10.0
"""Seconds between polls of a registry that sends no index (so cannot block)."""


async def watch_instances(
    fetch: Callable[[int], Awaitable[ServiceInstanceList]],
    *,
    what: str,
    wait_seconds: float,
    sleep: SleepFn,
    clock: ClockFn,
    backoff: Backoff,
    rng: random.Random,
) -> AsyncGenerator[ServiceInstanceList, None]:
    """Yield the first answer and then every answer whose index moved.

    ``fetch(index)`` runs one blocking query. An index lower than the last
    one (the registry restarted and counts from 1 again) starts over from 0.
    :class:`RegistryUnavailableError` is retried after a backoff and logged
    quietly; any other error propagates, since retrying cannot fix it.
    """
    failures = FailureLog(logger, f"Watching {what}", clock=clock)
    index = 0
    while True:
        try:
            instances = await fetch(index)
        except RegistryUnavailableError as exc:
            failures.failure(exc)
            await sleep(backoff.delay(failures.failures, rng))
            continue
        failures.success()
        new_index = instances.discovery_index
        if new_index is None:
            yield instances
            await sleep(min(wait_seconds, POLL_WITHOUT_INDEX))
        elif new_index < index:
            logger.info(
                "Discovery index of %s went back from %d to %d (the registry restarted); "
                "watching again from 0",
                what,
                index,
                new_index,
            )
            index = 0
        elif new_index != index:
            index = new_index
            yield instances
