"""The hub's shared keep-alive ticker: one keep-alive per interval to each quiet stream.

Keep-alives used to come from a timer per stream; now `StreamHub.tick` sends
them, a share of the streams per step, and `keep_alive` runs the steps while
any stream is open. No loop and no clock here: the ticks are called directly,
and the ticker's sleep is a fake that counts.
"""

from __future__ import annotations

import asyncio

import trio

from frontends.runtime.watch_streams import KEEPALIVE_SHARES, Stream, StreamHub, keep_alive
from sd_core import Registry, RegistryConfig
from sd_core.watch_stream import KEEPALIVE, STREAM_PREAMBLE, StreamEvents, WatchSpec


class RecordingStream(Stream):
    """A stream whose writer never runs: what the hub queued stays pending."""

    __slots__ = ("wakes",)

    def __init__(self, follows: frozenset[str] | None) -> None:
        super().__init__(follows)
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1

    def abort(self) -> None:
        raise AssertionError("the keep-alive ticker never drops a stream")

    async def idle(self) -> None:
        raise AssertionError("this stream has no writer")

    def keepalives(self) -> int:
        """Keep-alives queued since the last call (and forget what was queued)."""
        data = self.take()
        return data.count(KEEPALIVE)


def make_hub() -> StreamHub:
    return StreamHub(StreamEvents(Registry(RegistryConfig(), now=0.0, wall_offset=0.0)))


def open_streams(hub: StreamHub, count: int) -> list[RecordingStream]:
    streams = []
    for number in range(count):
        stream = RecordingStream(frozenset({f"s{number % 3}"}))
        hub.open(stream, WatchSpec(stream.follows, None))
        assert stream.take().startswith(STREAM_PREAMBLE)
        streams.append(stream)
    return streams


def ticks(hub: StreamHub, count: int) -> None:
    for _ in range(count):
        hub.tick()


def test_a_quiet_stream_gets_one_keepalive_per_interval() -> None:
    hub = make_hub()
    streams = open_streams(hub, 40)
    ticks(hub, KEEPALIVE_SHARES)  # the interval the streams opened in: none yet
    assert [s.keepalives() for s in streams] == [0] * 40
    for _ in range(3):
        ticks(hub, KEEPALIVE_SHARES)
        assert [s.keepalives() for s in streams] == [1] * 40


def test_a_stream_sent_an_event_skips_one_keepalive() -> None:
    hub = make_hub()
    streams = open_streams(hub, 30)
    ticks(hub, 2 * KEEPALIVE_SHARES)
    assert all(s.keepalives() == 1 for s in streams)
    hub._push(streams[0], b"event\n\n")  # what `changed` does for a follower
    ticks(hub, KEEPALIVE_SHARES)
    assert streams[0].take() == b"event\n\n"  # no keep-alive beside it
    assert all(s.keepalives() == 1 for s in streams[1:])
    ticks(hub, KEEPALIVE_SHARES)
    assert all(s.keepalives() == 1 for s in streams)


def test_the_keepalives_are_spread_over_the_interval() -> None:
    hub = make_hub()
    streams = open_streams(hub, 20 * KEEPALIVE_SHARES)
    ticks(hub, KEEPALIVE_SHARES)
    per_step = []
    for _ in range(KEEPALIVE_SHARES):
        hub.tick()
        per_step.append(sum(s.keepalives() for s in streams))
    assert sum(per_step) == len(streams)
    assert per_step == [20] * KEEPALIVE_SHARES


def test_a_closed_stream_gets_no_keepalive() -> None:
    hub = make_hub()
    kept, closed = open_streams(hub, 2)
    hub.close(closed)
    ticks(hub, 2 * KEEPALIVE_SHARES)
    assert (kept.keepalives(), closed.keepalives(), closed.wakes) == (1, 0, 0)


async def _ticker_steps(hub: StreamHub, sleep_then: list[float], close_after: int) -> None:
    streams = open_streams(hub, 2)
    assert hub.start_ticking() and not hub.start_ticking()

    async def fake_sleep(seconds: float) -> None:
        sleep_then.append(seconds)
        if len(sleep_then) == close_after:
            for stream in streams:
                hub.close(stream)

    await keep_alive(hub, 8.0, fake_sleep)


def test_the_ticker_runs_while_streams_are_open_then_ends() -> None:
    for loop in ("asyncio", "trio"):
        hub = make_hub()
        slept: list[float] = []
        if loop == "asyncio":
            asyncio.run(_ticker_steps(hub, slept, 5))
        else:
            trio.run(_ticker_steps, hub, slept, 5)
        assert slept == [8.0 / KEEPALIVE_SHARES] * 5
        assert hub.ticks == 5
        assert not hub.ticking and hub.start_ticking()  # the next stream starts another


class HashCountingStream(RecordingStream):
    """Counts the hub's set operations on it: what a ticker step spends per stream."""

    __slots__ = ()
    hashes = 0

    def __hash__(self) -> int:
        HashCountingStream.hashes += 1
        return id(self)


def test_a_ticker_step_costs_per_stream_not_per_followed_service() -> None:
    """Streams following 300 services each: a whole interval of steps visits each once.

    Each step used to gather every stream from every (service, stream) pair.
    """
    hub = make_hub()
    streams = []
    for number in range(32):
        names = frozenset(f"svc-{number}-{n}" for n in range(300))
        stream = HashCountingStream(names)
        hub.open(stream, WatchSpec(names, None))
        streams.append(stream)
    HashCountingStream.hashes = 0
    ticks(hub, 2 * KEEPALIVE_SHARES)
    assert HashCountingStream.hashes <= 2 * 2 * len(streams)
    assert [s.keepalives() for s in streams] == [1] * len(streams)
