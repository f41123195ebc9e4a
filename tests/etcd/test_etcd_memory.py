"""MemoryEtcd's semantics, driven through the gateway bytes (builders -> handle -> parsers)
on a fake clock: revisions, leases, txn compares, pinned ranges, pagination, compaction,
watches, outage."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from sd_etcd import (
    Compacted,
    Compare,
    CompareResult,
    EtcdRequestError,
    EtcdUnavailable,
    EventType,
    FutureRevision,
    GatewayRequest,
    LeaseNotFound,
    MemoryEtcd,
    ProgressNotify,
    PutOp,
    RangeOp,
    RangeResult,
    Target,
    WatchCanceled,
    WatchCreated,
    WatchError,
    WatchEvents,
    WatchMessage,
    WatchStream,
    compaction_request,
    delete_range_request,
    key_absent,
    lease_grant_request,
    lease_keepalive_request,
    lease_revoke_request,
    lease_timetolive_request,
    mod_revision_is,
    parse_compaction,
    parse_delete_range,
    parse_lease_grant,
    parse_lease_keepalive,
    parse_lease_revoke,
    parse_lease_timetolive,
    parse_put,
    parse_range,
    parse_status,
    parse_txn,
    put_request,
    range_request,
    status_request,
    txn_request,
    watch_request,
)

T = TypeVar("T")


class Store:
    """A MemoryEtcd spoken to only through gateway bytes, on a fake clock."""

    def __init__(self) -> None:
        self.etcd = MemoryEtcd()
        self.now = 0.0

    def __call__(self, request: GatewayRequest, parse: Callable[[int, bytes], T]) -> T:
        return parse(*self.etcd.handle(request, self.now))

    def watch(self, request: GatewayRequest) -> Callable[[], list[WatchMessage]]:
        watch = self.etcd.open_watch(request, self.now)
        stream = WatchStream()
        return lambda: stream.feed(watch.read())

    def revision(self) -> int:
        return self(range_request("x"), parse_range).header.revision


@pytest.fixture
def store() -> Store:
    return Store()


def test_one_global_revision_and_per_key_versions(store: Store) -> None:
    assert store.revision() == 1
    assert store(put_request("/a", "1"), parse_put).header.revision == 2
    store(put_request("/b", "1"), parse_put)
    prev = store(put_request("/a", "2", prev_kv=True), parse_put).prev_kv
    assert prev is not None and (prev.value, prev.version) == (b"1", 1)
    (kv,) = store(range_request("/a"), parse_range).kvs
    assert (kv.create_revision, kv.mod_revision, kv.version, kv.value) == (2, 4, 2, b"2")


def test_deleting_nothing_does_not_bump_the_revision(store: Store) -> None:
    store(put_request("/a", "1"), parse_put)
    assert store(delete_range_request("/zz"), parse_delete_range).deleted == 0
    assert store.revision() == 2
    result = store(delete_range_request("/a", prev_kv=True), parse_delete_range)
    assert (result.deleted, result.header.revision, result.prev_kvs[0].key) == (1, 3, b"/a")
    # recreated: a new create_revision and version 1
    store(put_request("/a", "x"), parse_put)
    (kv,) = store(range_request("/a"), parse_range).kvs
    assert (kv.create_revision, kv.version) == (4, 1)


def test_pinned_revision_range_sees_the_past(store: Store) -> None:
    store(put_request("/p/a", "1"), parse_put)  # 2
    store(put_request("/p/a", "2"), parse_put)  # 3
    store(delete_range_request("/p/a"), parse_delete_range)  # 4
    assert store(range_request("/p/a", revision=2), parse_range).kvs[0].value == b"1"
    assert store(range_request("/p/a", revision=3), parse_range).kvs[0].value == b"2"
    assert store(range_request("/p/a", revision=4), parse_range).kvs == ()
    with pytest.raises(FutureRevision):
        store(range_request("/p/a", revision=5), parse_range)


def test_pagination_with_limit(store: Store) -> None:
    for name in "edcba":
        store(put_request(f"/p/{name}", name), parse_put)
    store(put_request("/q", "outside"), parse_put)
    seen: list[bytes] = []
    start, pinned = b"/p/", store.revision()
    while True:
        page = store(range_request(start, range_end=b"/p0", revision=pinned, limit=2), parse_range)
        seen += [kv.key for kv in page.kvs]
        if not page.more:
            break
        start = page.kvs[-1].key + b"\x00"
    assert seen == [b"/p/a", b"/p/b", b"/p/c", b"/p/d", b"/p/e"]
    first = store(range_request("/p/", prefix=True, limit=2), parse_range)
    assert (first.count, first.more) == (5, True)
    only = store(range_request("/p/", prefix=True, keys_only=True), parse_range)
    assert {kv.value for kv in only.kvs} == {b""}
    counted = store(range_request("/p/", prefix=True, count_only=True), parse_range)
    assert (counted.kvs, counted.count) == ((), 5)


def test_txn_compare_on_mod_revision(store: Store) -> None:
    created = store(
        txn_request([key_absent("/h")], [PutOp(b"/h", b"up")], [RangeOp(b"/h")]), parse_txn
    )
    assert created.succeeded and created.header.revision == 2
    again = store(
        txn_request([key_absent("/h")], [PutOp(b"/h", b"up")], [RangeOp(b"/h")]), parse_txn
    )
    assert not again.succeeded and again.header.revision == 2
    guarded = txn_request([mod_revision_is("/h", 2)], [PutOp(b"/h", b"down")])
    assert store(guarded, parse_txn).succeeded
    assert not store(guarded, parse_txn).succeeded  # the key moved on to revision 3


@pytest.mark.parametrize(
    ("compare", "holds"),
    [
        (Compare(b"/k", Target.VALUE, CompareResult.EQUAL, b"v"), True),
        (Compare(b"/k", Target.VALUE, CompareResult.GREATER, b"a"), True),
        (Compare(b"/k", Target.VERSION, CompareResult.EQUAL, 1), True),
        (Compare(b"/k", Target.CREATE, CompareResult.LESS, 2), False),
        (Compare(b"/k", Target.MOD, CompareResult.NOT_EQUAL, 2), False),
        (Compare(b"/missing", Target.VALUE, CompareResult.NOT_EQUAL, b"x"), False),
        (Compare(b"/missing", Target.VERSION, CompareResult.EQUAL, 0), True),
    ],
)
def test_txn_compares(store: Store, compare: Compare, holds: bool) -> None:
    store(put_request("/k", "v"), parse_put)
    assert store(txn_request([compare], []), parse_txn).succeeded is holds


def test_a_txn_writes_one_revision_and_reads_its_own_writes(store: Store) -> None:
    result = store(
        txn_request([], [PutOp(b"/a", b"1"), PutOp(b"/b", b"1"), RangeOp(b"/a")]), parse_txn
    )
    assert result.header.revision == 2
    read = result.responses[2]
    assert isinstance(read, RangeResult) and read.kvs[0].mod_revision == 2


def test_a_txn_writing_a_key_twice_is_refused(store: Store) -> None:
    with pytest.raises(EtcdRequestError, match="duplicate key"):
        store(txn_request([], [PutOp(b"/a", b"1"), PutOp(b"/a", b"2")]), parse_txn)
    assert store.revision() == 1


def test_lease_expiry_deletes_all_its_keys_in_one_revision(store: Store) -> None:
    lease = store(lease_grant_request(1), parse_lease_grant)
    assert lease.ttl == 2  # etcd's minimum
    store(put_request("/i/a", "1", lease=lease.id), parse_put)
    store(put_request("/i/b", "1", lease=lease.id), parse_put)
    events = store.watch(watch_request("/i/", prefix=True))
    events()
    store.now = 1.5
    assert store(lease_keepalive_request(lease.id), parse_lease_keepalive).ttl == 2
    store.now = 3.4
    ttl = store(lease_timetolive_request(lease.id, keys=True), parse_lease_timetolive)
    assert (ttl.ttl, ttl.keys) == (0, (b"/i/a", b"/i/b"))
    assert store.etcd.next_deadline() == 3.5
    store.now = 3.5
    assert store(lease_keepalive_request(lease.id), parse_lease_keepalive).ttl is None
    assert store(lease_timetolive_request(lease.id), parse_lease_timetolive).ttl is None
    assert store.revision() == 4
    (deleted,) = events()
    assert isinstance(deleted, WatchEvents)
    assert [(e.type, e.kv.mod_revision) for e in deleted.events] == [(EventType.DELETE, 4)] * 2
    with pytest.raises(LeaseNotFound):
        store(put_request("/i/c", "1", lease=lease.id), parse_put)
    with pytest.raises(LeaseNotFound):
        store(lease_revoke_request(lease.id), parse_lease_revoke)


def test_revoke_and_explicit_lease_ids(store: Store) -> None:
    assert store(lease_grant_request(30, lease_id=77), parse_lease_grant).id == 77
    with pytest.raises(EtcdRequestError, match="already exists") as caught:
        store(lease_grant_request(30, lease_id=77), parse_lease_grant)
    assert caught.value.http_status == 412
    store(put_request("/a", "1", lease=77), parse_put)
    store(put_request("/a", "2"), parse_put)  # put without lease: detached
    store(lease_revoke_request(77), parse_lease_revoke)
    assert store(range_request("/a"), parse_range).kvs[0].value == b"2"


def test_time_never_goes_back(store: Store) -> None:
    store.now = 5.0
    store.revision()
    store.now = 4.0
    with pytest.raises(ValueError, match="backwards"):
        store.revision()


def test_compaction(store: Store) -> None:
    for value in "1234":
        store(put_request("/a", value), parse_put)  # revisions 2..5
    store(compaction_request(4), parse_compaction)
    with pytest.raises(Compacted):
        store(range_request("/a", revision=3), parse_range)
    assert store(range_request("/a", revision=4), parse_range).kvs[0].value == b"3"
    with pytest.raises(Compacted):
        store(compaction_request(4), parse_compaction)
    with pytest.raises(FutureRevision):
        store(compaction_request(9), parse_compaction)
    canceled = store.watch(watch_request("/a", start_revision=3))()
    assert isinstance(canceled[0], WatchCreated)
    assert isinstance(canceled[1], WatchCanceled) and canceled[1].compact_revision == 4
    assert canceled[1].header.revision == 0  # etcd leaves it out there
    replay = store.watch(watch_request("/a", start_revision=4))()
    assert isinstance(replay[1], WatchEvents)
    assert [e.kv.value for e in replay[1].events] == [b"3", b"4"]


def test_watch_replays_streams_and_reports_progress(store: Store) -> None:
    store(put_request("/p/a", "1"), parse_put)  # 2
    read = store.watch(watch_request("/p/", prefix=True, start_revision=2, prev_kv=True,
                                     progress_notify=True))  # fmt: skip
    created, replay = read()
    assert isinstance(created, WatchCreated) and created.header.revision == 2
    assert isinstance(replay, WatchEvents) and replay.events[0].kv.value == b"1"
    store(put_request("/elsewhere", "x"), parse_put)  # 3, not watched
    store(put_request("/p/a", "2"), parse_put)  # 4
    (live,) = read()
    assert isinstance(live, WatchEvents)
    (event,) = live.events
    assert event.prev_kv is not None and event.prev_kv.value == b"1"
    store.etcd.notify_progress()
    assert read() == [ProgressNotify(0, 4, live.header)]


def test_a_future_start_revision_waits(store: Store) -> None:
    read = store.watch(watch_request("/a", start_revision=3))
    store(put_request("/a", "1"), parse_put)  # 2: before the start
    assert [type(m) for m in read()] == [WatchCreated]
    store(put_request("/a", "2"), parse_put)  # 3
    (events,) = read()
    assert isinstance(events, WatchEvents) and events.events[0].kv.value == b"2"


def test_an_outage_refuses_everything_and_ends_watches(store: Store) -> None:
    lease = store(lease_grant_request(10), parse_lease_grant)
    store(put_request("/i", "1", lease=lease.id), parse_put)
    watch = store.etcd.open_watch(watch_request("/"), store.now)
    watch.drain()
    store.etcd.outage(now=1.0)
    store.now = 50.0
    for request, parse in [
        (range_request("/i"), parse_range),
        (put_request("/i", "2"), parse_put),
        (lease_keepalive_request(lease.id), parse_lease_keepalive),
        (status_request(), parse_status),
    ]:
        with pytest.raises(EtcdUnavailable):
            store(request, parse)
    stream = WatchStream()
    assert stream.feed(watch.read()) == []  # the error line has no newline...
    ending = stream.end()  # ...and the body ends right after it
    assert isinstance(ending[0], WatchError) and ending[0].http_code == 503
    # Back: the lease that ran out during the outage gets a full TTL again.
    store.etcd.recover(now=60.0)
    store.now = 60.0
    assert store(range_request("/i"), parse_range).count == 1
    store.now = 70.0
    assert store(range_request("/i"), parse_range).count == 0


def test_unknown_paths_and_bad_bodies(store: Store) -> None:
    assert store.etcd.handle(GatewayRequest("/v3alpha/kv/range", b"{}"), 0.0)[0] == 404
    status, _ = store.etcd.handle(GatewayRequest("/v3/kv/put", b'{"key":"!!"}'), 0.0)
    assert status == 400
    with pytest.raises(EtcdRequestError, match="key is not provided"):
        store(GatewayRequest("/v3/kv/put", b"{}"), parse_put)
    assert store(GatewayRequest("/v3beta/kv/range", b'{"key":"YQ=="}'), parse_range).count == 0
