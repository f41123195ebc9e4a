"""MemoryEtcd's semantics, driven through the gateway bytes (builders -> handle -> parsers)
on a fake clock: revisions, leases, txn compares, pinned ranges, pagination, compaction,
watches, outage."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

import sd_etcd

T = TypeVar("T")


class Store:
    """A MemoryEtcd spoken to only through gateway bytes, on a fake clock."""

    def __init__(self) -> None:
        self.etcd = sd_etcd.MemoryEtcd()
        self.now = 0.0

    def __call__(self, request: sd_etcd.GatewayRequest, parse: Callable[[int, bytes], T]) -> T:
        return parse(*self.etcd.handle(request, self.now))

    def watch(self, request: sd_etcd.GatewayRequest) -> Callable[[], list[sd_etcd.WatchMessage]]:
        watch = self.etcd.open_watch(request, self.now)
        stream = sd_etcd.WatchFramer()
        return lambda: stream.feed(watch.read())

    def revision(self) -> int:
        return self(sd_etcd.range_request("x"), sd_etcd.parse_range).header.revision


@pytest.fixture
def store() -> Store:
    return Store()


def test_one_global_revision_and_per_key_versions(store: Store) -> None:
    assert store.revision() == 1
    assert store(sd_etcd.put_request("/a", "1"), sd_etcd.parse_put).header.revision == 2
    store(sd_etcd.put_request("/b", "1"), sd_etcd.parse_put)
    prev = store(sd_etcd.put_request("/a", "2", prev_kv=True), sd_etcd.parse_put).prev_kv
    assert prev is not None and (prev.value, prev.version) == (b"1", 1)
    (kv,) = store(sd_etcd.range_request("/a"), sd_etcd.parse_range).kvs
    assert (kv.create_revision, kv.mod_revision, kv.version, kv.value) == (2, 4, 2, b"2")


def test_deleting_nothing_does_not_bump_the_revision(store: Store) -> None:
    store(sd_etcd.put_request("/a", "1"), sd_etcd.parse_put)
    assert store(sd_etcd.delete_range_request("/zz"), sd_etcd.parse_delete_range).deleted == 0
    assert store.revision() == 2
    result = store(sd_etcd.delete_range_request("/a", prev_kv=True), sd_etcd.parse_delete_range)
    assert (result.deleted, result.header.revision, result.prev_kvs[0].key) == (1, 3, b"/a")
    # recreated: a new create_revision and version 1
    store(sd_etcd.put_request("/a", "x"), sd_etcd.parse_put)
    (kv,) = store(sd_etcd.range_request("/a"), sd_etcd.parse_range).kvs
    assert (kv.create_revision, kv.version) == (4, 1)


def test_pinned_revision_range_sees_the_past(store: Store) -> None:
    store(sd_etcd.put_request("/p/a", "1"), sd_etcd.parse_put)  # 2
    store(sd_etcd.put_request("/p/a", "2"), sd_etcd.parse_put)  # 3
    store(sd_etcd.delete_range_request("/p/a"), sd_etcd.parse_delete_range)  # 4
    assert (
        store(sd_etcd.range_request("/p/a", revision=2), sd_etcd.parse_range).kvs[0].value == b"1"
    )
    assert (
        store(sd_etcd.range_request("/p/a", revision=3), sd_etcd.parse_range).kvs[0].value == b"2"
    )
    assert store(sd_etcd.range_request("/p/a", revision=4), sd_etcd.parse_range).kvs == ()
    with pytest.raises(sd_etcd.FutureRevision):
        store(sd_etcd.range_request("/p/a", revision=5), sd_etcd.parse_range)


def test_pagination_with_limit(store: Store) -> None:
    for name in "edcba":
        store(sd_etcd.put_request(f"/p/{name}", name), sd_etcd.parse_put)
    store(sd_etcd.put_request("/q", "outside"), sd_etcd.parse_put)
    seen: list[bytes] = []
    start, pinned = b"/p/", store.revision()
    while True:
        page = store(
            sd_etcd.range_request(start, range_end=b"/p0", revision=pinned, limit=2),
            sd_etcd.parse_range,
        )
        seen += [kv.key for kv in page.kvs]
        if not page.more:
            break
        start = page.kvs[-1].key + b"\x00"
    assert seen == [b"/p/a", b"/p/b", b"/p/c", b"/p/d", b"/p/e"]
    first = store(sd_etcd.range_request("/p/", prefix=True, limit=2), sd_etcd.parse_range)
    assert (first.count, first.more) == (5, True)
    only = store(sd_etcd.range_request("/p/", prefix=True, keys_only=True), sd_etcd.parse_range)
    assert {kv.value for kv in only.kvs} == {b""}
    counted = store(sd_etcd.range_request("/p/", prefix=True, count_only=True), sd_etcd.parse_range)
    assert (counted.kvs, counted.count) == ((), 5)


def test_txn_compare_on_mod_revision(store: Store) -> None:
    created = store(
        sd_etcd.txn_request(
            [sd_etcd.key_absent("/h")], [sd_etcd.PutOp(b"/h", b"up")], [sd_etcd.RangeOp(b"/h")]
        ),
        sd_etcd.parse_txn,
    )
    assert created.succeeded and created.header.revision == 2
    again = store(
        sd_etcd.txn_request(
            [sd_etcd.key_absent("/h")], [sd_etcd.PutOp(b"/h", b"up")], [sd_etcd.RangeOp(b"/h")]
        ),
        sd_etcd.parse_txn,
    )
    assert not again.succeeded and again.header.revision == 2
    guarded = sd_etcd.txn_request(
        [sd_etcd.mod_revision_is("/h", 2)], [sd_etcd.PutOp(b"/h", b"down")]
    )
    assert store(guarded, sd_etcd.parse_txn).succeeded
    assert not store(guarded, sd_etcd.parse_txn).succeeded  # the key moved on to revision 3


@pytest.mark.parametrize(
    ("compare", "holds"),
    [
        (sd_etcd.Compare(b"/k", sd_etcd.Target.VALUE, sd_etcd.CompareResult.EQUAL, b"v"), True),
        (sd_etcd.Compare(b"/k", sd_etcd.Target.VALUE, sd_etcd.CompareResult.GREATER, b"a"), True),
        (sd_etcd.Compare(b"/k", sd_etcd.Target.VERSION, sd_etcd.CompareResult.EQUAL, 1), True),
        (sd_etcd.Compare(b"/k", sd_etcd.Target.CREATE, sd_etcd.CompareResult.LESS, 2), False),
        (sd_etcd.Compare(b"/k", sd_etcd.Target.MOD, sd_etcd.CompareResult.NOT_EQUAL, 2), False),
        (
            sd_etcd.Compare(
                b"/missing", sd_etcd.Target.VALUE, sd_etcd.CompareResult.NOT_EQUAL, b"x"
            ),
            False,
        ),
        (
            sd_etcd.Compare(b"/missing", sd_etcd.Target.VERSION, sd_etcd.CompareResult.EQUAL, 0),
            True,
        ),
    ],
)
def test_txn_compares(store: Store, compare: sd_etcd.Compare, holds: bool) -> None:
    store(sd_etcd.put_request("/k", "v"), sd_etcd.parse_put)
    assert store(sd_etcd.txn_request([compare], []), sd_etcd.parse_txn).succeeded is holds


def test_a_txn_writes_one_revision_and_reads_its_own_writes(store: Store) -> None:
    result = store(
        sd_etcd.txn_request(
            [], [sd_etcd.PutOp(b"/a", b"1"), sd_etcd.PutOp(b"/b", b"1"), sd_etcd.RangeOp(b"/a")]
        ),
        sd_etcd.parse_txn,
    )
    assert result.header.revision == 2
    read = result.responses[2]
    assert isinstance(read, sd_etcd.RangeResult) and read.kvs[0].mod_revision == 2


def test_a_txn_writing_a_key_twice_is_refused(store: Store) -> None:
    with pytest.raises(sd_etcd.EtcdRequestError, match="duplicate key"):
        store(
            sd_etcd.txn_request([], [sd_etcd.PutOp(b"/a", b"1"), sd_etcd.PutOp(b"/a", b"2")]),
            sd_etcd.parse_txn,
        )
    assert store.revision() == 1


def test_lease_expiry_deletes_all_its_keys_in_one_revision(store: Store) -> None:
    lease = store(sd_etcd.lease_grant_request(1), sd_etcd.parse_lease_grant)
    assert lease.ttl == 2  # etcd's minimum
    store(sd_etcd.put_request("/i/a", "1", lease=lease.id), sd_etcd.parse_put)
    store(sd_etcd.put_request("/i/b", "1", lease=lease.id), sd_etcd.parse_put)
    events = store.watch(sd_etcd.watch_request("/i/", prefix=True))
    events()
    store.now = 1.5
    assert store(sd_etcd.lease_keepalive_request(lease.id), sd_etcd.parse_lease_keepalive).ttl == 2
    store.now = 3.4
    ttl = store(
        sd_etcd.lease_timetolive_request(lease.id, keys=True), sd_etcd.parse_lease_timetolive
    )
    assert (ttl.ttl, ttl.keys) == (0, (b"/i/a", b"/i/b"))
    assert store.etcd.next_deadline() == 3.5
    store.now = 3.5
    assert (
        store(sd_etcd.lease_keepalive_request(lease.id), sd_etcd.parse_lease_keepalive).ttl is None
    )
    assert (
        store(sd_etcd.lease_timetolive_request(lease.id), sd_etcd.parse_lease_timetolive).ttl
        is None
    )
    assert store.revision() == 4
    (deleted,) = events()
    assert isinstance(deleted, sd_etcd.WatchEvents)
    assert [(e.type, e.kv.mod_revision) for e in deleted.events] == [
        (sd_etcd.EventType.DELETE, 4)
    ] * 2
    with pytest.raises(sd_etcd.LeaseNotFound):
        store(sd_etcd.put_request("/i/c", "1", lease=lease.id), sd_etcd.parse_put)
    with pytest.raises(sd_etcd.LeaseNotFound):
        store(sd_etcd.lease_revoke_request(lease.id), sd_etcd.parse_lease_revoke)


def test_revoke_and_explicit_lease_ids(store: Store) -> None:
    assert store(sd_etcd.lease_grant_request(30, lease_id=77), sd_etcd.parse_lease_grant).id == 77
    with pytest.raises(sd_etcd.EtcdRequestError, match="already exists") as caught:
        store(sd_etcd.lease_grant_request(30, lease_id=77), sd_etcd.parse_lease_grant)
    assert caught.value.http_status == 412
    store(sd_etcd.put_request("/a", "1", lease=77), sd_etcd.parse_put)
    store(sd_etcd.put_request("/a", "2"), sd_etcd.parse_put)  # put without lease: detached
    store(sd_etcd.lease_revoke_request(77), sd_etcd.parse_lease_revoke)
    assert store(sd_etcd.range_request("/a"), sd_etcd.parse_range).kvs[0].value == b"2"


def test_time_never_goes_back(store: Store) -> None:
    store.now = 5.0
    store.revision()
    store.now = 4.0
    with pytest.raises(ValueError, match="backwards"):
        store.revision()


def test_compaction(store: Store) -> None:
    for value in "1234":
        store(sd_etcd.put_request("/a", value), sd_etcd.parse_put)  # revisions 2..5
    store(sd_etcd.compaction_request(4), sd_etcd.parse_compaction)
    with pytest.raises(sd_etcd.Compacted):
        store(sd_etcd.range_request("/a", revision=3), sd_etcd.parse_range)
    assert store(sd_etcd.range_request("/a", revision=4), sd_etcd.parse_range).kvs[0].value == b"3"
    with pytest.raises(sd_etcd.Compacted):
        store(sd_etcd.compaction_request(4), sd_etcd.parse_compaction)
    with pytest.raises(sd_etcd.FutureRevision):
        store(sd_etcd.compaction_request(9), sd_etcd.parse_compaction)
    canceled = store.watch(sd_etcd.watch_request("/a", start_revision=3))()
    assert isinstance(canceled[0], sd_etcd.WatchCreated)
    assert isinstance(canceled[1], sd_etcd.WatchCanceled) and canceled[1].compact_revision == 4
    assert canceled[1].header.revision == 0  # etcd leaves it out there
    replay = store.watch(sd_etcd.watch_request("/a", start_revision=4))()
    assert isinstance(replay[1], sd_etcd.WatchEvents)
    assert [e.kv.value for e in replay[1].events] == [b"3", b"4"]


def test_watch_replays_streams_and_reports_progress(store: Store) -> None:
    store(sd_etcd.put_request("/p/a", "1"), sd_etcd.parse_put)  # 2
    read = store.watch(sd_etcd.watch_request("/p/", prefix=True, start_revision=2, prev_kv=True,
                                     progress_notify=True))  # fmt: skip
    created, replay = read()
    assert isinstance(created, sd_etcd.WatchCreated) and created.header.revision == 2
    assert isinstance(replay, sd_etcd.WatchEvents) and replay.events[0].kv.value == b"1"
    store(sd_etcd.put_request("/elsewhere", "x"), sd_etcd.parse_put)  # 3, not watched
    store(sd_etcd.put_request("/p/a", "2"), sd_etcd.parse_put)  # 4
    (live,) = read()
    assert isinstance(live, sd_etcd.WatchEvents)
    (event,) = live.events
    assert event.prev_kv is not None and event.prev_kv.value == b"1"
    store.etcd.notify_progress()
    assert read() == [sd_etcd.ProgressNotify(0, 4, live.header)]


def test_a_future_start_revision_waits(store: Store) -> None:
    read = store.watch(sd_etcd.watch_request("/a", start_revision=3))
    store(sd_etcd.put_request("/a", "1"), sd_etcd.parse_put)  # 2: before the start
    assert [type(m) for m in read()] == [sd_etcd.WatchCreated]
    store(sd_etcd.put_request("/a", "2"), sd_etcd.parse_put)  # 3
    (events,) = read()
    assert isinstance(events, sd_etcd.WatchEvents) and events.events[0].kv.value == b"2"


def test_an_outage_refuses_everything_and_ends_watches(store: Store) -> None:
    lease = store(sd_etcd.lease_grant_request(10), sd_etcd.parse_lease_grant)
    store(sd_etcd.put_request("/i", "1", lease=lease.id), sd_etcd.parse_put)
    watch = store.etcd.open_watch(sd_etcd.watch_request("/"), store.now)
    watch.drain()
    store.etcd.outage(now=1.0)
    store.now = 50.0
    for request, parse in [
        (sd_etcd.range_request("/i"), sd_etcd.parse_range),
        (sd_etcd.put_request("/i", "2"), sd_etcd.parse_put),
        (sd_etcd.lease_keepalive_request(lease.id), sd_etcd.parse_lease_keepalive),
        (sd_etcd.status_request(), sd_etcd.parse_status),
    ]:
        with pytest.raises(sd_etcd.EtcdUnavailable):
            store(request, parse)
    stream = sd_etcd.WatchFramer()
    assert stream.feed(watch.read()) == []  # the error line has no newline...
    ending = stream.end()  # ...and the body ends right after it
    assert isinstance(ending[0], sd_etcd.WatchError) and ending[0].http_code == 503
    # Back: the lease that ran out during the outage gets a full TTL again.
    store.etcd.recover(now=60.0)
    store.now = 60.0
    assert store(sd_etcd.range_request("/i"), sd_etcd.parse_range).count == 1
    store.now = 70.0
    assert store(sd_etcd.range_request("/i"), sd_etcd.parse_range).count == 0


def test_a_wipe_is_etcd_restarted_on_an_empty_data_dir(store: Store) -> None:
    lease = store(sd_etcd.lease_grant_request(10), sd_etcd.parse_lease_grant)
    store(sd_etcd.put_request("/i", "1", lease=lease.id), sd_etcd.parse_put)  # 2
    watch = store.etcd.open_watch(sd_etcd.watch_request("/"), store.now)
    store.etcd.wipe(store.now)
    assert watch.ended  # the connection was cut
    answer = store(sd_etcd.range_request("/i"), sd_etcd.parse_range)
    assert (answer.count, answer.header.revision) == (0, 1)
    assert answer.header.cluster_id == store.etcd.cluster_id  # the same cluster id
    kept = store(sd_etcd.lease_keepalive_request(lease.id), sd_etcd.parse_lease_keepalive)
    assert kept.ttl is None
    # A watch resumed at the old revision + 1 is accepted, created at revision 1.
    created = store.watch(sd_etcd.watch_request("/", start_revision=3))()
    assert isinstance(created[0], sd_etcd.WatchCreated) and created[0].header.revision == 1


def test_a_watch_whose_reader_fell_behind_a_compaction_is_canceled(store: Store) -> None:
    behind = store.etcd.open_watch(sd_etcd.watch_request("/", prefix=True), store.now)
    reading = store.watch(sd_etcd.watch_request("/", prefix=True))
    store(sd_etcd.put_request("/a", "1"), sd_etcd.parse_put)  # 2
    reading()
    store(sd_etcd.compaction_request(2), sd_etcd.parse_compaction)
    store.etcd.cancel_lagging_watches()
    messages = sd_etcd.WatchFramer().feed(behind.read())
    assert [type(m) for m in messages] == [sd_etcd.WatchCanceled]
    assert isinstance(messages[0], sd_etcd.WatchCanceled) and messages[0].compact_revision == 2
    store(sd_etcd.put_request("/a", "2"), sd_etcd.parse_put)  # the reader that kept up goes on
    assert [type(m) for m in reading()] == [sd_etcd.WatchEvents]


def test_unknown_paths_and_bad_bodies(store: Store) -> None:
    assert store.etcd.handle(sd_etcd.GatewayRequest("/v3alpha/kv/range", b"{}"), 0.0)[0] == 404
    status, _ = store.etcd.handle(sd_etcd.GatewayRequest("/v3/kv/put", b'{"key":"!!"}'), 0.0)
    assert status == 400
    with pytest.raises(sd_etcd.EtcdRequestError, match="key is not provided"):
        store(sd_etcd.GatewayRequest("/v3/kv/put", b"{}"), sd_etcd.parse_put)
    assert (
        store(
            sd_etcd.GatewayRequest("/v3beta/kv/range", b'{"key":"YQ=="}'), sd_etcd.parse_range
        ).count
        == 0
    )
