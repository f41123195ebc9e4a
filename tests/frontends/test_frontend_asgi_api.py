"""The plain-ASGI API both apps share, driven with raw ASGI messages on each kit's fake clock.

What httpx's transport cannot show: a client hanging up while its blocking
query is parked (each loop's `unless_gone`), a request without a body never
being read, and the asyncio body deadline that is armed only when the body
has to be waited for (`quart_app.body_deadline`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from frontend_kit import SECRET, AsyncioKit, Group, Kit, make_runtime, register

from frontends.quart_app import body_deadline
from frontends.runtime.asgi_api import Scope
from frontends.runtime.request_flow import BodyTimeout, Disconnected
from frontends.runtime.watch_streams import Message

EXACT = 1e-9
AUTH = (b"authorization", f"Bearer {SECRET}".encode())


def http_scope(method: str, path: str, query: bytes = b"") -> Scope:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": [(b"host", b"registry.test"), AUTH],
    }


def test_a_parked_client_that_hangs_up_is_unparked_at_once(make_kit: Callable[[], Kit]) -> None:
    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit)
        register(runtime, "svc", "i-0")
        app = kit.make_app(runtime)
        hang_up = kit.event()
        sent: list[Message] = []
        ended: list[float] = []

        async def receive() -> Message:
            await hang_up.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        async def request() -> None:
            index = str(runtime.registry.global_index).encode()
            query = b"index=" + index + b"&wait=60s"
            await app(http_scope("GET", "/v1/discovery/services/svc", query), receive, send)
            ended.append(kit.clock())

        group.start_soon(request)
        await kit.sleep(5)
        assert runtime.counters.parked_queries == 1
        assert ended == []
        start = kit.clock()
        hang_up.set()
        await kit.sleep(0.001)
        assert ended == [pytest.approx(start, abs=EXACT)]
        assert sent == []  # nobody to answer
        assert runtime.counters.parked_queries == 0
        assert runtime.counters.in_flight == 0

    make_kit().run(scenario)


def test_a_request_without_a_body_is_answered_without_reading_it(
    make_kit: Callable[[], Kit],
) -> None:
    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit)
        register(runtime, "svc", "i-0")
        app = kit.make_app(runtime)
        sent: list[Message] = []

        async def receive() -> Message:
            raise AssertionError("a request with neither Content-Length nor Transfer-Encoding")

        async def send(message: Message) -> None:
            sent.append(message)

        await app(http_scope("GET", "/v1/discovery/services/svc"), receive, send)
        assert sent[0]["status"] == 200
        assert b'"i-0"' in sent[1]["body"]

    make_kit().run(scenario)


# ------------------------------------------------ the asyncio body deadline


def run_asyncio(scenario: Callable[[AsyncioKit], Any]) -> None:
    async def wrapped(kit: Kit, group: Group) -> None:
        assert isinstance(kit, AsyncioKit)
        await scenario(kit)

    AsyncioKit().run(wrapped)


def test_a_body_already_there_arms_no_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_timer(seconds: float) -> Any:
        raise AssertionError("a deadline was armed for a body that needed no wait")

    async def arrived() -> bytes:
        return b"body"

    async def scenario(kit: AsyncioKit) -> None:
        monkeypatch.setattr(asyncio, "timeout", no_timer)
        assert await body_deadline.within(10, arrived()) == b"body"

    run_asyncio(scenario)


def test_a_body_that_arrives_in_time_is_returned_with_what_it_was_sent() -> None:
    async def scenario(kit: AsyncioKit) -> None:
        loop = asyncio.get_running_loop()
        chunks: list[asyncio.Future[bytes]] = [loop.create_future() for _ in range(2)]

        async def trickled() -> bytes:
            return await chunks[0] + await chunks[1]

        loop.call_later(3, chunks[0].set_result, b"bo")
        loop.call_later(9, chunks[1].set_result, b"dy")
        start = kit.clock()
        assert await body_deadline.within(10, trickled()) == b"body"
        assert kit.clock() - start == pytest.approx(9, abs=EXACT)

    run_asyncio(scenario)


async def missing_body(finished: list[str]) -> bytes:
    """A read whose body never comes; notes in `finished` that it was cancelled."""
    try:
        await asyncio.sleep(3600)
    finally:
        finished.append("cancelled")
    return b""


def test_a_body_still_missing_at_the_deadline_is_a_body_timeout() -> None:
    finished: list[str] = []

    async def scenario(kit: AsyncioKit) -> None:
        start = kit.clock()
        with pytest.raises(BodyTimeout):
            await body_deadline.within(10, missing_body(finished))
        assert kit.clock() - start == pytest.approx(10, abs=EXACT)
        assert finished == ["cancelled"]

    run_asyncio(scenario)


@pytest.mark.parametrize("waits_first", [False, True])
def test_an_error_of_the_read_comes_out_as_itself(waits_first: bool) -> None:
    async def scenario(kit: AsyncioKit) -> None:
        async def gone() -> bytes:
            if waits_first:
                await asyncio.sleep(1)
            raise Disconnected

        with pytest.raises(Disconnected):
            await body_deadline.within(10, gone())

    run_asyncio(scenario)


def test_a_cancelled_request_cancels_the_read_and_is_no_timeout() -> None:
    finished: list[str] = []

    async def scenario(kit: AsyncioKit) -> None:
        task = asyncio.ensure_future(body_deadline.within(10, missing_body(finished)))
        await asyncio.sleep(2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished == ["cancelled"]

    run_asyncio(scenario)
