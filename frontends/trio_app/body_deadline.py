"""The body's deadline on trio. Mirrors `quart_app/body_deadline.py`.

A trio deadline costs no timer of its own (the scope's deadline joins the
run loop's heap), so unlike asyncio there is nothing to win by arming it only
once the read waits: `within` is one `move_on_after`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import trio

from frontends.runtime.request_flow import BodyTimeout

_T = TypeVar("_T")


async def within(seconds: float, work: Awaitable[_T]) -> _T:
    """`work`'s result, or BodyTimeout when it is not done within `seconds`."""
    with trio.move_on_after(seconds):
        return await work
    raise BodyTimeout
