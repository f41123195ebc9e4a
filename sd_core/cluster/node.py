"""`ClusterNode`: one registry node of a cluster sharing one etcd; what a driver owns.

Reads are the single-process registry's (same `HttpApi`, same cached renders), fed by
the store's watch through a `StoreMirror`. Writes do not touch the view: they become
store calls (`StoreCall` effects), and the HTTP request is parked (`PendingWrite`) until
the store confirmed the write and this node's view shows it (`WriteDone`). Probes cover
this node's share only; a status change is one guarded txn. The node keeps its own
liveness key on its own lease. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TypeVar

from sd_etcd import (
    DeleteRangeOp,
    EtcdError,
    EtcdUnavailable,
    KeepAlive,
    LeaseGrant,
    PutOp,
    TxnResult,
    lease_grant_request,
    lease_keepalive_request,
    lease_revoke_request,
    mod_revision_is,
    parse_lease_grant,
    parse_lease_keepalive,
    parse_put,
    parse_txn,
    put_request,
    txn_request,
)
from sd_etcd.requests import Compare, CompareResult, Target

from ..checks import CheckType
from ..config import RegistryConfig
from ..consul_routes import CONTACT as CONSUL_CONTACT
from ..consul_routes import INDEXED_READS as CONSUL_READS
from ..errors import RequestError, not_registered, registry_full, status_not_reported
from ..events import Effect, InstanceRemoved, ProbePassed, ProbeResult, RemovalReason, RunProbe
from ..http_api import (
    HEARTBEAT_OK,
    INDEX_HEADER,
    UNREGISTER_OK,
    BlockingWait,
    HeartbeatWrite,
    HttpApi,
    HttpRequest,
    HttpResponse,
    MaintenanceWrite,
    PendingWrite,
    RegisterWrite,
    RoutedRequest,
    UnregisterWrite,
    error_response,
)
from ..instance import unit_load
from ..pages import Page
from ..registry import Registry
from ..status import Signal, Status, next_status
from .effects import CaughtUp, ClusterConfig, ClusterEffect, WriteDone
from .group_commit import GroupCommit, SoftWaiter
from .guardian import Guardian
from .layout import (
    MARK,
    HealthRecord,
    InstanceRecord,
    KeyLayout,
    MaintenanceRecord,
    NodeRecord,
    SoftRecord,
    wall,
)
from .link import OK, StoreLink
from .mirror import Entry, InstanceKey, StoreMirror
from .ownership import owner
from .removal import Removals, removal_request

NodeResult = HttpResponse | BlockingWait | PendingWrite
_Parsed = TypeVar("_Parsed")
_JSON = (("content-type", "application/json"),)
_HEARTBEAT = HttpResponse(200, HEARTBEAT_OK, _JSON, "/v1/discovery/heartbeat")
_STALE = ("x-discovery-stale", "true")
_UNAVAILABLE = RequestError(
    "store_unavailable",
    503,
    "The registry's store is unavailable; retry shortly",
    headers=(("retry-after", "1"),),
)


def catch_up_scope(revision: int) -> str:
    """The scope a read held until the view reaches `revision` is parked on (woken by
    `CaughtUp.reached`); no service name can be it."""
    return f"\0revision {revision}"


def random_lease_id(random_bits: Callable[[int], int]) -> int:
    """A lease id this node picks itself: positive int64, never 0 (0 = "etcd picks")."""
    return random_bits(62) + 1


class _Streak:
    """Probe results in a row for one instance incarnation, as this owner saw them."""

    __slots__ = ("failures", "generation", "successes")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.successes = 0
        self.failures = 0


class ClusterNode:
    """One node: its registry (the view), its HTTP mapping, its store link.

    Driver contract: execute `drain_effects()` (`StoreCall`, `OpenWatch`, `CloseWatch`,
    `WriteDone`, `RunProbe`, and the core's `IndexRaised` and log events); report with
    `store_answered`/`store_failed`, `watch_data`/`watch_ended`, `probe_result`; call
    `on_timer(now)` at `next_deadline()`; answer HTTP with `handle`.
    """

    def __init__(
        self,
        cluster: ClusterConfig,
        config: RegistryConfig | None = None,
        *,
        now: float,
        wall_offset: float,
        random_bits: Callable[[int], int],
        secret: str,
        read_token: str | None = None,
        version: str = "0",
        metrics: Callable[[], tuple[bytes, str]] | None = None,
        openapi: Callable[[], bytes] | None = None,
        pages: Mapping[str, Page] | None = None,
    ) -> None:
        """`random_bits(k)` returns k random bits (e.g. `random.SystemRandom().getrandbits`):
        lease ids are chosen here so that an answer lost on the way cannot orphan a
        lease under an id we do not know."""
        self.cluster = cluster
        # The node's id is its name in Consul's reads too (`/v1/agent/self`).
        self.config = replace(
            config or RegistryConfig(), local_expiry=False, node_name=cluster.node_id
        )
        self.wall_offset = wall_offset
        self.layout = KeyLayout(cluster.prefix)
        self.registry = Registry(self.config, now=now, wall_offset=wall_offset)
        self.registry.probe_filter = self._owns
        self.api = HttpApi(
            self.registry,
            secret=secret,
            read_token=read_token,
            frontend=cluster.frontend,
            version=version,
            metrics=metrics,
            openapi=openapi,
            pages=pages,
        )
        self.api.health_extra = self._health
        self.api.catch_up = self._catch_up
        self.mirror = StoreMirror(self.registry, self.layout)
        self._effects: list[ClusterEffect] = []
        self.link = StoreLink(
            self.mirror,
            self._effects.append,
            page=cluster.list_page,
            retry_interval=cluster.retry_interval,
            changed=self._link_changed,
        )
        self.soft = GroupCommit(self.link, max_ops=cluster.soft_batch)
        self._random_bits = random_bits
        self._started = now
        self._writes = 0
        self._awaiting: list[tuple[int, float, int, HttpResponse]] = []  # revision heap
        # Reads held for a revision: revision -> deadline, in deadline order (every hold
        # waits `resume_wait`, so a new or renewed one goes last), and the same
        # revisions in a heap (with some already let go) to release them in order.
        self._holds: dict[int, float] = {}
        self._held_revisions: list[int] = []
        self._caught_up: list[CaughtUp] = []  # drained after the core's IndexRaised
        self._streaks: dict[InstanceKey, _Streak] = {}
        self._health_writes: set[InstanceKey] = set()
        self._node_lease = 0
        self._keepalive_at: float | None = None
        self.removals = Removals(self.mirror, self.link)
        self.guardian = Guardian(
            self.mirror,
            self.link,
            self.removals,
            node_id=cluster.node_id,
            node_lease=lambda: self._node_lease,
            is_current=lambda: not self.stale and cluster.node_id in self.mirror.nodes,
            wall_offset=wall_offset,
        )
        #: Why the store cannot be used, in the driver's words (a TLS or auth failure,
        #: an error answer): shown on /health while stale, so a misconfigured node says
        #: why it never joins. Set by whoever runs the node's store calls.
        self.store_problem: str | None = None
        self._link_changed()

    # ------------------------------------------------------------ lifecycle

    def start(self, now: float) -> None:
        """List the prefix, watch it, and announce this node."""
        self.link.relist(now)
        self._announce(now)

    def stop(self, now: float) -> None:
        """Leave at once: revoking the node lease hands its probes to the others now."""
        if self._node_lease:
            lease, self._node_lease = self._node_lease, 0
            self.link.call(lease_revoke_request(lease), lambda *_: None, lambda _: None)
        self._keepalive_at = None

    def _announce(self, now: float) -> None:
        lease = random_lease_id(self._random_bits)
        record = NodeRecord(self.cluster.url, self.cluster.frontend, wall(now + self.wall_offset))

        def granted(grant: LeaseGrant, now: float) -> None:
            self.link.saw(grant.header)
            self._node_lease = grant.id
            put = put_request(
                self.layout.node(self.cluster.node_id), record.encode(), lease=grant.id
            )
            self.link.call(put, self._liveness_answer(parse_put), self._liveness_lost)

        self._keepalive_at = now + self.cluster.keepalive_interval
        self.link.call(
            lease_grant_request(self.cluster.node_ttl, lease_id=lease),
            self._liveness_answer(parse_lease_grant, granted),
            self._liveness_lost,
        )

    def _liveness_answer(
        self,
        parse: Callable[[int, bytes], _Parsed],
        then: Callable[[_Parsed, float], None] = lambda parsed, now: None,
    ) -> Callable[[int, bytes, float], None]:
        """A node-lease call's answer: a refusal counts against this node's liveness."""
        return _answered(parse, then, self._liveness_failed)

    def _liveness_failed(self, error: EtcdError, now: float) -> None:
        self.link.store_error(error)
        self._liveness_lost(now)

    def _liveness_lost(self, now: float) -> None:
        """Grant a new node lease at the next keepalive tick."""
        self._node_lease = 0

    def _keepalive(self, now: float) -> None:
        self._keepalive_at = now + self.cluster.keepalive_interval
        if not self._node_lease:
            self._announce(now)
            return

        def answered(alive: KeepAlive, now: float) -> None:
            self.link.saw(alive.header)
            if alive.ttl is None:  # expired while we could not reach the store
                self._node_lease = 0
                self._announce(now)

        self.link.call(
            lease_keepalive_request(self._node_lease),
            self._liveness_answer(parse_lease_keepalive, answered),
            lambda _: None,
        )

    # ------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        candidates = [
            t
            for t in (
                self.registry.next_deadline(),
                self.link.resync_at,
                self._keepalive_at,
                self.guardian.next_at,
                min((a[1] for a in self._awaiting), default=None),
                next(iter(self._holds.values()), None),
            )
            if t is not None
        ]
        return min(candidates) if candidates else None

    def on_timer(self, now: float) -> None:
        if self.mirror.quiet.suspended and not self.stale:
            self.mirror.quiet.restart(now)  # usable again: every instance gets a full TTL
        self.registry.on_timer(now)
        if self.link.resync_at is not None and self.link.resync_at <= now:
            self.link.resync(now)
        if self._keepalive_at is not None and self._keepalive_at <= now:
            self._keepalive(now)
        if self.guardian.next_at is not None and self.guardian.next_at <= now:
            self.guardian.on_timer(now)
        if any(deadline <= now for _, deadline, _, _ in self._awaiting):
            # The store confirmed these writes but the view is late: answer anyway.
            late = [a for a in self._awaiting if a[1] <= now]
            self._awaiting = [a for a in self._awaiting if a[1] > now]
            heapq.heapify(self._awaiting)
            for _, _, token, response in late:
                self._effects.append(WriteDone(token, response))
        holds = self._holds
        if holds and next(iter(holds.values())) <= now:
            expired = list(itertools.takewhile(lambda r: holds[r] <= now, holds))
            for revision in expired:
                del holds[revision]
            self._caught_up.append(CaughtUp(frozenset(), frozenset(expired)))

    # ------------------------------------------------------------ driver input

    def store_answered(self, token: int, status: int, body: bytes, now: float) -> None:
        self.link.answered(token, status, body, now)
        self._release()

    def store_failed(self, token: int, now: float) -> None:
        self.link.failed(token, now)

    def watch_data(self, watch: int, data: bytes, now: float) -> None:
        if self.link.watch_data(watch, data, now):
            self._release()

    def watch_ended(self, watch: int, now: float) -> None:
        if self.link.watch_ended(watch, now):
            self._release()

    def drain_effects(self) -> list[ClusterEffect | Effect]:
        """Store calls, watch changes and answers first, then the core's effects."""
        effects: list[ClusterEffect | Effect] = list(self._effects)
        self._effects.clear()
        core = self.registry.drain_effects()
        for effect in core:
            if isinstance(effect, InstanceRemoved):
                key = (effect.service_name, effect.instance_id)
                self._streaks.pop(key, None)
                self.removals.removed(key)
        effects.extend(core)
        # Last: a held watch stream that now follows its services must not also get the
        # index rises it resumed past (they are in its first events).
        effects.extend(self._caught_up)
        self._caught_up.clear()
        return effects

    # ------------------------------------------------------------ state

    @property
    def stale(self) -> bool:
        return self.link.state != OK

    def _link_changed(self) -> None:
        if self.stale:
            self.mirror.quiet.suspend()
        headers: list[tuple[str, str]] = []
        if self.link.cluster_id:
            headers.append(("x-discovery-cluster", f"{self.link.cluster_id:016x}"))
        if self.stale:
            headers.append(("x-discovery-stale", "true"))
        self.api.set_read_headers(tuple(headers))

    def _fresh(self, response: HttpResponse, now: float) -> HttpResponse:
        """A read's answer with how long ago the store was last heard from (ms), and the
        stale flag once that passes `stale_after` (a paused node, a silent watch)."""
        contact = self.link.last_contact
        headers = response.headers
        if contact is None or INDEX_HEADER not in [name for name, _ in headers]:
            return response
        silent = now - contact
        millis = str(int(silent * 1000)) if silent > 0 else "0"
        last = ("x-discovery-last-contact", millis)
        if response.route in CONSUL_READS:  # Consul's own header says the same
            headers = tuple((n, millis if n == CONSUL_CONTACT else v) for n, v in headers)
        if silent > self.cluster.stale_after and not self.stale:
            headers += (last, _STALE)
        else:
            headers += (last,)
        return HttpResponse(response.status, response.body, headers, response.route)

    def _health(self) -> dict[str, object]:
        """/health stays 200 while stale: the node still serves reads (see docs/cluster.md)."""
        return {
            "status": "healthy" if not self.stale else "degraded",
            "node_id": self.cluster.node_id,
            "store": {
                "state": self.link.state,
                "revision": self.mirror.synced_revision,
                "listings": self.link.listings,
                "resets": self.link.resets,
                "error": self.store_problem if self.stale else None,
                "cluster_id": f"{self.link.cluster_id:016x}" if self.link.cluster_id else None,
            },
        }

    # ------------------------------------------------------------ HTTP

    def handle(self, request: HttpRequest, now: float, *, may_block: bool = True) -> NodeResult:
        """Answer a whole request in one call (`HttpApi.head`, then `answer`)."""
        routed = self.api.head(*request[:5])
        return self.answer(routed, request.body, now, may_block=may_block)

    def answer(
        self, routed: RoutedRequest, body: bytes, now: float, *, may_block: bool = True
    ) -> NodeResult:
        """Answer a request routed by `api.head`, or park a write (`PendingWrite`) until a
        `WriteDone`. A write's command is parsed from the routed request: no second route."""
        if routed.method == "GET":
            result = self.api.answer(routed, body, now, may_block=may_block)
            return self._fresh(result, now) if isinstance(result, HttpResponse) else result
        command = self.api.write_command(routed, body, now)
        if command is None:
            return self.api.answer(routed, body, now, may_block=may_block)
        if isinstance(command, HttpResponse):
            return command
        if self.stale:
            return error_response(_UNAVAILABLE, command.route)
        try:
            if isinstance(command, RegisterWrite):
                return self._register(command, now)
            if isinstance(command, HeartbeatWrite):
                return self._heartbeat(command, now)
            if isinstance(command, MaintenanceWrite):
                return self._maintenance(command, now)
            return self._unregister(command)
        except RequestError as error:
            return error_response(error, command.route)

    def _park(self) -> int:
        self._writes += 1
        return self._writes

    def _finish(self, token: int, response: HttpResponse) -> None:
        self._effects.append(WriteDone(token, response))

    def _after_view(self, token: int, revision: int, response: HttpResponse, now: float) -> None:
        """Answer once the view reached `revision` (read-your-writes). An answer older
        than the view (the store may have gone back) waits for the check of that."""
        if self.mirror.synced_revision >= revision and not self.link.doubtful:
            self._finish(token, response)
        else:
            heapq.heappush(
                self._awaiting, (revision, now + self.cluster.write_wait, token, response)
            )

    def _release(self) -> None:
        if self.link.doubtful:  # the store may have gone back: its revision means nothing yet
            return
        synced = self.mirror.synced_revision
        while self._awaiting and self._awaiting[0][0] <= synced:
            _, _, token, response = heapq.heappop(self._awaiting)
            self._finish(token, response)
        held = self._held_revisions
        if held and held[0] <= synced:
            reached: set[int] = set()
            while held and held[0] <= synced:
                revision = heapq.heappop(held)
                if self._holds.pop(revision, None) is not None:
                    reached.add(revision)
            if reached:
                self._caught_up.append(CaughtUp(frozenset(reached), frozenset()))

    # ------------------------------------------------------------ resuming reads

    def hold_until(self, revision: int, now: float) -> bool:
        """Whether a read naming `revision` (a blocking query's index, a watch stream's
        `Last-Event-ID`) must wait for this node's view to reach it: True when the view
        is behind it; a `CaughtUp` effect says when it got there (resume from it) or
        gave up after `resume_wait` (start over). A revision the view has passed is
        answered at once: if it is still ahead of the index, the registry started over."""
        if revision <= self.mirror.synced_revision or self.cluster.resume_wait <= 0:
            return False
        holds = self._holds
        if holds.pop(revision, None) is None:
            if len(holds) >= self.cluster.max_holds:
                return False  # as many revisions held as reads can wait: start over
            held = self._held_revisions
            if len(held) > 2 * len(holds) + 64:  # mostly revisions already let go
                held[:] = sorted(holds)
            heapq.heappush(held, revision)
        holds[revision] = now + self.cluster.resume_wait  # last: the latest deadline
        return True

    def _catch_up(self, wanted: int, wait: float, now: float) -> BlockingWait | None:
        """A blocking query from the future: parked until the view reaches `wanted`, for
        at most `resume_wait` and never longer than the query's own `wait`."""
        if not self.hold_until(wanted, now):
            return None
        return BlockingWait(catch_up_scope(wanted), wanted, min(self.cluster.resume_wait, wait))

    def _failure(self, token: int, route: str) -> Callable[[float], None]:
        return lambda now: self._finish(token, error_response(_UNAVAILABLE, route))

    def _write_answer(
        self,
        token: int,
        route: str,
        parse: Callable[[int, bytes], _Parsed],
        then: Callable[[_Parsed, float], None],
    ) -> Callable[[int, bytes, float], None]:
        """A write's store call answer: a refusal answers the parked request `token`."""
        return _answered(parse, then, lambda error, now: self._store_refused(token, route, error))

    def _store_refused(self, token: int, route: str, error: EtcdError) -> None:
        self.link.store_error(error)
        code = 503 if error.http_status in (0, 500, 503, 504) else 500
        refusal = (
            _UNAVAILABLE
            if code == 503
            else RequestError("internal_error", 500, "Internal server error")
        )
        self._finish(token, error_response(refusal, route))

    def _register(self, command: RegisterWrite, now: float) -> NodeResult:
        """One txn: the record, the health key (a new address starts `unknown`; a ttl
        instance reports healthy), the soft state, and the service's mark when the
        change is visible. No lease: the registry decides expiry (see `guardian`)."""
        request = command.request
        key = (request.service_name, request.instance_id)
        entry = self.mirror.entries.get(key)
        if entry is None and self.registry.instance_count >= self.config.max_instances:
            raise registry_full(self.config.max_instances)
        stamp = wall(now + self.wall_offset)
        shown = _shown(entry) if entry is not None else None
        load = request.load_percentage
        load = unit_load(load) if load is not None else (shown.load if shown else 0.0)
        record = InstanceRecord(
            request.model_copy(update={"load_percentage": load}),
            entry.record.registered_at if entry else stamp,
            stamp,
            load,
        )
        old = entry.record.request if entry else None
        moved = old is None or (old.host, old.port, old.health_endpoint, old.check) != (
            request.host,
            request.port,
            request.health_endpoint,
            request.check,
        )
        ops: list[PutOp | DeleteRangeOp] = [PutOp(self.layout.instance(*key), record.encode())]
        ttl = CheckType(request.check.type) is CheckType.TTL
        reported = None
        if ttl:
            # A registration is a ttl instance's first heartbeat: healthy everywhere.
            current = None if moved or entry is None else entry.health
            reported = self._reported(current, Status.HEALTHY, stamp)
            if reported is not None:
                ops.append(PutOp(self.layout.health(*key), reported.encode()))
        restarted = entry is not None and not ttl and _unhealthy(entry)
        if not ttl and (moved or restarted):
            # A new address, or a new run of an unhealthy one, starts unknown everywhere,
            # as in single-process mode (Registry._update).
            ops.append(DeleteRangeOp(self.layout.health(*key)))
        # It counts as a heartbeat (and, for a ttl check, as a health check): soft state
        # last, so a listing that applies it after the health key shows the same.
        checked = stamp if ttl else (shown.checked_at if shown else None)
        ops.append(PutOp(self.layout.soft(*key), SoftRecord(stamp, load, checked).encode()))
        visible = (
            old is None
            or moved
            or reported is not None
            or restarted
            or dict(old.metadata) != dict(request.metadata)
            or old.tags != request.tags
            or (entry is not None and self._moves_load(entry, load))
        )
        if visible:
            ops.insert(0, self._mark(key[0]))
        token = self._park()
        route = command.route
        response = self.api.register_ok(request, route)

        def answered(result: TxnResult, now: float) -> None:
            self.link.saw(result.header)
            self._after_view(token, result.header.revision, response, now)

        self.link.call(
            txn_request([], ops),
            self._write_answer(token, route, parse_txn, answered),
            self._failure(token, route),
        )
        return PendingWrite(token)

    def _heartbeat(self, command: HeartbeatWrite, now: float) -> NodeResult:
        """A heartbeat is a soft put, guarded by the incarnation the view holds (gone
        from the store: 404, the SDK's cue to register again), carried by the group
        commit; one etcd request serves every heartbeat pending meanwhile."""
        request = command.request
        key = (request.service_name, request.instance_id)
        entry = self.mirror.entries.get(key)
        if entry is None:
            raise not_registered(*key)
        ttl = CheckType(entry.record.request.check.type) is CheckType.TTL
        if request.status is not None and not ttl:
            raise status_not_reported()
        token = self._park()
        stamp = wall(now + self.wall_offset)
        load = None if request.load_percentage is None else unit_load(request.load_percentage)
        soft = self._soft_put(
            key, entry, heartbeat_at=stamp, load=load, checked_at=stamp if ttl else None
        )
        waiter = self._heartbeat_waiter(token, command.route, key)
        if ttl:
            said = Status.HEALTHY if request.status is None else Status(request.status)
            reported = self._reported(entry.health, said, stamp)
            if reported is not None:
                health = PutOp(self.layout.health(*key), reported.encode())
                self._put_guarded(entry, [self._mark(key[0]), health, soft], waiter)
                return PendingWrite(token)
        self._soft_commit(key, entry, soft, load, waiter)
        return PendingWrite(token)

    def _mark(self, service: str) -> PutOp:
        """The service's mark, first in the txn of a visible change (see `mirror`)."""
        return PutOp(self.layout.service(service), MARK)

    def _moves_load(self, entry: Entry, load: float | None) -> bool:
        """Whether `load` moves the instance's shown load by WATCH_LOAD_DELTA or more
        since its last marked change (the registry's rule for a visible load move)."""
        if load is None:
            return False
        moved = abs(load - entry.rise_load)
        return moved > 0 and moved >= self.config.watch_load_delta - 1e-12

    def _soft_commit(
        self,
        key: InstanceKey,
        entry: Entry,
        soft: PutOp,
        load: float | None,
        waiter: SoftWaiter | None = None,
    ) -> None:
        """A soft put through the group commit, with the service's mark ahead of it when
        its load move is visible."""
        mark = self._mark(key[0]) if self._moves_load(entry, load) else None
        self.soft.put(soft, waiter, guard=self.mirror.same_incarnation(key, entry), ahead=mark)

    def _reported(
        self, current: HealthRecord | None, said: Status, stamp: float
    ) -> HealthRecord | None:
        """A ttl instance's own word on its health, as a record to write; None when it
        changes nothing (so a steady heartbeat writes nothing, and raises no index)."""
        signal = Signal.REPORTED_HEALTHY if said == Status.HEALTHY else Signal.REPORTED_UNHEALTHY
        before = Status.UNKNOWN if current is None else current.status
        status = next_status(
            before,
            signal,
            successes=0,
            failures=0,
            success_threshold=self.config.success_threshold,
            failure_threshold=self.config.failure_threshold,
        )
        if current is not None and status == before:
            return None
        reason = "reported healthy" if status == Status.HEALTHY else "reported unhealthy"
        return HealthRecord(status, stamp, reason, self.cluster.node_id)

    def _heartbeat_waiter(self, token: int, route: str, key: InstanceKey) -> SoftWaiter:
        """A heartbeat's answer once its soft put is written and this view shows it."""
        return _HeartbeatAnswer(self, token, route, key)

    def _soft_put(
        self,
        key: InstanceKey,
        entry: Entry,
        *,
        heartbeat_at: float | None = None,
        load: float | None = None,
        checked_at: float | None = None,
    ) -> PutOp:
        """The instance's soft state with what this write observed (None: as the view
        shows it). Every writer rewrites all three fields, so a heartbeat and a probe
        written by two nodes within one watch delay may hide the older one's field
        until its next write (milliseconds apart, documented)."""
        shown = _shown(entry)
        record = SoftRecord.text(
            shown.heartbeat_at if heartbeat_at is None else heartbeat_at,
            shown.load if load is None else load,
            shown.checked_at if checked_at is None else checked_at,
        )
        return PutOp(self.layout.soft(*key), record)

    def _put_guarded(self, entry: Entry, ops: list[PutOp], waiter: SoftWaiter) -> None:
        """Puts for the instance incarnation the view holds (a guarded txn: nothing is
        written over a newer registration or for an instance gone), answered like a soft
        put: a ttl instance's heartbeat that changes its status."""
        key = (entry.record.request.service_name, entry.record.request.instance_id)

        def answered(status: int, body: bytes, now: float) -> None:
            try:
                result = parse_txn(status, body)
            except EtcdError as error:
                self.link.store_error(error)
                waiter.refused(error, now)
                return
            self.link.saw(result.header)
            if result.succeeded:
                waiter.written(result.header.revision, now)
            else:
                waiter.gone(now)

        def failed(now: float) -> None:
            waiter.refused(EtcdUnavailable("no answer from the store"), now)

        guard = self.mirror.same_incarnation(key, entry)
        self.link.call(txn_request([guard], ops), answered, failed)

    def _maintenance(self, command: MaintenanceWrite, now: float) -> NodeResult:
        """Start or end a drain: the instance's maintenance key and the service's mark,
        written only if the incarnation the view holds still exists (else 404)."""
        key = (command.service_name, command.instance_id)
        entry = self.mirror.entries.get(key)
        if entry is None:
            raise not_registered(*key)
        route = command.route
        done = self.api.maintenance_ok(*key, command.start, route)
        current = entry.maintenance
        if command.start and current is not None and current.reason == command.reason:
            return done  # nothing to do, as in single-process mode
        if not command.start and current is None:
            return done
        maintenance_key = self.layout.maintenance(*key)
        op: PutOp | DeleteRangeOp
        if command.start:
            since = current.since if current is not None else wall(now + self.wall_offset)
            op = PutOp(maintenance_key, MaintenanceRecord(command.reason, since).encode())
        else:
            op = DeleteRangeOp(maintenance_key)
        token = self._park()

        def answered(result: TxnResult, now: float) -> None:
            self.link.saw(result.header)
            if not result.succeeded:  # gone, or registered anew meanwhile
                self._finish(token, error_response(not_registered(*key), route))
                return
            self._after_view(token, result.header.revision, done, now)

        self.link.call(
            txn_request([self.mirror.same_incarnation(key, entry)], [self._mark(key[0]), op]),
            self._write_answer(token, route, parse_txn, answered),
            self._failure(token, route),
        )
        return PendingWrite(token)

    def _unregister(self, command: UnregisterWrite) -> NodeResult:
        """One txn deleting every key of the instance, if it exists (else 404)."""
        key = (command.service_name, command.instance_id)
        entry = self.mirror.entries.get(key)
        if entry is None:
            raise not_registered(*key)
        token = self._park()
        route = command.route
        done = HttpResponse(200, UNREGISTER_OK, _JSON, route)
        self.mirror.removal_reasons[key] = RemovalReason.UNREGISTERED

        def answered(status: int, body: bytes, now: float) -> None:
            try:
                result = parse_txn(status, body)
            except EtcdError as error:
                self.mirror.removal_reasons.pop(key, None)
                self._store_refused(token, route, error)
                return
            self.link.saw(result.header)
            if not result.succeeded:  # gone meanwhile
                self.mirror.removal_reasons.pop(key, None)
                self._finish(token, error_response(not_registered(*key), route))
                return
            self._after_view(token, result.header.revision, done, now)

        def failed(now: float) -> None:
            self.mirror.removal_reasons.pop(key, None)
            self._finish(token, error_response(_UNAVAILABLE, route))

        exists = Compare(self.layout.instance(*key), Target.CREATE, CompareResult.GREATER, 0)
        self.link.call(removal_request(self.layout, key, [exists]), answered, failed)
        return PendingWrite(token)

    # ------------------------------------------------------------ probes

    def _owns(self, service_name: str, instance_id: str) -> bool:
        """Whether this node probes the instance now (the registry asks at each due time)."""
        mine = (
            not self.stale
            and self.cluster.node_id in self.mirror.nodes
            and (owner(self.mirror.nodes, service_name, instance_id) == self.cluster.node_id)
        )
        if not mine:
            # A later takeover starts a fresh streak: thresholds hold across owners.
            self._streaks.pop((service_name, instance_id), None)
        return mine

    def probe_is_current(self, probe: RunProbe) -> bool:
        return self.registry.probe_is_current(probe)

    def probe_result(self, result: ProbeResult, now: float) -> None:
        """A probe this node ran: count the streak, write a status change to the store."""
        returned = self.registry.probe_returned(result, now)
        key = (result.service_name, result.instance_id)
        entry = self.mirror.entries.get(key)
        if returned is None or entry is None:
            self._streaks.pop(key, None)
            return
        instance, counts = returned
        streak = self._streaks.get(key)
        if streak is None or streak.generation != result.generation:
            streak = self._streaks[key] = _Streak(result.generation)
        passed = isinstance(result, ProbePassed)
        if passed:
            streak.successes, streak.failures = streak.successes + 1, 0
        elif counts:  # a failed first-probe retry does not count (Registry._came_back)
            streak.failures, streak.successes = streak.failures + 1, 0
        status = next_status(
            instance.status,
            Signal.PROBE_PASSED if passed else Signal.PROBE_FAILED,
            successes=streak.successes,
            failures=streak.failures,
            success_threshold=self.config.success_threshold,
            failure_threshold=self.config.failure_threshold,
        )
        wall_now = wall(now + self.wall_offset)
        load = result.load if isinstance(result, ProbePassed) else None
        soft = self._soft_put(
            key, entry, load=None if load is None else unit_load(load), checked_at=wall_now
        )
        if status != instance.status and key not in self._health_writes:
            reason = "probe passed" if passed else getattr(result, "reason", "probe failed")
            record = HealthRecord(status, wall_now, reason, self.cluster.node_id)
            self._write_status(key, entry, record, soft)
        else:  # it changed nothing but the soft state; nobody waits for it
            self._soft_commit(key, entry, soft, None if load is None else unit_load(load))
        self._deregister_if_unhealthy_too_long(key, entry, wall_now)

    def _write_status(
        self, key: InstanceKey, entry: Entry, record: HealthRecord, soft: PutOp
    ) -> None:
        """One txn, guarded by both keys' mod revisions as this view saw them: a lost race
        (another owner, a re-registration) writes nothing, and the watch shows the winner.
        The service's mark first, the probe's soft state after the health key."""
        self._health_writes.add(key)
        health_key = self.layout.health(*key)
        txn = txn_request(
            [
                mod_revision_is(self.layout.instance(*key), entry.mod_revision),
                mod_revision_is(health_key, entry.health_mod),
            ],
            [self._mark(key[0]), PutOp(health_key, record.encode()), soft],
        )

        def answered(status: int, body: bytes, now: float) -> None:
            self._health_writes.discard(key)
            try:
                self.link.saw(parse_txn(status, body).header)
            except EtcdError as error:
                self.link.store_error(error)

        self.link.call(txn, answered, lambda now: self._health_writes.discard(key))

    def _deregister_if_unhealthy_too_long(
        self, key: InstanceKey, entry: Entry, wall_now: float
    ) -> None:
        after = self.config.deregister_unhealthy_after
        health = entry.health
        if (
            after <= 0
            or health is None
            or health.status != Status.UNHEALTHY
            or health.since + after > wall_now
            or key in self.removals
        ):
            return
        guards = [
            self.mirror.same_incarnation(key, entry),
            mod_revision_is(self.layout.health(*key), entry.health_mod),
        ]
        self.removals.remove(key, guards, RemovalReason.UNHEALTHY_TOO_LONG)


class _HeartbeatAnswer:
    """A heartbeat parked on its soft put (`SoftWaiter`): one object, no closures, as
    every heartbeat makes one."""

    __slots__ = ("key", "node", "route", "token")

    def __init__(self, node: ClusterNode, token: int, route: str, key: InstanceKey) -> None:
        self.node, self.token, self.route, self.key = node, token, route, key

    def written(self, revision: int, now: float) -> None:
        self.node._after_view(self.token, revision, _HEARTBEAT, now)

    def gone(self, now: float) -> None:
        self.node._finish(self.token, error_response(not_registered(*self.key), self.route))

    def refused(self, error: EtcdError, now: float) -> None:
        self.node._store_refused(self.token, self.route, error)


def _unhealthy(entry: Entry) -> bool:
    return entry.health is not None and entry.health.status == Status.UNHEALTHY


def _answered(
    parse: Callable[[int, bytes], _Parsed],
    then: Callable[[_Parsed, float], None],
    refused: Callable[[EtcdError, float], None],
) -> Callable[[int, bytes, float], None]:
    """A store call's answer handler: `then(parsed, now)`, or `refused(error, now)` when
    the store said no (its answer did not parse as the call's result)."""

    def answered(status: int, body: bytes, now: float) -> None:
        try:
            parsed = parse(status, body)
        except EtcdError as error:
            refused(error, now)
            return
        then(parsed, now)

    return answered


def _shown(entry: Entry) -> SoftRecord:
    """The instance's soft state as the view holds it (before its first soft put, what
    its record and health key say)."""
    if entry.soft is not None:
        return entry.soft
    checked = None if entry.health is None else entry.health.since
    return SoftRecord(entry.record.updated_at, entry.record.load, checked)
