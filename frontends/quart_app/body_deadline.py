"""The body's deadline on asyncio, armed only when the body has to be waited for.

Why: a body nearly always arrives with its headers, so reading it never
waits, yet `asyncio.timeout` armed and cancelled a timer for every request
with one: about a tenth of quart+uvicorn's CPU per heartbeat (py-spy,
docs/frontends.md). So `within` first runs the read up to the
point where it would wait; only if it does wait is the deadline armed, from
that moment (the synchronous first step takes microseconds). The same
`BodyTimeout` as before ends a body that is still missing then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Generator
from typing import Any, Generic, TypeVar, cast

from frontends.runtime.request_flow import BodyTimeout

_T = TypeVar("_T")


async def within(seconds: float, work: Awaitable[_T]) -> _T:
    """`work`'s result, or BodyTimeout when it still waits `seconds` after it first waited."""
    steps = work.__await__()
    try:
        first = steps.send(None)
    except StopIteration as done:
        return cast("_T", done.value)  # nothing to wait for, so no deadline to arm
    try:
        async with asyncio.timeout(seconds):
            return await _Rest(steps, first)
    except TimeoutError:
        raise BodyTimeout from None


class _Rest(Generic[_T]):
    """The rest of an awaitable whose first step has run: `yield from`, minus that step.

    What the awaitable yields (the future it waits on) goes up to the task,
    and what the task sends or throws (a cancellation) goes down to it.
    """

    __slots__ = ("_first", "_steps")

    def __init__(self, steps: Generator[Any, Any, _T], first: Any) -> None:
        self._steps = steps
        self._first = first

    def __await__(self) -> Generator[Any, Any, _T]:
        steps = self._steps
        value = self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as error:
                try:
                    value = steps.throw(error)
                except StopIteration as done:
                    return cast("_T", done.value)
            else:
                try:
                    value = steps.send(sent)
                except StopIteration as done:
                    return cast("_T", done.value)
