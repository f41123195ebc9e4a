"""Expiry and self-preservation in cluster mode: one node (the guardian) decides both.

Instances have no etcd lease: the registry, not etcd, decides when one has gone quiet,
so a store outage (etcd stalled and resumed as leader, which revokes at once every
lease whose time ran out meanwhile) can expire nothing. Every node measures each
instance's quietness on its own clock (`expiry.QuietClock`, fed by the view); the
guardian, the live node with the lowest node id in its view (a stale node is never
the guardian), expires an instance quiet for a registration TTL with one txn guarded
by the soft record's mod revision (`removal`), so a heartbeat that reached the store
first wins and the deletion writes nothing.

Quietness only counts while the store is known to be usable: an instance is due when
it was quiet for a TTL up to the last time this node heard from the store
(`StoreLink.last_contact`).
A stall that has not yet been noticed (the node is not stale yet) therefore cannot
make instances due; when the guardian finds instances due by its clock but not by
that horizon, it asks the store a trivial question (a count of its own node key) to
move the horizon. After an outage each node restarts every measurement (`QuietClock`).

Self-preservation uses the single-process rules and state (`Registry.expiry_paused`,
`self_preservation.SelfPreservation`, same settings): when expiries are due and too
much of the fleet went quiet at once, the guardian expires nothing instead, and shows
the mode on every node through the `self-preservation` key, on its own node lease,
deleted when the mode ends. If the guardian dies, the key goes with its lease and the
next guardian decides afresh from its own measurements.
"""

from __future__ import annotations

from collections.abc import Callable

from sd_etcd import (
    EtcdError,
    RangeOp,
    RangeResult,
    TxnResult,
    delete_range_request,
    mod_revision_is,
    parse_delete_range,
    parse_put,
    parse_range,
    put_request,
    range_request,
)
from sd_etcd.requests import Compare

from ..events import RemovalReason
from ..self_preservation import RECHECK_SECONDS, SelfPreservation
from .layout import PreservationRecord, SoftRecord, wall
from .link import StoreLink
from .mirror import InstanceKey, StoreMirror
from .removal import Removals

#: How many times in a row an expiry is sent again after a probe's soft put won the race.
RACED_RETRIES = 3


class Guardian:
    """The expiry and self-preservation decisions of one node (acting only while it is
    the guardian)."""

    def __init__(
        self,
        mirror: StoreMirror,
        link: StoreLink,
        removals: Removals,
        *,
        node_id: str,
        node_lease: Callable[[], int],
        is_current: Callable[[], bool],
        wall_offset: float,
    ) -> None:
        self.mirror = mirror
        self.link = link
        self.removals = removals
        self.node_id = node_id
        self._node_lease = node_lease
        self._is_current = is_current  # the link is ok and this node is in the view
        self.wall_offset = wall_offset
        self.next_at: float | None = 0.0
        # The decision's own state; the registry shows what the store holds, on every
        # node alike (this one included), so no node shows the mode before the others.
        self.decision = SelfPreservation(mirror.registry.config, lambda changed: None)
        self._stored = False  # the self-preservation key is ours and up
        self._asking = False  # a question to the store is on its way

    @property
    def guarding(self) -> bool:
        nodes = self.mirror.nodes
        return self._is_current() and bool(nodes) and min(nodes) == self.node_id

    def on_timer(self, now: float) -> None:
        registry = self.mirror.registry
        config = registry.config
        self.next_at = now + RECHECK_SECONDS  # to see whether this node guards now
        if not self.guarding:
            if self.decision.active:  # should this node decide again, it starts afresh
                self.decision = SelfPreservation(config, lambda changed: None)
            if self._stored:  # another node decides now: our key must not linger
                self._unstore()
            return
        quiet = self.mirror.quiet
        heard = self.link.last_contact  # the store was usable until about then
        due = quiet.due(min(now, heard)) if heard is not None else []
        if len(due) < len(quiet.due(now)):
            self._ask()  # due by our clock, not yet by the store's last answer
        if registry.expiry_paused(self.decision, now, due=bool(due)):
            if not self._stored:
                self._store(now)
            return
        if self._stored:
            self._unstore()
        for key in due:
            self._expire(key)
        soonest = quiet.next_due()
        if soonest is not None and soonest > now:
            self.next_at = min(self.next_at, soonest)

    def _expire(self, key: InstanceKey, tries: int = RACED_RETRIES) -> None:
        """Remove an instance quiet for a TTL, unless something was written since the
        view saw its soft record (a heartbeat that won the race) or it was registered anew.

        The soft key is rewritten by probes too (their time, with the heartbeat time
        unchanged), every probe interval: a lost race is told what won (the txn's
        failure branch reads the soft key), and when that left the heartbeat time as
        the view had it, the removal is sent again at once, guarded by the new
        revision. Without this, an instance probed about as often as the guardian
        looks could stay for several looks past its TTL on a loaded machine."""
        entry = self.mirror.entries.get(key)
        if entry is None:
            return
        same = self.mirror.same_incarnation(key, entry)
        self._remove_quiet(key, same, entry.soft_mod, entry.soft, tries)

    def _remove_quiet(
        self, key: InstanceKey, same: Compare, soft_mod: int, soft: SoftRecord | None, tries: int
    ) -> None:
        layout = self.mirror.layout
        guards = [same, mod_revision_is(layout.soft(*key), soft_mod)]

        def raced(result: TxnResult, now: float) -> None:
            won = _read_back(result)
            if tries < 1 or won is None or soft is None:
                return
            won_mod, won_soft = won
            if won_soft is not None and won_soft.heartbeat_at == soft.heartbeat_at:
                self._remove_quiet(key, same, won_mod, won_soft, tries - 1)

        self.removals.remove(
            key,
            guards,
            RemovalReason.TTL_EXPIRED,
            failure=[RangeOp(layout.soft(*key))],
            raced=raced,
        )

    def _ask(self) -> None:
        """A trivial call whose answer moves the horizon (`StoreLink.last_contact`)."""
        if self._asking:
            return
        self._asking = True

        def answered(status: int, body: bytes, now: float) -> None:
            self._asking = False
            try:
                parse_range(status, body)
            except EtcdError as error:
                self.link.store_error(error)
                return
            self.next_at = now  # look again with the horizon moved

        def failed(now: float) -> None:
            self._asking = False

        request = range_request(self.mirror.layout.node(self.node_id), count_only=True)
        self.link.call(request, answered, failed)

    def _store(self, now: float) -> None:
        lease = self._node_lease()
        active, reason = self.decision.active, self.decision.reason
        if not lease or not active or reason is None:
            return  # no node lease yet: the next look stores it
        self._stored = True
        record = PreservationRecord(reason, wall(now + self.wall_offset), self.node_id)
        request = put_request(self.mirror.layout.preservation(), record.encode(), lease=lease)
        self.link.call(request, self._answered(parse_put, False), self._retry(False))

    def _unstore(self) -> None:
        self._stored = False
        request = delete_range_request(self.mirror.layout.preservation())
        self.link.call(request, self._answered(parse_delete_range, True), self._retry(True))

    def _retry(self, stored: bool) -> Callable[[float], None]:
        """A key write that failed: the next look (a second later) tries it again."""

        def failed(now: float) -> None:
            self._stored = stored

        return failed

    def _answered(
        self, parse: Callable[[int, bytes], object], stored: bool | None = None
    ) -> Callable[[int, bytes, float], None]:
        def answered(status: int, body: bytes, now: float) -> None:
            try:
                parse(status, body)
            except EtcdError as error:
                self.link.store_error(error)
                if stored is not None:
                    self._stored = stored

        return answered


def _read_back(result: TxnResult) -> tuple[int, SoftRecord | None] | None:
    """The soft key as a lost removal's failure branch read it: its mod revision and
    record (None when the key is gone, or the answer holds no read)."""
    for response in result.responses:
        if isinstance(response, RangeResult):
            if not response.kvs:
                return None
            kv = response.kvs[0]
            return kv.mod_revision, SoftRecord.decode(kv.value)
    return None
