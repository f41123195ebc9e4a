"""`MemoryEtcd`: an in-memory store with etcd's semantics, for deterministic tests and
multi-node simulations on one fake clock.

What it keeps from etcd: one global revision; per key create/mod revision and version;
history until compaction (pinned-revision ranges, watch replay); leases that expire on the
caller's clock, deleting all their keys in one revision; transactions guarded by compares;
`limit`/`more` pagination; watches that replay, stream, report progress on request and are
canceled with `compact_revision` when their start was compacted; a store outage.

`handle(request, now)` answers a `GatewayRequest` with the gateway's own bytes (base64,
int64 strings, defaults left out), and `MemoryWatch.read()` renders a watch as the
gateway's newline-delimited stream, so a simulation exercises the real request builders,
response parsers and watch parser end to end. Time only moves when a caller passes `now`.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from . import values
from .codec import ALL_KEYS_END, JsonObject, get_bool, get_int, loads_object
from .errors import (
    GRPC_FAILED_PRECONDITION,
    GRPC_INVALID_ARGUMENT,
    GRPC_NOT_FOUND,
    GRPC_OUT_OF_RANGE,
    GRPC_UNAVAILABLE,
    GRPC_UNKNOWN,
    Compacted,
    EtcdError,
    EtcdProtocolError,
    EtcdRequestError,
    EtcdUnavailable,
    FutureRevision,
    LeaseNotFound,
)
from .requests import (
    Compare,
    CompareResult,
    DeleteRangeOp,
    GatewayRequest,
    PutOp,
    RangeOp,
    Target,
    TxnOp,
    WatchCreate,
    txn_from_json,
)
from .responses import (
    render_acknowledged,
    render_delete_range,
    render_error,
    render_lease_grant,
    render_lease_keepalive,
    render_lease_timetolive,
    render_put,
    render_range,
    render_status,
    render_txn,
)
from .watch import (
    ProgressNotify,
    WatchCanceled,
    WatchCreated,
    WatchError,
    WatchEvents,
    WatchMessage,
    render_line,
)

__all__ = [
    "MemoryEtcd",
    "MemoryWatch",
]


# etcd's answers, word for word, so that errors parse the same from either store.
_COMPACTED = "etcdserver: mvcc: required revision has been compacted"
_FUTURE = "etcdserver: mvcc: required revision is a future revision"
_LEASE_NOT_FOUND = "etcdserver: requested lease not found"
_LEASE_EXISTS = "etcdserver: lease already exists"
_NO_KEY = "etcdserver: key is not provided"
_DUPLICATE_KEY = "etcdserver: duplicate key given in txn request"
_TIMED_OUT = "etcdserver: request timed out"
_NO_LEADER = "etcdserver: no leader"
_DEADLINE = "context deadline exceeded"

_RAFT_TERM = 2


def _compacted() -> Compacted:
    return Compacted(_COMPACTED, http_status=400, grpc_code=GRPC_OUT_OF_RANGE)


def _future() -> FutureRevision:
    return FutureRevision(_FUTURE, http_status=400, grpc_code=GRPC_OUT_OF_RANGE)


def _lease_not_found() -> LeaseNotFound:
    return LeaseNotFound(_LEASE_NOT_FOUND, http_status=404, grpc_code=GRPC_NOT_FOUND)


def _invalid(message: str) -> EtcdRequestError:
    return EtcdRequestError(message, http_status=400, grpc_code=GRPC_INVALID_ARGUMENT)


def _in_range(key: bytes, start: bytes, end: bytes) -> bool:
    if not end:
        return key == start
    if end == ALL_KEYS_END:
        return key >= start
    return start <= key < end


@dataclass(slots=True)
class _Lease:
    id: int
    granted_ttl: int
    expires_at: float
    keys: set[bytes] = field(default_factory=set)


class MemoryWatch:
    """One watch on a `MemoryEtcd`: the messages a gateway watch stream would carry, in
    order. Read them as values (`drain()`) or as the gateway's bytes (`read()`)."""

    def __init__(self, etcd: MemoryEtcd, create: WatchCreate) -> None:
        self._etcd = etcd
        self.create = create
        self._pending: deque[WatchMessage] = deque()
        # Closed by the store (canceled, or an error that ends the stream): no more events.
        self.canceled = False
        self.ended = False

    def drain(self) -> list[WatchMessage]:
        messages = list(self._pending)
        self._pending.clear()
        return messages

    def read(self) -> bytes:
        """The pending messages as the gateway's body bytes. An ending error is written
        without its newline, as etcd does just before it closes the connection."""
        body = b"".join(render_line(message) for message in self.drain())
        return body[:-1] if self.ended and body else body

    def close(self) -> None:
        """The client hangs up (the only way to cancel a gateway watch)."""
        self._etcd._watches.discard(self)

    def _matches(self, key: bytes) -> bool:
        return _in_range(key, self.create.key, self.create.range_end)

    def _send(self, message: WatchMessage) -> None:
        if not self.canceled:
            self._pending.append(message)

    def _send_events(self, events: Sequence[values.KvEvent], header: values.Header) -> None:
        start = self.create.start_revision
        mine = tuple(
            event if self.create.prev_kv else replace(event, prev_kv=None)
            for event in events
            if self._matches(event.kv.key) and event.kv.mod_revision >= start
        )
        if mine:
            self._send(WatchEvents(0, mine, header))

    def _end(self, message: WatchMessage) -> None:
        self._send(message)
        self.canceled = True


class MemoryEtcd:
    """A single-member etcd in memory. Every call takes `now`, which must never go back;
    leases whose deadline is at or before `now` expire before the call is served."""

    def __init__(
        self,
        *,
        cluster_id: int = 0x1D5C_C0DE_0000_0001,
        member_id: int = 0x1D5C_C0DE_0000_00A1,
        min_lease_ttl: int = 2,
        first_lease_id: int = 0x694D_0000_0000_0001,
    ) -> None:
        self.cluster_id = cluster_id
        self.member_id = member_id
        self.min_lease_ttl = min_lease_ttl
        self._next_lease_id = first_lease_id
        self._revision = 1
        self._compact_revision = 0
        self._now = float("-inf")
        self._available = True
        # Per key, its versions in revision order; a deletion is a KeyValue with
        # create_revision 0 (exactly the `kv` of a DELETE watch event).
        self._history: dict[bytes, list[values.KeyValue]] = {}
        self._sorted_keys: list[bytes] = []
        self._events: list[values.KvEvent] = []
        self._leases: dict[int, _Lease] = {}
        self._watches: set[MemoryWatch] = set()

    # -- clock, outage -------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compact_revision(self) -> int:
        return self._compact_revision

    @property
    def available(self) -> bool:
        return self._available

    def advance(self, now: float) -> None:
        """Let time pass: expire every lease due by `now` (nothing expires while the store
        is down, as a member without quorum expires nothing)."""
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        self._now = now
        if not self._available:
            return
        due = sorted(
            (lease for lease in self._leases.values() if lease.expires_at <= now),
            key=lambda lease: (lease.expires_at, lease.id),
        )
        for lease in due:
            self._revoke(lease)

    def next_deadline(self) -> float | None:
        """When the next lease expires (for a driver or simulation to wake up)."""
        if not self._available or not self._leases:
            return None
        return min(lease.expires_at for lease in self._leases.values())

    def outage(self, now: float) -> None:
        """The store loses quorum: every call raises `EtcdUnavailable`, and every watch ends
        with the error a leader-requiring gateway watch gets."""
        self.advance(now)
        self._available = False
        for watch in list(self._watches):
            watch._end(WatchError(503, GRPC_UNAVAILABLE, _NO_LEADER))
            watch.ended = True
            self._watches.discard(watch)

    def recover(self, now: float, *, restart_leases: bool = True) -> None:
        """Quorum is back. As with a real leader change, every lease starts a full TTL
        again (etcd#9395): leases that ran out during the outage expire one TTL later.
        `restart_leases=False`: a stalled member that resumes as leader (SIGSTOP, a long
        pause) keeps its deadlines and revokes at once every lease that ran out."""
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        for lease in self._leases.values() if restart_leases else ():
            lease.expires_at = max(lease.expires_at, now + lease.granted_ttl)
        self._available = True
        self.advance(now)

    def wipe(self, now: float) -> None:
        """etcd restarted on an empty data dir: every key, lease and revision is gone
        (the revision starts again at 1), every open watch is cut, and the cluster id
        stays the same (etcd derives it from the member's name, peer URL and token)."""
        self.advance(now)
        for watch in list(self._watches):
            watch.ended = True
        self._watches.clear()
        self._revision = 1
        self._compact_revision = 0
        self._history.clear()
        self._sorted_keys.clear()
        self._events.clear()
        self._leases.clear()

    def cancel_lagging_watches(self) -> None:
        """What etcd does to a watch whose reader fell behind a compaction: the events
        it has not read are dropped, and it is canceled with `compact_revision`."""
        for watch in list(self._watches):
            if any(isinstance(message, WatchEvents) for message in watch._pending):
                watch._pending.clear()
                header = replace(self._header(), revision=0)  # etcd leaves it out here
                watch._end(WatchCanceled(0, self._compact_revision, "", header))
                self._watches.discard(watch)

    def _enter(self, now: float, *, write: bool) -> None:
        self.advance(now)
        if not self._available:
            # Measured on 3.4: a read without quorum is 503/14 "request timed out", a write
            # 500/2 "context deadline exceeded" (both after 7 s).
            if write:
                raise EtcdUnavailable(_DEADLINE, http_status=500, grpc_code=GRPC_UNKNOWN)
            raise EtcdUnavailable(_TIMED_OUT, http_status=503, grpc_code=GRPC_UNAVAILABLE)

    def _header(self, revision: int | None = None) -> values.Header:
        return values.Header(
            self.cluster_id,
            self.member_id,
            self._revision if revision is None else revision,
            _RAFT_TERM,
        )

    # -- reads ---------------------------------------------------------------------

    def _at(self, key: bytes, revision: int) -> values.KeyValue | None:
        """`key` as it was at `revision`, or None if it did not exist then."""
        versions = self._history.get(key, [])
        index = bisect.bisect_right([kv.mod_revision for kv in versions], revision)
        if index == 0:
            return None
        kv = versions[index - 1]
        return kv if kv.create_revision else None

    def _keys_in(self, start: bytes, end: bytes) -> Iterator[bytes]:
        if not end:
            if start in self._history:
                yield start
            return
        index = bisect.bisect_left(self._sorted_keys, start)
        for key in self._sorted_keys[index:]:
            if end != ALL_KEYS_END and key >= end:
                return
            yield key

    def _live(self, start: bytes, end: bytes, revision: int) -> list[values.KeyValue]:
        found = (self._at(key, revision) for key in self._keys_in(start, end))
        return [kv for kv in found if kv is not None]

    def _read_revision(self, revision: int, current: int) -> int:
        if revision <= 0:
            return current
        if revision > current:
            raise _future()
        if revision < self._compact_revision:
            raise _compacted()
        return revision

    def range(self, op: RangeOp, now: float) -> values.RangeResult:
        self._enter(now, write=False)
        return self._range(op, self._revision)

    def _range(self, op: RangeOp, current: int) -> values.RangeResult:
        if not op.key:
            raise _invalid(_NO_KEY)
        revision = self._read_revision(op.revision, current)
        kvs = self._live(op.key, op.range_end, revision)
        more = 0 < op.limit < len(kvs)
        shown = kvs[: op.limit] if op.limit > 0 else kvs
        if op.keys_only:
            shown = [replace(kv, value=b"") for kv in shown]
        return values.RangeResult(
            kvs=() if op.count_only else tuple(shown),
            count=len(kvs),
            more=more,
            header=self._header(current),
        )

    # -- writes ----------------------------------------------------------------------

    def put(self, op: PutOp, now: float) -> values.PutResult:
        self._enter(now, write=True)
        result = self._write([op])[0]
        assert isinstance(result, values.PutResult)
        return result

    def delete_range(self, op: DeleteRangeOp, now: float) -> values.DeleteRangeResult:
        self._enter(now, write=True)
        result = self._write([op])[0]
        assert isinstance(result, values.DeleteRangeResult)
        return result

    def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[TxnOp],
        failure: Sequence[TxnOp] = (),
        *,
        now: float,
    ) -> values.TxnResult:
        self._enter(now, write=True)
        for branch in (success, failure):
            self._check_branch(branch)
        succeeded = all(self._holds(item) for item in compare)
        responses = self._write(success if succeeded else failure)
        return values.TxnResult(succeeded, tuple(responses), self._header())

    def _check_branch(self, ops: Sequence[TxnOp]) -> None:
        """etcd refuses a txn branch that writes one key twice, or names no key (both
        branches are validated before anything runs)."""
        puts = [op.key for op in ops if isinstance(op, PutOp)]
        deletes = [op for op in ops if isinstance(op, DeleteRangeOp)]
        if len(set(puts)) != len(puts) or any(
            _in_range(key, op.key, op.range_end) for key in puts for op in deletes
        ):
            raise _invalid(_DUPLICATE_KEY)
        if any(not op.key for op in ops):
            raise _invalid(_NO_KEY)

    def _holds(self, compare: Compare) -> bool:
        kv = self._at(compare.key, self._revision)
        if kv is None:
            if compare.target is Target.VALUE:
                return False  # etcd: a value compare on a missing key always fails
            kv = values.KeyValue(compare.key)
        actual: int | bytes
        if compare.target is Target.VALUE:
            actual = kv.value
        elif compare.target is Target.VERSION:
            actual = kv.version
        else:
            actual = kv.create_revision if compare.target is Target.CREATE else kv.mod_revision
        operand = compare.operand
        if isinstance(actual, bytes) != isinstance(operand, bytes):
            raise _invalid(f"compare {compare.target.name} with {operand!r}")
        outcome: dict[CompareResult, Callable[[], bool]] = {
            CompareResult.EQUAL: lambda: actual == operand,
            CompareResult.NOT_EQUAL: lambda: actual != operand,
            CompareResult.GREATER: lambda: actual > operand,  # type: ignore[operator]
            CompareResult.LESS: lambda: actual < operand,  # type: ignore[operator]
        }
        return outcome[compare.result]()

    def _write(self, ops: Sequence[TxnOp]) -> list[values.TxnResponse]:
        """Run `ops` as one revision: every change gets revision + 1, which becomes the
        store's revision if anything changed (a no-op write does not bump it)."""
        self._check_branch(ops)
        # Only the branch that runs needs its leases (etcd checks them as it applies).
        if any(isinstance(op, PutOp) and op.lease and op.lease not in self._leases for op in ops):
            raise _lease_not_found()
        revision = self._revision + 1
        events: list[values.KvEvent] = []
        answers: list[values.TxnResponse] = []
        for op in ops:
            # Reads inside the txn see its earlier writes, as in etcd.
            current = revision if events else self._revision
            if isinstance(op, RangeOp):
                answers.append(self._range(op, current))
            elif isinstance(op, PutOp):
                answers.append(self._put(op, revision, events))
            else:
                answers.append(self._delete(op, revision, events))
        if events:
            self._revision = revision
            self._publish(events)
        # Inside a txn each answer's header carries the txn's resulting revision.
        final = self._header()
        return [replace(answer, header=final) for answer in answers]

    def _record(
        self, kv: values.KeyValue, prev: values.KeyValue | None, events: list[values.KvEvent]
    ) -> None:
        if kv.key not in self._history:
            bisect.insort(self._sorted_keys, kv.key)
            self._history[kv.key] = []
        versions = self._history[kv.key]
        if versions and versions[-1].mod_revision == kv.mod_revision:
            versions[-1] = kv
        else:
            versions.append(kv)
        kind = values.EventType.PUT if kv.create_revision else values.EventType.DELETE
        events.append(values.KvEvent(kind, kv, prev))

    def _put(self, op: PutOp, revision: int, events: list[values.KvEvent]) -> values.PutResult:
        prev = self._at(op.key, revision)
        kv = values.KeyValue(
            key=op.key,
            value=op.value,
            create_revision=prev.create_revision if prev else revision,
            mod_revision=revision,
            version=prev.version + 1 if prev else 1,
            lease=op.lease,
        )
        if prev is not None and prev.lease and prev.lease in self._leases:
            self._leases[prev.lease].keys.discard(op.key)
        if op.lease:
            self._leases[op.lease].keys.add(op.key)
        self._record(kv, prev, events)
        return values.PutResult(self._header(), prev if op.prev_kv else None)

    def _delete(
        self, op: DeleteRangeOp, revision: int, events: list[values.KvEvent]
    ) -> values.DeleteRangeResult:
        gone = self._live(op.key, op.range_end, revision)
        for prev in gone:
            if prev.lease in self._leases:
                self._leases[prev.lease].keys.discard(prev.key)
            self._record(values.KeyValue(prev.key, mod_revision=revision), prev, events)
        return values.DeleteRangeResult(
            len(gone), self._header(), tuple(gone) if op.prev_kv else ()
        )

    def _publish(self, events: list[values.KvEvent]) -> None:
        self._events.extend(events)
        header = self._header()
        for watch in self._watches:
            watch._send_events(events, header)

    # -- leases ----------------------------------------------------------------------

    def lease_grant(self, ttl: int, now: float, *, lease_id: int = 0) -> values.LeaseGrant:
        self._enter(now, write=True)
        if lease_id in self._leases:
            raise EtcdRequestError(
                _LEASE_EXISTS, http_status=412, grpc_code=GRPC_FAILED_PRECONDITION
            )
        if not lease_id:
            while self._next_lease_id in self._leases:
                self._next_lease_id += 1
            lease_id = self._next_lease_id
            self._next_lease_id += 1
        granted = max(ttl, self.min_lease_ttl)
        self._leases[lease_id] = _Lease(lease_id, granted, now + granted)
        return values.LeaseGrant(lease_id, granted, self._header())

    def lease_keepalive(self, lease_id: int, now: float) -> values.KeepAlive:
        self.advance(now)
        if not self._available:  # measured: 503 with the in-band body, "no leader"
            raise EtcdUnavailable(_NO_LEADER, http_status=503, grpc_code=GRPC_UNAVAILABLE)
        lease = self._leases.get(lease_id)
        if lease is None:
            return values.KeepAlive(lease_id, None, self._header())
        lease.expires_at = now + lease.granted_ttl
        return values.KeepAlive(lease_id, lease.granted_ttl, self._header())

    def lease_revoke(self, lease_id: int, now: float) -> values.Acknowledged:
        self._enter(now, write=True)
        lease = self._leases.get(lease_id)
        if lease is None:
            raise _lease_not_found()
        self._revoke(lease)
        return values.Acknowledged(self._header())

    def _revoke(self, lease: _Lease) -> None:
        """Drop the lease and delete all its keys in one revision."""
        del self._leases[lease.id]
        ops = [DeleteRangeOp(key) for key in sorted(lease.keys)]
        if ops:
            self._write(ops)

    def lease_timetolive(
        self, lease_id: int, now: float, *, keys: bool = False
    ) -> values.LeaseTimeToLive:
        self._enter(now, write=False)
        lease = self._leases.get(lease_id)
        if lease is None:
            return values.LeaseTimeToLive(lease_id, None, 0, (), self._header())
        return values.LeaseTimeToLive(
            lease_id,
            int(lease.expires_at - now),
            lease.granted_ttl,
            tuple(sorted(lease.keys)) if keys else (),
            self._header(),
        )

    # -- compaction, status ----------------------------------------------------------

    def compact(self, revision: int, now: float) -> values.Acknowledged:
        """Forget history before `revision` (a read or watch at `revision` still works)."""
        self._enter(now, write=True)
        if revision > self._revision:
            raise _future()
        if revision <= self._compact_revision:
            raise _compacted()
        self._compact_revision = revision
        for key in list(self._history):
            versions = self._history[key]
            keep = bisect.bisect_right([kv.mod_revision for kv in versions], revision)
            survivors = versions[keep:]
            latest = versions[keep - 1] if keep else None
            if latest is not None and latest.create_revision:
                survivors.insert(0, latest)
            if survivors:
                self._history[key] = survivors
            else:
                del self._history[key]
                self._sorted_keys.remove(key)
        self._events = [e for e in self._events if e.kv.mod_revision >= revision]
        return values.Acknowledged(self._header())

    def status(self, now: float) -> values.Status:
        self._enter(now, write=False)
        return values.Status("3.4.23", self.member_id, self._revision, 0, self._header())

    # -- watches ---------------------------------------------------------------------

    def watch(self, create: WatchCreate, now: float) -> MemoryWatch:
        """Open a watch. From a compacted start it is created, then canceled with
        `compact_revision` (and stays open until closed); from a future start it waits."""
        self._enter(now, write=False)
        start = create.start_revision or self._revision + 1
        watch = MemoryWatch(self, replace(create, start_revision=start))
        watch._send(WatchCreated(0, self._header()))
        if start < self._compact_revision:
            header = replace(self._header(), revision=0)  # etcd leaves it out here
            watch._end(WatchCanceled(0, self._compact_revision, "", header))
            return watch
        watch._send_events(self._events, self._header())
        self._watches.add(watch)
        return watch

    def notify_progress(self) -> None:
        """What etcd sends every progress interval to watches that asked for it."""
        for watch in self._watches:
            if watch.create.progress_notify:
                watch._send(ProgressNotify(0, self._revision, self._header()))

    # -- the gateway -----------------------------------------------------------------

    def handle(self, request: GatewayRequest, now: float) -> tuple[int, bytes]:
        """Answer one gateway request with the status and bytes etcd's gateway would."""
        path = request.path.replace("/v3beta/", "/v3/", 1)
        route = _ROUTES.get(path)
        if route is None:
            return 404, b"Not Found\n"
        try:
            return 200, route(self, loads_object(request.body), now)
        except EtcdProtocolError as error:  # the request did not decode: the caller's fault
            return render_error(_invalid(error.message))
        except EtcdError as error:
            return render_error(error, streaming=path in _STREAMING)

    def open_watch(self, request: GatewayRequest, now: float) -> MemoryWatch:
        """Open the watch a `watch_request()` describes."""
        if request.path.replace("/v3beta/", "/v3/", 1) != "/v3/watch":
            raise ValueError(f"not a watch request: {request.path}")
        return self.watch(WatchCreate.from_json(loads_object(request.body)), now)


def _txn(etcd: MemoryEtcd, body: JsonObject, now: float) -> bytes:
    compare, success, failure = txn_from_json(body)
    return render_txn(etcd.txn(compare, success, failure, now=now))


# Gateway endpoints that are gRPC streams: their errors come in the in-band shape.
_STREAMING = frozenset({"/v3/lease/keepalive"})

_ROUTES: dict[str, Callable[[MemoryEtcd, JsonObject, float], bytes]] = {
    "/v3/kv/range": lambda e, b, now: render_range(e.range(RangeOp.from_json(b), now)),
    "/v3/kv/put": lambda e, b, now: render_put(e.put(PutOp.from_json(b), now)),
    "/v3/kv/deleterange": lambda e, b, now: render_delete_range(
        e.delete_range(DeleteRangeOp.from_json(b), now)
    ),
    "/v3/kv/txn": _txn,
    "/v3/kv/compaction": lambda e, b, now: render_acknowledged(
        e.compact(get_int(b, "revision"), now)
    ),
    "/v3/lease/grant": lambda e, b, now: render_lease_grant(
        e.lease_grant(get_int(b, "TTL"), now, lease_id=get_int(b, "ID"))
    ),
    "/v3/lease/keepalive": lambda e, b, now: render_lease_keepalive(
        e.lease_keepalive(get_int(b, "ID"), now)
    ),
    "/v3/lease/revoke": lambda e, b, now: render_acknowledged(
        e.lease_revoke(get_int(b, "ID"), now)
    ),
    "/v3/lease/timetolive": lambda e, b, now: render_lease_timetolive(
        e.lease_timetolive(get_int(b, "ID"), now, keys=get_bool(b, "keys"))
    ),
    "/v3/maintenance/status": lambda e, b, now: render_status(e.status(now)),
}
