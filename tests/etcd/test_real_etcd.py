"""Smoke tests against a real etcd 3.4: the parsers read its real answers, and MemoryEtcd,
sent the same requests, answers the same thing field for field (cluster and member ids
aside, and revisions taken relative to where each store started)."""

from __future__ import annotations

import itertools
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

import httpx
import pytest

import sd_etcd

from .etcd_process import EtcdCluster, etcd_missing_reason, running_cluster

pytestmark = pytest.mark.skipif(
    etcd_missing_reason() is not None, reason=str(etcd_missing_reason())
)

T = TypeVar("T")
PROGRESS_INTERVAL = ["--experimental-watch-progress-notify-interval", "200ms"]
_lease_ids = itertools.count(os.getpid() * 1000 + 1)


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with running_cluster(1, extra_args=PROGRESS_INTERVAL) as cluster:
        yield cluster


def post(client: httpx.Client, url: str, request: sd_etcd.GatewayRequest) -> tuple[int, bytes]:
    answer = client.post(url + request.path, content=request.body, headers=dict(request.headers))
    return answer.status_code, answer.content


def normalize(value: Any, base: int) -> Any:
    """Ids zeroed, revisions made relative to `base` (0 stays 0: it means "absent")."""
    if isinstance(value, sd_etcd.Header):
        return sd_etcd.Header(revision=value.revision - base if value.revision else 0)
    if is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for item in fields(value):
            inner = getattr(value, item.name)
            if item.name.endswith("revision") and isinstance(inner, int) and inner:
                changes[item.name] = inner - base
            else:
                changes[item.name] = normalize(inner, base)
        return replace(value, **changes)
    if isinstance(value, tuple | list):
        return type(value)(normalize(item, base) for item in value)
    return value


class Dual:
    """The same requests to the real etcd and to a fresh MemoryEtcd, results compared."""

    def __init__(self, cluster: EtcdCluster) -> None:
        self.url = cluster.url
        self.client = httpx.Client(timeout=10.0)
        self.memory = sd_etcd.MemoryEtcd()
        self.now = 0.0
        self.real_base = sd_etcd.parse_range(
            *post(self.client, self.url, sd_etcd.range_request("-"))
        ).header.revision
        self.memory_base = self.memory.revision

    def build(
        self, make: sd_etcd.GatewayRequest | Callable[[int], sd_etcd.GatewayRequest]
    ) -> tuple[sd_etcd.GatewayRequest, sd_etcd.GatewayRequest]:
        if isinstance(make, sd_etcd.GatewayRequest):
            return make, make
        return make(self.real_base), make(self.memory_base)

    def __call__(
        self,
        make: sd_etcd.GatewayRequest | Callable[[int], sd_etcd.GatewayRequest],
        parse: Callable[[int, bytes], T],
    ) -> T:
        real_request, memory_request = self.build(make)
        real = parse(*post(self.client, self.url, real_request))
        mine = parse(*self.memory.handle(memory_request, self.now))
        assert normalize(real, self.real_base) == normalize(mine, self.memory_base)
        return real

    def error(
        self,
        make: sd_etcd.GatewayRequest | Callable[[int], sd_etcd.GatewayRequest],
        parse: Callable[[int, bytes], object],
    ) -> sd_etcd.EtcdError:
        real_request, memory_request = self.build(make)
        caught: list[sd_etcd.EtcdError] = []
        answers = (
            post(self.client, self.url, real_request),
            self.memory.handle(memory_request, self.now),
        )
        for answer in answers:
            with pytest.raises(sd_etcd.EtcdError) as error:
                parse(*answer)
            caught.append(error.value)
        real, mine = caught
        assert (type(real), real.http_status, real.grpc_code, real.message) == (
            type(mine), mine.http_status, mine.grpc_code, mine.message,
        )  # fmt: skip
        return real


@pytest.fixture
def dual(etcd: EtcdCluster) -> Iterator[Dual]:
    both = Dual(etcd)
    yield both
    both.client.close()


def test_kv_answers_match(dual: Dual) -> None:
    dual(sd_etcd.put_request("/kv/a", "v1"), sd_etcd.parse_put)
    assert (
        dual(sd_etcd.put_request("/kv/a", "v2", prev_kv=True), sd_etcd.parse_put).prev_kv
        is not None
    )
    dual(sd_etcd.put_request("/kv/b", ""), sd_etcd.parse_put)
    dual(sd_etcd.put_request("/kv/c", "v"), sd_etcd.parse_put)
    page = dual(sd_etcd.range_request("/kv/", prefix=True, limit=2), sd_etcd.parse_range)
    assert (page.count, page.more, len(page.kvs)) == (3, True, 2)
    dual(sd_etcd.range_request("/kv/", prefix=True, keys_only=True), sd_etcd.parse_range)
    dual(sd_etcd.range_request("/kv/", prefix=True, count_only=True), sd_etcd.parse_range)
    dual(lambda base: sd_etcd.range_request("/kv/a", revision=base + 1), sd_etcd.parse_range)
    dual(sd_etcd.range_request("/kv/none"), sd_etcd.parse_range)
    dual(sd_etcd.delete_range_request("/kv/b", prev_kv=True), sd_etcd.parse_delete_range)
    assert dual(sd_etcd.delete_range_request("/kv/b"), sd_etcd.parse_delete_range).deleted == 0
    dual.error(sd_etcd.range_request("/kv/a", revision=10**9), sd_etcd.parse_range)
    dual.error(sd_etcd.GatewayRequest("/v3/kv/put", b"{}"), sd_etcd.parse_put)
    status = sd_etcd.parse_status(*post(dual.client, dual.url, sd_etcd.status_request()))
    assert status.header.cluster_id and status.leader == status.header.member_id


def test_txn_answers_match(dual: Dual) -> None:
    create = sd_etcd.txn_request(
        [sd_etcd.key_absent("/tx/a")], [sd_etcd.PutOp(b"/tx/a", b"1")], [sd_etcd.RangeOp(b"/tx/a")]
    )
    assert dual(create, sd_etcd.parse_txn).succeeded
    assert not dual(create, sd_etcd.parse_txn).succeeded
    guarded = lambda base: sd_etcd.txn_request(  # noqa: E731
        [sd_etcd.mod_revision_is("/tx/a", base + 1)],
        [sd_etcd.PutOp(b"/tx/a", b"2"), sd_etcd.RangeOp(b"/tx/a")],
    )
    assert dual(guarded, sd_etcd.parse_txn).succeeded
    assert not dual(guarded, sd_etcd.parse_txn).succeeded
    dual.error(
        sd_etcd.txn_request([], [sd_etcd.PutOp(b"/tx/a", b"1"), sd_etcd.PutOp(b"/tx/a", b"2")]),
        sd_etcd.parse_txn,
    )


def test_lease_answers_match(dual: Dual) -> None:
    lease_id = next(_lease_ids)
    assert (
        dual(sd_etcd.lease_grant_request(1, lease_id=lease_id), sd_etcd.parse_lease_grant).ttl == 2
    )
    dual.error(sd_etcd.lease_grant_request(5, lease_id=lease_id), sd_etcd.parse_lease_grant)
    dual(sd_etcd.put_request("/ls/a", "1", lease=lease_id), sd_etcd.parse_put)
    dual(sd_etcd.put_request("/ls/b", "1", lease=lease_id), sd_etcd.parse_put)
    assert dual(sd_etcd.lease_keepalive_request(lease_id), sd_etcd.parse_lease_keepalive).ttl == 2
    ttl = sd_etcd.parse_lease_timetolive(
        *post(dual.client, dual.url, sd_etcd.lease_timetolive_request(lease_id, keys=True))
    )
    # etcd keeps a lease's keys in a Go map: their order in the answer is arbitrary.
    assert sorted(ttl.keys) == [b"/ls/a", b"/ls/b"] and ttl.granted_ttl == 2
    error = dual.error(sd_etcd.put_request("/ls/c", "1", lease=lease_id + 10**6), sd_etcd.parse_put)
    assert isinstance(error, sd_etcd.LeaseNotFound) and error.http_status == 404
    # Expiry: wait for the real one (no fake clock there), jump the memory one.
    deadline = time.monotonic() + 15
    # (asked with timetolive: a keepalive would keep it alive)
    while (
        sd_etcd.parse_lease_timetolive(
            *post(dual.client, dual.url, sd_etcd.lease_timetolive_request(lease_id))
        ).ttl
        is not None
    ):
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.5)  # keeping a real lease from being kept alive: no fake clock applies
    dual.now = 3.0
    dual(sd_etcd.lease_keepalive_request(lease_id), sd_etcd.parse_lease_keepalive)
    dual(sd_etcd.lease_timetolive_request(lease_id), sd_etcd.parse_lease_timetolive)
    # Both keys went in one revision.
    gone = dual(sd_etcd.range_request("/ls/", prefix=True), sd_etcd.parse_range)
    assert gone.count == 0
    dual.error(sd_etcd.lease_revoke_request(lease_id), sd_etcd.parse_lease_revoke)
    other = next(_lease_ids)
    dual(sd_etcd.lease_grant_request(60, lease_id=other), sd_etcd.parse_lease_grant)
    dual(sd_etcd.put_request("/ls/c", "1", lease=other), sd_etcd.parse_put)
    dual(sd_etcd.lease_revoke_request(other), sd_etcd.parse_lease_revoke)
    dual(sd_etcd.range_request("/ls/", prefix=True), sd_etcd.parse_range)


def _reader(
    client: httpx.Client,
    url: str,
    request: sd_etcd.GatewayRequest,
    out: queue.Queue[sd_etcd.WatchMessage],
) -> Callable[[], None]:
    """Read a real watch on a thread, feeding chunks to the parser as they arrive."""
    done = threading.Event()

    def run() -> None:
        stream = sd_etcd.WatchFramer()
        with client.stream(
            "POST", url + request.path, content=request.body, headers=dict(request.headers)
        ) as answer:
            for chunk in answer.iter_raw():
                for message in stream.feed(chunk):
                    out.put(message)
                if done.is_set():
                    return
        for message in stream.end():
            out.put(message)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def stop() -> None:
        done.set()
        thread.join(timeout=5)

    return stop


def _next(
    out: queue.Queue[sd_etcd.WatchMessage], *, skip_progress: bool = True
) -> sd_etcd.WatchMessage:
    while True:
        message = out.get(timeout=10)
        if not (skip_progress and isinstance(message, sd_etcd.ProgressNotify)):
            return message


def test_watch_messages_match(dual: Dual) -> None:
    dual(sd_etcd.put_request("/w/a", "1"), sd_etcd.parse_put)
    dual(sd_etcd.put_request("/w/a", "2"), sd_etcd.parse_put)

    def make(base: int) -> sd_etcd.GatewayRequest:
        return sd_etcd.watch_request(
            "/w/", prefix=True, start_revision=base + 1, prev_kv=True, progress_notify=True
        )

    real_request, memory_request = dual.build(make)
    out: queue.Queue[sd_etcd.WatchMessage] = queue.Queue()
    client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
    stop = _reader(client, dual.url, real_request, out)
    try:
        memory_watch = dual.memory.open_watch(memory_request, dual.now)
        memory_stream = sd_etcd.WatchFramer()
        real: list[sd_etcd.WatchMessage] = [_next(out), _next(out)]
        dual(sd_etcd.delete_range_request("/w/a"), sd_etcd.parse_delete_range)
        dual(sd_etcd.put_request("/w/b", "x"), sd_etcd.parse_put)
        real += [_next(out), _next(out)]
        progress = _next(out, skip_progress=False)
        while not isinstance(progress, sd_etcd.ProgressNotify):
            progress = _next(out, skip_progress=False)
        dual.memory.notify_progress()
        mine = memory_stream.feed(memory_watch.read())
        assert [type(m) for m in real] == [
            sd_etcd.WatchCreated,
            sd_etcd.WatchEvents,
            sd_etcd.WatchEvents,
            sd_etcd.WatchEvents,
        ]
        assert normalize([*real, progress], dual.real_base) == normalize(mine, dual.memory_base)
    finally:
        stop()
        client.close()


def test_compaction_matches(dual: Dual) -> None:
    for value in "123":
        dual(sd_etcd.put_request("/c/a", value), sd_etcd.parse_put)
    dual(lambda base: sd_etcd.compaction_request(base + 2), sd_etcd.parse_compaction)
    error = dual.error(
        lambda base: sd_etcd.range_request("/c/a", revision=base + 1), sd_etcd.parse_range
    )
    assert isinstance(error, sd_etcd.Compacted)
    dual(lambda base: sd_etcd.range_request("/c/a", revision=base + 2), sd_etcd.parse_range)
    # A watch from a compacted revision: created, then canceled with compact_revision.
    real_request, memory_request = dual.build(
        lambda base: sd_etcd.watch_request("/c/a", start_revision=base + 1)
    )
    with httpx.Client(timeout=httpx.Timeout(10.0, read=None)) as client:
        out: queue.Queue[sd_etcd.WatchMessage] = queue.Queue()
        stop = _reader(client, dual.url, real_request, out)
        real = [_next(out), _next(out)]
        stop()
    mine = sd_etcd.WatchFramer().feed(dual.memory.open_watch(memory_request, dual.now).read())
    assert (
        isinstance(real[1], sd_etcd.WatchCanceled)
        and real[1].compact_revision == dual.real_base + 2
    )
    assert normalize(real, dual.real_base) == normalize(mine, dual.memory_base)


def test_sigterm_ends_a_watch_with_an_in_band_error() -> None:
    with (
        running_cluster(1) as cluster,
        httpx.Client(timeout=httpx.Timeout(10.0, read=None)) as client,
    ):
        request = sd_etcd.watch_request("/", prefix=True)
        out: queue.Queue[sd_etcd.WatchMessage] = queue.Queue()
        stop = _reader(client, cluster.url, request, out)
        assert isinstance(_next(out), sd_etcd.WatchCreated)
        cluster.members[0].signal(signal.SIGTERM)
        error, closed = _next(out), _next(out)
        stop()
    assert isinstance(error, sd_etcd.WatchError) and error.http_code in (408, 503)
    assert closed == sd_etcd.WatchClosed(truncated=False)


def test_a_three_member_cluster_elects_a_leader_and_serves_a_put() -> None:
    with running_cluster(3) as cluster, httpx.Client(timeout=10.0) as client:
        statuses = [
            sd_etcd.parse_status(*post(client, url, sd_etcd.status_request()))
            for url in cluster.client_urls
        ]
        leaders = {status.leader for status in statuses}
        assert len(leaders) == 1 and leaders <= {s.header.member_id for s in statuses}
        assert len({status.header.cluster_id for status in statuses}) == 1
        put = sd_etcd.parse_put(
            *post(client, cluster.client_urls[0], sd_etcd.put_request("/3/a", "1"))
        )
        read = sd_etcd.parse_range(
            *post(client, cluster.client_urls[2], sd_etcd.range_request("/3/a"))
        )
        assert read.kvs[0].value == b"1" and read.header.revision >= put.header.revision
