"""The SDK's watch-stream loop: events parsed, resumed by Last-Event-ID after a cut, backoff."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator

from service_discovery.backoff import Backoff
from service_discovery.errors import RegistryUnavailableError
from service_discovery.watch import Retrying, ServiceState, watch_stream


def _event(name: str, index: int, *, with_id: bool = True) -> list[str]:
    data = json.dumps({"index": index, "service_name": name, "instances": []})
    lines = ["event: service", f"data: {data}"]
    return [*lines, f"id: {index}", ""] if with_id else [*lines, ""]


async def test_resumes_from_the_last_complete_id_after_a_cut() -> None:
    asked: list[str | None] = []
    slept: list[float] = []

    async def connect(last_id: str | None) -> AsyncIterator[str]:
        asked.append(last_id)
        if len(asked) == 1:
            for line in ["retry: 2000", "", *_event("a", 3), ": keepalive", ""]:
                yield line
            for line in _event("b", 5, with_id=False):  # cut before its tie's id
                yield line
            raise RegistryUnavailableError("connection reset")
        for line in _event("b", 5):
            yield line

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    seen: list[ServiceState] = []
    stream = watch_stream(
        connect,
        what="t",
        retrying=Retrying(sleep, lambda: 0.0, Backoff(), random.Random(1)),
    )
    async for state in stream:
        seen.append(state)
        if len(seen) == 3:
            break
    await stream.aclose()
    assert [(name, index) for name, index, _ in seen] == [("a", 3), ("b", 5), ("b", 5)]
    assert asked == [None, "3"]  # b's event came without an id: resume before it
    assert len(slept) == 1 and slept[0] > 0  # a jittered backoff, not a storm
