"""A node's local view of the store: etcd keys in, `Registry.apply` changes out.

The view is the only writer of its node's `Registry` in cluster mode. Every change
carries the store revision it was written at, so a service's `X-Discovery-Index` is the
revision of its last visible change, the same on every node that has seen that change
(the registry decides what is visible, as in single-process mode). A full listing (at
start, or after a compaction) is diffed against the view and only the differences are
applied, so a re-list changes nothing that did not change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sd_etcd import EventType, KeyValue, KvEvent

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
from .layout import (
    PRESERVATION,
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
# The records kept beside an instance's, on its lease.
_BESIDE = ("health", "maintenance", "soft")


@dataclass(slots=True)
class Entry:
    """One instance as the store holds it: what writes compare against and renew."""

    record: InstanceRecord
    create_revision: int
    mod_revision: int
    lease: int
    health: HealthRecord | None = None
    health_mod: int = 0
    maintenance: MaintenanceRecord | None = None
    maintenance_mod: int = 0
    soft: SoftRecord | None = None
    soft_mod: int = 0


class ClusterView:
    """Feeds one `Registry` from the store and remembers what it fed."""

    def __init__(self, registry: Registry, layout: KeyLayout) -> None:
        self.registry = registry
        self.layout = layout
        self.entries: dict[InstanceKey, Entry] = {}
        self.nodes: dict[str, NodeRecord] = {}
        # Every change up to this revision is in the view.
        self.synced_revision = 0
        # Why this node deleted an instance, for the removal it will see (others
        # cannot tell an unregistration from an expiry: both are a lease going away).
        self.removal_reasons: dict[InstanceKey, RemovalReason] = {}
        self.skipped_records = 0

    def forget(self, now: float) -> None:
        """The store lost its data (its revisions went back): nothing the view holds is
        known to be there. Every instance is removed and every index restarts, so the
        next listing and watch give the store's own revisions again; watchers see the
        index go backwards, the contract's sign that the registry started over."""
        for key in list(self.entries):
            self.removal_reasons.setdefault(key, RemovalReason.TTL_EXPIRED)
            self._delete(ParsedKey("instances", *key), self.synced_revision, now)
        self._delete(ParsedKey(PRESERVATION, ""), self.synced_revision, now)
        self.nodes.clear()
        self.removal_reasons.clear()
        self.registry.restart_indexes()
        self.synced_revision = 0

    # ------------------------------------------------------------ input

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
        """Nothing changed up to `revision` beyond what the view has."""
        self.synced_revision = max(self.synced_revision, revision)

    def load(self, kvs: Iterable[KeyValue], revision: int, now: float) -> None:
        """A full listing at `revision`: apply only what differs from the view.

        Puts keep their own mod revision as the index they give; a key gone from the
        listing was deleted at some revision up to `revision`, which is all a re-list
        can know, so such a removal gives index `revision`.
        """
        listed: dict[str, dict[InstanceKey, KeyValue]] = {
            "instances": {},
            "health": {},
            "maintenance": {},
            "soft": {},
        }
        nodes: dict[str, NodeRecord] = {}
        paused: KeyValue | None = None
        for kv in kvs:
            parsed = self.layout.parse(kv.key)
            if parsed is None:
                continue
            if parsed.kind == "nodes":
                node = NodeRecord.decode(kv.value)
                if node is not None:
                    nodes[parsed.name] = node
            elif parsed.kind == PRESERVATION:
                paused = kv
            else:
                listed[parsed.kind][(parsed.name, parsed.instance_id)] = kv
        self.nodes = nodes
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
            self.registry.apply(change, now, revision=kv.mod_revision)
        except RequestError:  # registry_full: this node cannot show it
            self.skipped_records += 1
            return
        if entry is None:
            self.entries[key] = Entry(record, kv.create_revision, kv.mod_revision, kv.lease)
        else:
            entry.record, entry.mod_revision, entry.lease = record, kv.mod_revision, kv.lease

    def _put_beside(self, kind: str, key: InstanceKey, kv: KeyValue, now: float) -> None:
        """A `health`, `maintenance` or `soft` record: kept on its instance's entry, told
        to the registry.

        One for an instance this view does not hold is ignored; an unreadable one is skipped.
        """
        entry = self.entries.get(key)
        if entry is None:
            return
        change = _kept_beside(entry, kind, key, kv)
        if change is None:
            self.skipped_records += 1
            return
        self.registry.apply(change, now, revision=kv.mod_revision)

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
            self.registry.apply(change, now, revision=revision)
            return
        if parsed.kind == PRESERVATION:
            self.registry.follow_self_preservation(False, None, now)
            return
        if parsed.kind == "soft":  # it only goes with its lease: the record goes too
            entry = self.entries.get(key)
            if entry is not None:
                entry.soft, entry.soft_mod = None, 0
            return
        if parsed.kind == "maintenance":
            entry = self.entries.get(key)
            if entry is None or entry.maintenance is None:
                return
            entry.maintenance, entry.maintenance_mod = None, 0
            self.registry.apply(MaintenanceEnded(*key), now, revision=revision)
            return
        if self.entries.pop(key, None) is None:
            return
        reason = self.removal_reasons.pop(key, RemovalReason.TTL_EXPIRED)
        if self.registry.instance_snapshot(*key) is not None:  # else never shown (full)
            self.registry.apply(Removal(key[0], key[1], reason), now, revision=revision)


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
