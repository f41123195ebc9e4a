"""Following a service through the registry's blocking queries.

Consul's model: each query carries the last index seen and the registry holds
it until the service's index moves past it (or the wait runs out), so a
change arrives as soon as it happens and an idle service costs one held
request per wait. The loop here only decides what to ask next, what to yield
and how to wait after an error; the request itself is a parameter.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar
from urllib.parse import urlencode

import httpx

from .backoff import Backoff, FailureLog
from .errors import RegistryUnavailableError, error_from_response
from .exchange import attempt_timeout
from .heartbeat import ClockFn, SleepFn
from .registry_http import RegistryHTTP, json_or_none

__all__ = ["StreamUnsupported", "parse_events", "watch_instances", "watch_stream"]

logger = logging.getLogger("service_discovery.watch")


class Indexed(Protocol):
    """An answer that carries the registry's ``X-Discovery-Index`` (None: it sent none)."""

    @property
    def discovery_index(self) -> int | None: ...


AnswerT = TypeVar("AnswerT", bound=Indexed)


@dataclass(frozen=True, slots=True)
class Retrying:
    """How a watch waits after a failure: the client's sleep, clock, backoff and randomness.

    One value, so every watch loop of a client paces its retries alike and
    tests swap all four at once.
    """

    sleep: SleepFn
    clock: ClockFn
    backoff: Backoff
    rng: random.Random

    async def pause(self, failures: FailureLog) -> None:
        """Sleep the jittered backoff after `failures.failures` failures in a row."""
        await self.sleep(self.backoff.delay(failures.failures, self.rng))


POLL_WITHOUT_INDEX = 10.0
"""Seconds between polls of a registry that sends no index (so cannot block)."""


async def watch_instances(
    fetch: Callable[[int], Awaitable[AnswerT]],
    *,
    what: str,
    wait_seconds: float,
    retrying: Retrying,
) -> AsyncGenerator[AnswerT, None]:
    """Yield the first answer and then every answer whose index moved.

    ``fetch(index)`` runs one blocking query. An index lower than the last
    one (the registry restarted and counts from 1 again) starts over from 0.
    :class:`RegistryUnavailableError` is retried after a backoff and logged
    quietly; any other error propagates, since retrying cannot fix it.
    """
    failures = FailureLog(logger, f"Watching {what}", clock=retrying.clock)
    index = 0
    while True:
        try:
            instances = await fetch(index)
        except RegistryUnavailableError as exc:
            failures.failure(exc)
            await retrying.pause(failures)
            continue
        failures.success()
        new_index = instances.discovery_index
        if new_index is None:
            yield instances
            await retrying.sleep(min(wait_seconds, POLL_WITHOUT_INDEX))
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


# ------------------------------------------------------------ streaming


class StreamUnsupported(Exception):
    """The registry has no `GET /v1/discovery/watch` (404): use blocking queries instead."""


#: One service's state from a watch stream: (service name, index, instances).
ServiceState = tuple[str, int, list[dict[str, object]]]

# Connects from an SSE id (None: from the start) and yields the stream's lines.
Connect = Callable[[str | None], AsyncIterator[str]]


async def parse_events(lines: AsyncIterator[str]) -> AsyncGenerator[tuple[str | None, str], None]:
    """(id, data) of each SSE event with data; comments and `retry:` are skipped."""
    data: list[str] = []
    event_id: str | None = None
    async for line in lines:
        if not line:
            if data:
                yield event_id, "\n".join(data)
            data, event_id = [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


async def watch_stream(
    connect: Connect,
    *,
    what: str,
    retrying: Retrying,
) -> AsyncGenerator[ServiceState, None]:
    """Yield every service state the registry's watch stream sends, across reconnects.

    Each reconnect sends `Last-Event-ID` (the last complete id), so the
    registry replays exactly the services that changed meanwhile: nothing is
    missed. Reconnects wait a jittered backoff (even after a clean end, as at
    a registry's shutdown), so a restarted registry is not hit by every
    client at once. :class:`StreamUnsupported` propagates (the caller falls
    back); other errors than :class:`RegistryUnavailableError` propagate too.
    """
    failures = FailureLog(logger, f"Watching {what}", clock=retrying.clock)
    last_id: str | None = None
    while True:
        try:
            async for event_id, data in parse_events(connect(last_id)):
                failures.success()
                document = json.loads(data)
                yield (document["service_name"], int(document["index"]), document["instances"])
                if event_id is not None:
                    last_id = event_id
            ended: BaseException = RegistryUnavailableError("the watch stream ended")
        except RegistryUnavailableError as exc:
            ended = exc
        except (ValueError, KeyError, TypeError) as exc:
            ended = RegistryUnavailableError(f"malformed watch event: {exc}")
        failures.failure(ended)
        await retrying.pause(failures)


#: Read timeout of a stream: well past the registry's 15 s keep-alive comments.
STREAM_READ_TIMEOUT = 60.0


def http_connect(registry: RegistryHTTP, names: list[str] | None) -> Connect:
    """`connect` for :func:`watch_stream` over the registry's `GET /v1/discovery/watch`.

    ``names`` None follows every service. 404 raises :class:`StreamUnsupported`
    (an older registry); network errors and 5xx raise
    :class:`RegistryUnavailableError`; other refusals (a wrong token) their error.
    """
    query = urlencode([("service", name) for name in (names if names is not None else ["*"])])

    async def connect(last_id: str | None) -> AsyncIterator[str]:
        headers = registry.headers() | {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        # A node that refuses or never accepts is left after `connect_timeout` when
        # another URL remains; the stream itself is read for as long as it lasts.
        last = len(registry.settings.urls) == 1
        timeout = attempt_timeout(registry.settings, last=last, read=STREAM_READ_TIMEOUT)
        try:
            async with registry.stream_http.stream(
                "GET", f"{registry.url}/v1/discovery/watch?{query}", headers=headers,
                timeout=timeout,
            ) as response:  # fmt: skip
                status = response.status_code
                if status != 200:
                    body = json_or_none(httpx.Response(status, content=await response.aread()))
                    if status == 404:
                        raise StreamUnsupported(
                            f"GET /v1/discovery/watch answered {status}: this registry has no "
                            "watch streams; follow each service with watch_service(name), "
                            "which falls back to blocking queries"
                        )
                    if status >= 500 or status == 429:
                        registry.calls.move_on()
                        raise RegistryUnavailableError(
                            f"GET /v1/discovery/watch answered {status}", status_code=status
                        )
                    raise error_from_response(status, body, fallback_message="watch refused")
                async for line in response.aiter_lines():
                    yield line
        except httpx.HTTPError as exc:
            registry.calls.move_on()  # a reconnect tries the next registry URL
            raise RegistryUnavailableError(f"watch stream failed: {exc!r}") from exc

    return connect
