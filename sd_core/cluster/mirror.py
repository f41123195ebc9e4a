"""A node's mirror of the store: etcd keys in, `Registry.apply` changes out.

The mirror is the only writer of its node's `Registry` in cluster mode. A service's
`X-Discovery-Index` is the mod revision of its mark (`services/<service>`), which every
writer rewrites in the txn of each change it makes visible, removals included: a node
that watched the change and a node that lists the prefix later (at start, after a
restart, after a compaction) read the same mark, so they show the same index for the
same bytes. Changes reach the registry capped at the service's mark, so a change that
was not marked (a heartbeat, a probe that changes nothing) never raises the index on
any node. A full listing is diffed against the mirror and only the differences are
applied, so a re-list changes nothing that did not change.

The mirror also feeds the node's `QuietClock`: a registration or a new `heartbeat_at` is
a sign of life, measured on this node's clock (see `expiry`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sd_etcd import EventType, KeyValue, KvEvent
from sd_etcd.requests import Compare, CompareResult, Target

from ..errors import RequestError
from ..events import (
    HealthRecorded,
    MaintenanceEnded,
    MaintenanceStarted,
    Registration,
    Removal,
    RemovalReason,
    SoftStateRecorded,
    StoreStamp,
)
from ..registry import Registry
from ..status import Status
from .expiry import QuietClock
from .layout import (
    PRESERVATION,
    SERVICES,
    HealthRecord,
    InstanceRecord,
    KeyLayout,
    MaintenanceRecord,
    NodeRecord,
    ParsedKey,
    PreservationRecord,
    SoftRecord,
)

InstanceKey = tuple[str, str]
# The records kept beside an instance's (deleted with it, in one txn).
_BESIDE = ("health", "maintenance", "soft")


@dataclass(slots=True)
class Entry:
    """One instance as the store holds it: what writes compare against."""

    record: InstanceRecord
    create_revision: int
    mod_revision: int
    health: HealthRecord | None = None
    health_mod: int = 0
    maintenance: MaintenanceRecord | None = None
    maintenance_mod: int = 0
    soft: SoftRecord | None = None
    soft_mod: int = 0
    #: The load the instance showed when a marked change of it was applied (what a
    #: writer compares a new load with, to decide whether the move is visible).
    rise_load: float = 0.0
    #: The writers' guard "this incarnation still exists", made at its first use.
    guard: Compare | None = None


class StoreMirror:
    """Feeds one `Registry` from the store and remembers what it fed."""

    def __init__(self, registry: Registry, layout: KeyLayout) -> None:
        self.registry = registry
        self.layout = layout
        self.entries: dict[InstanceKey, Entry] = {}
        self.nodes: dict[str, NodeRecord] = {}
        # Every change up to this revision is in the mirror.
        self.synced_revision = 0
        # Why this node deleted an instance, for the removal it will see (others
        # cannot tell an unregistration from an expiry: both are the same deletions).
        self.removal_reasons: dict[InstanceKey, RemovalReason] = {}
        self.skipped_records = 0
        #: Per service, the mod revision of its mark: the index every node shows.
        self.marks: dict[str, int] = {}
        self.quiet = QuietClock(registry.config.registration_ttl)

    def forget(self, now: float) -> None:
        """The store lost its data (its revisions went back): nothing the mirror holds is
        known to be there. Every instance is removed and every index restarts, so the
        next listing and watch give the store's own revisions again; watchers see the
        index go backwards, the contract's sign that the registry started over."""
        for key in list(self.entries):
            self.removal_reasons.setdefault(key, RemovalReason.TTL_EXPIRED)
            self._delete(ParsedKey("instances", *key), self.synced_revision, now)
        self._delete(ParsedKey(PRESERVATION, ""), self.synced_revision, now)
        self.nodes.clear()
        self.removal_reasons.clear()
        self.marks.clear()
        self.registry.restart_indexes()
        self.synced_revision = 0

    # ------------------------------------------------------------ input

    def same_incarnation(self, key: InstanceKey, entry: Entry) -> Compare:
        """The writers' guard "the incarnation the view holds still exists" (its
        `create_revision`), made once per incarnation: every heartbeat carries it."""
        guard = entry.guard
        if guard is None:
            instance = self.layout.instance(*key)
            guard = Compare(instance, Target.CREATE, CompareResult.EQUAL, entry.create_revision)
            entry.guard = guard
        return guard

    def apply_events(self, events: Sequence[KvEvent], revision: int, now: float) -> None:
        """Watch events, in order; `revision` is the message header's (synced up to it)."""
        for event in events:
            parsed = self.layout.parse(event.kv.key)
            if parsed is None:
                continue
            if event.type is EventType.PUT:
                self._put(parsed, event.kv, now)
            else:
                self._delete(parsed, event.kv.mod_revision, now)
        self.progress(revision)

    def progress(self, revision: int) -> None:
        """Nothing changed up to `revision` beyond what the mirror has."""
        self.synced_revision = max(self.synced_revision, revision)

    def load(self, kvs: Iterable[KeyValue], revision: int, now: float) -> None:
        """A full listing at `revision`: apply only what differs from the mirror.

        The marks come first: every service's index is its mark's mod revision, as on
        the nodes that watched its changes live (a removal included, whose revision the
        listing could not know otherwise). A service with no mark (written before marks
        existed) gets the mod revisions of its keys, and a removal `revision`.
        """
        listed: dict[str, dict[InstanceKey, KeyValue]] = {
            "instances": {},
            "health": {},
            "maintenance": {},
            "soft": {},
        }
        nodes: dict[str, NodeRecord] = {}
        marks: dict[str, int] = {}
        paused: KeyValue | None = None
        for kv in kvs:
            parsed = self.layout.parse(kv.key)
            if parsed is None:
                continue
            if parsed.kind == SERVICES:
                marks[parsed.name] = kv.mod_revision
            elif parsed.kind == "nodes":
                node = NodeRecord.decode(kv.value)
                if node is not None:
                    nodes[parsed.name] = node
            elif parsed.kind == PRESERVATION:
                paused = kv
            else:
                listed[parsed.kind][(parsed.name, parsed.instance_id)] = kv
        self.nodes = nodes
        for name, mark in marks.items():
            self._mark(name, mark)
        instances = listed["instances"]
        for key, kv in instances.items():
            entry = self.entries.get(key)
            if entry is None or entry.mod_revision != kv.mod_revision:
                self._put(ParsedKey("instances", *key), kv, now)
        # Beside the record, in the order a registration writes them: deletions, then
        # puts, soft state last (it is written with, or after, the health key).
        for key, entry in list(self.entries.items()):
            for kind in _BESIDE:
                if _beside_mod(entry, kind) and key not in listed[kind]:
                    self._delete(ParsedKey(kind, *key), revision, now)
        for kind in _BESIDE:
            for key, kv in listed[kind].items():
                entry = self.entries.get(key)
                if entry is not None and _beside_mod(entry, kind) != kv.mod_revision:
                    self._put(ParsedKey(kind, *key), kv, now)
        for key in [key for key in self.entries if key not in instances]:
            self._delete(ParsedKey("instances", *key), revision, now)
        if paused is None:
            self._delete(ParsedKey(PRESERVATION, ""), revision, now)
        else:
            self._put(ParsedKey(PRESERVATION, ""), paused, now)
        self.progress(revision)

    # ------------------------------------------------------------ changes

    def _put(self, parsed: ParsedKey, kv: KeyValue, now: float) -> None:
        key = (parsed.name, parsed.instance_id)
        if parsed.kind == "nodes":
            node = NodeRecord.decode(kv.value)
            if node is None:
                self.skipped_records += 1
            else:
                self.nodes[parsed.name] = node
            return
        if parsed.kind == PRESERVATION:
            paused = PreservationRecord.decode(kv.value)
            if paused is None:
                self.skipped_records += 1
            else:
                self.registry.follow_self_preservation(True, paused.reason, now)
            return
        if parsed.kind == SERVICES:
            self._mark(parsed.name, kv.mod_revision)
            return
        if parsed.kind in _BESIDE:
            self._put_beside(parsed.kind, key, kv, now)
            return
        record = InstanceRecord.decode(kv.value)
        if record is None or (record.request.service_name, record.request.instance_id) != key:
            self.skipped_records += 1
            return
        entry = self.entries.get(key)
        if entry is not None and entry.create_revision != kv.create_revision:
            # A new incarnation under the same key (seen only through a re-list).
            self._delete(ParsedKey("instances", *key), kv.mod_revision, now)
            entry = None
        change = Registration(
            record.request, stamp=StoreStamp(record.registered_at, record.updated_at)
        )
        try:
            self.registry.apply(change, now, revision=self._capped(key[0], kv.mod_revision))
        except RequestError:  # registry_full: this node cannot show it
            self.skipped_records += 1
            return
        if entry is None:
            entry = self.entries[key] = Entry(
                record, kv.create_revision, kv.mod_revision, rise_load=record.load
            )
        else:
            entry.record, entry.mod_revision = record, kv.mod_revision
        self._risen(key[0], entry, record.load, kv.mod_revision)
        self.quiet.touch(key, now)

    def _put_beside(self, kind: str, key: InstanceKey, kv: KeyValue, now: float) -> None:
        """A `health`, `maintenance` or `soft` record: kept on its instance's entry, told
        to the registry.

        One for an instance this mirror does not hold is ignored; an unreadable one is skipped.
        """
        entry = self.entries.get(key)
        if entry is None:
            return
        heartbeat = None if entry.soft is None else entry.soft.heartbeat_at
        change = _kept_beside(entry, kind, key, kv)
        if change is None:
            self.skipped_records += 1
            return
        self.registry.apply(change, now, revision=self._capped(key[0], kv.mod_revision))
        if isinstance(change, SoftStateRecorded):
            self._risen(key[0], entry, change.load, kv.mod_revision)
            if change.heartbeat_at != heartbeat:
                self.quiet.touch(key, now)

    # ------------------------------------------------------------ marks

    def _mark(self, service: str, revision: int) -> None:
        if revision > self.marks.get(service, 0):
            self.marks[service] = revision
            self.registry.mark_service(service, revision)

    def _capped(self, service: str, revision: int) -> int:
        """The revision a change of `service` at `revision` is applied at: its mark (the
        registry never raises an index above it), or, for a service never marked, the
        change's own revision."""
        return self.marks.get(service, revision)

    def _risen(self, service: str, entry: Entry, load: float, revision: int) -> None:
        """A change applied in the txn of the service's mark: its load is the one shown
        at the rise (compared with by the next writer)."""
        if self.marks.get(service) == revision:
            entry.rise_load = load

    def _delete(self, parsed: ParsedKey, revision: int, now: float) -> None:
        key = (parsed.name, parsed.instance_id)
        if parsed.kind == "nodes":
            self.nodes.pop(parsed.name, None)
            return
        if parsed.kind == "health":
            entry = self.entries.get(key)
            if entry is None:
                return
            entry.health, entry.health_mod = None, 0
            change = HealthRecorded(key[0], key[1], Status.UNKNOWN, "status cleared", None)
            self.registry.apply(change, now, revision=self._capped(key[0], revision))
            return
        if parsed.kind == PRESERVATION:
            self.registry.follow_self_preservation(False, None, now)
            return
        if parsed.kind == SERVICES:  # never deleted by a node; the index stays
            self.marks.pop(parsed.name, None)
            return
        if parsed.kind == "soft":  # deleted with the record, in the same txn
            entry = self.entries.get(key)
            if entry is not None:
                entry.soft, entry.soft_mod = None, 0
            return
        if parsed.kind == "maintenance":
            entry = self.entries.get(key)
            if entry is None or entry.maintenance is None:
                return
            entry.maintenance, entry.maintenance_mod = None, 0
            ended = MaintenanceEnded(*key)
            self.registry.apply(ended, now, revision=self._capped(key[0], revision))
            return
        if self.entries.pop(key, None) is None:
            return
        self.quiet.forget(key)
        reason = self.removal_reasons.pop(key, RemovalReason.TTL_EXPIRED)
        if self.registry.instance_snapshot(*key) is not None:  # else never shown (full)
            removal = Removal(key[0], key[1], reason)
            self.registry.apply(removal, now, revision=self._capped(key[0], revision))


def _kept_beside(
    entry: Entry, kind: str, key: InstanceKey, kv: KeyValue
) -> HealthRecorded | MaintenanceStarted | SoftStateRecorded | None:
    """Decode the `kind` record beside an instance's, keep it on `entry`, and say what the
    registry must apply; None when it does not decode (then nothing is kept)."""
    if kind == "soft":
        soft = SoftRecord.decode(kv.value)
        if soft is not None:
            entry.soft, entry.soft_mod = soft, kv.mod_revision
            return SoftStateRecorded(*key, soft.heartbeat_at, soft.load, soft.checked_at)
    elif kind == "health":
        health = HealthRecord.decode(kv.value)
        if health is not None:
            entry.health, entry.health_mod = health, kv.mod_revision
            return HealthRecorded(*key, health.status, health.reason, health.since)
    else:
        drain = MaintenanceRecord.decode(kv.value)
        if drain is not None:
            entry.maintenance, entry.maintenance_mod = drain, kv.mod_revision
            return MaintenanceStarted(*key, drain.reason, drain.since)
    return None


def _beside_mod(entry: Entry, kind: str) -> int:
    """The mod revision of the `kind` record beside the instance (0: none)."""
    if kind == "health":
        return entry.health_mod
    return entry.maintenance_mod if kind == "maintenance" else entry.soft_mod
