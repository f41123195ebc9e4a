"""The watch stream parser: newline framing whatever the chunking, each kind of line,
and how the body ended."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sd_etcd
from sd_etcd.watch import render_line

H = b'"header":{"cluster_id":"1","member_id":"2","revision":"12","raft_term":"2"}'
HEADER = sd_etcd.Header(1, 2, 12, 2)

CREATED = b'{"result":{' + H + b',"created":true}}\n'
EVENTS = (
    b'{"result":{' + H + b',"events":[{"kv":{"key":"L3AvYQ==","create_revision":"2",'
    b'"mod_revision":"2","version":"1","value":"djE="}},{"type":"DELETE","kv":{"key":'
    b'"L3AvYg==","mod_revision":"6"},"prev_kv":{"key":"L3AvYg==","create_revision":"4",'
    b'"mod_revision":"4","version":"1"}}]}}\n'
)
PROGRESS = b'{"result":{' + H + b"}}\n"
CANCELED = (
    b'{"result":{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},'
    b'"canceled":true,"compact_revision":"10"}}\n'
)
SHUTDOWN = (
    b'{"error":{"grpc_code":14,"http_code":503,"message":"transport is closing",'
    b'"http_status":"Service Unavailable"}}'
)  # etcd writes it without a newline, then closes

STREAM = CREATED + EVENTS + PROGRESS + CANCELED + SHUTDOWN
EXPECTED: list[sd_etcd.WatchMessage] = [
    sd_etcd.WatchCreated(0, HEADER),
    sd_etcd.WatchEvents(
        0,
        (
            sd_etcd.KvEvent(sd_etcd.EventType.PUT, sd_etcd.KeyValue(b"/p/a", b"v1", 2, 2, 1)),
            sd_etcd.KvEvent(
                sd_etcd.EventType.DELETE,
                sd_etcd.KeyValue(b"/p/b", mod_revision=6),
                sd_etcd.KeyValue(b"/p/b", b"", 4, 4, 1),
            ),
        ),
        HEADER,
    ),
    sd_etcd.ProgressNotify(0, 12, HEADER),
    sd_etcd.WatchCanceled(0, 10, "", sd_etcd.Header(1, 2, 0, 2)),
    sd_etcd.WatchError(503, 14, "transport is closing"),
    sd_etcd.WatchClosed(truncated=False),
]


def _parse(chunks: list[bytes]) -> list[sd_etcd.WatchMessage]:
    stream = sd_etcd.WatchFramer()
    messages: list[sd_etcd.WatchMessage] = []
    for chunk in chunks:
        messages.extend(stream.feed(chunk))
    return messages + stream.end()


def test_a_whole_stream_in_one_chunk() -> None:
    assert _parse([STREAM]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_any_chunking_yields_the_same_messages(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[start:end] for start, end in itertools.pairwise(points)]
    assert _parse(chunks) == EXPECTED


def test_messages_come_out_as_soon_as_their_line_is_complete() -> None:
    stream = sd_etcd.WatchFramer()
    assert stream.feed(CREATED[:10]) == []
    assert stream.feed(CREATED[10:] + EVENTS[:5]) == [sd_etcd.WatchCreated(0, HEADER)]
    assert stream.feed(EVENTS[5:]) == [EXPECTED[1]]


@pytest.mark.parametrize("cut", [1, len(EVENTS) // 2, len(EVENTS) - 2])
def test_a_stream_cut_mid_object_ends_truncated(cut: int) -> None:
    assert _parse([CREATED, EVENTS[:cut]]) == [
        sd_etcd.WatchCreated(0, HEADER),
        sd_etcd.WatchClosed(True),
    ]


def test_a_stream_ending_on_a_newline_ends_cleanly() -> None:
    assert _parse([CREATED]) == [sd_etcd.WatchCreated(0, HEADER), sd_etcd.WatchClosed(False)]


def test_created_and_canceled_in_one_line_give_both() -> None:
    line = b'{"result":{' + H + b',"created":true,"canceled":true,"cancel_reason":"bad"}}\n'
    assert _parse([line])[:2] == [
        sd_etcd.WatchCreated(0, HEADER),
        sd_etcd.WatchCanceled(0, None, "bad", HEADER),
    ]


def test_a_line_that_is_not_a_watch_message_is_a_protocol_error() -> None:
    with pytest.raises(sd_etcd.EtcdProtocolError):
        sd_etcd.WatchFramer().feed(b'{"something":"else"}\n')


def test_feed_after_end_is_refused() -> None:
    stream = sd_etcd.WatchFramer()
    stream.end()
    with pytest.raises(RuntimeError):
        stream.feed(CREATED)


@pytest.mark.parametrize("message", EXPECTED[:-1])
def test_rendering_round_trips(message: sd_etcd.WatchMessage) -> None:
    assert sd_etcd.WatchFramer().feed(render_line(message)) == [message]
