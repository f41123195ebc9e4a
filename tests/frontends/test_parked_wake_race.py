"""A change that lands between a blocking query's decision to wait and its parking wakes it.

asyncio starts the wait of a parked query (`quart_app.app._unless_gone`, which runs
it beside a watch for the client leaving) as a task, one loop turn later. A write
handled in that turn changed the index and woke the scope's parked queries before
this one was among them, so it waited out its whole `wait` at an index already gone.
VictoriaMetrics' consul_sd caught it in CI: its query for index 4 parked just after the
unregistration that made the index 5, and it kept showing the removed instance.
`_answer` now reads `wakes` before any await and the wait compares it when parking
(`ScopeEvents.park`'s own tests: tests/reliability/test_reliability_log_and_wake_pacing.py).
"""

from __future__ import annotations

import asyncio
import functools
from types import SimpleNamespace
from typing import cast

from frontends.quart_app.app import _unless_gone
from frontends.quart_app.parked import ParkedQueries
from frontends.runtime.metrics import Counters
from frontends.runtime.runtime import Runtime


def test_quarts_wait_started_a_turn_later_still_sees_the_change() -> None:
    """The real pieces: quart's `_unless_gone` and `ParkedQueries`, on a real loop. The
    wait is an hour; the loop is only turned a few times, never waited on."""
    runtime = cast(Runtime, SimpleNamespace(draining=False, counters=Counters()))
    parked = ParkedQueries(runtime)

    async def never_leaves() -> dict[str, object]:
        await asyncio.Event().wait()
        return {}

    async def scenario() -> bool:
        since = parked.wakes  # what `request_flow._answer` reads when it chooses to wait
        wait = functools.partial(parked.wait, "svc", 3600.0, since)
        query = asyncio.ensure_future(_unless_gone(wait, never_leaves))
        parked.wake(frozenset({"svc"}))  # the write handled before the wait starts
        for _ in range(20):
            await asyncio.sleep(0)
            if query.done():
                break
        done = query.done()
        query.cancel()
        await asyncio.gather(query, return_exceptions=True)
        return done

    assert asyncio.run(scenario())
    assert parked.running == 0 and runtime.counters.parked_queries == 0
