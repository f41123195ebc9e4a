"""The registry state machine: every decision, no I/O, time passed in.

Each public method takes `now` (monotonic seconds from the driver), checks
everything it needs before it changes anything, and leaves work for the
driver as effects (`drain_effects`). Hot paths touch one instance: a heartbeat
is two dict lookups and a few assignments. Expiry, probe and deregistration
schedules are heaps with lazy deletion, so nothing scans the fleet except the
self-preservation check, which runs only when an expiry is actually due.

Beside it, each in its own module: the rendered bodies and their caches
(`views`), the schedules (`timers`), the self-preservation rules
(`self_preservation`) and the snapshot format (`snapshot`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from .checks import CheckType
from .config import RegistryConfig
from .errors import (
    DriverError,
    not_registered,
    registry_full,
    status_not_reported,
)
from .events import (
    Effect,
    HealthRecorded,
    IndexRaised,
    InstanceChange,
    InstanceRegistered,
    InstanceRemoved,
    MaintenanceChanged,
    MaintenanceEnded,
    MaintenanceStarted,
    ProbePassed,
    ProbeResult,
    Registration,
    Removal,
    RemovalReason,
    RunProbe,
    SoftStateRecorded,
    StatusChanged,
    StoreStamp,
)
from .instance import Instance, InstanceSnapshot, unit_load
from .maintenance import Maintenance
from .models import RegisterRequest
from .self_preservation import SelfPreservation
from .service import Service
from .snapshot import read_snapshot, write_snapshot
from .stats import Stats
from .status import Signal, Status, next_status
from .timers import Timers
from .views import Views

__all__ = [
    "Registry",
]


class Registry:
    """All registry state. Single-threaded by design: call it from one loop."""

    def __init__(self, config: RegistryConfig, *, now: float, wall_offset: float) -> None:
        """`wall_offset` turns the core's monotonic `now` into Unix time for display."""
        self.config = config
        self.wall_offset = wall_offset
        self.started_at = now
        self.stats = Stats()
        self._now = now
        self._services: dict[str, Service] = {}
        self.views = Views(self._services, wall_offset, config.filter_cache_bytes)
        self._count = 0
        self._global_index = 1
        #: Times the indexes started over (`restart_indexes`): whoever keeps something by
        #: index (the DNS answers' cache) drops it when this moves.
        self.index_epoch = 0
        self._tombstones: dict[str, int] = {}
        # Registry-wide, so a probe of a removed incarnation never matches a new one.
        self._generations = itertools.count(1)
        self._timers = Timers(config)
        self._effects: list[Effect] = []
        self._raised: set[str] = set()
        self._status_counts = dict.fromkeys(Status, 0)
        self._preservation = SelfPreservation(config, self._effects.append)
        self._last_heartbeats = lambda: (
            i.lease_from for s in self._services.values() for i in s.instances.values()
        )
        # Cluster mode: the store revision of the change being applied (the index it
        # gives), and which instances this node probes (None: all of them).
        self._store_revision: int | None = None
        self.probe_filter: Callable[[str, str], bool] | None = None

    def _advance(self, now: float) -> None:
        if now < self._now:
            raise DriverError(f"time went backwards: {now} < {self._now}")
        self._now = now

    @property
    def now(self) -> float:
        """The latest time the driver reported."""
        return self._now

    def _find(self, service_name: str, instance_id: str) -> Instance | None:
        service = self._services.get(service_name)
        return service.instances.get(instance_id) if service is not None else None

    # ------------------------------------------------- changes to instances

    def apply(self, change: InstanceChange, now: float, *, revision: int | None = None) -> bool:
        """The one way a change to an instance enters the state machine.

        A registration (True when the instance is new), a removal, a probe
        result (False when stale: the instance is gone or moved), or the start
        or end of maintenance (False when it changed nothing). On a single
        registry they come from HTTP writes, the probe driver and a snapshot
        at start (`restore`); in cluster mode from the store's etcd watch
        (`cluster.mirror.StoreMirror`), through this same method. Heartbeats stay apart
        (`heartbeat`): they renew a lease rather than change the instance.
        Decisions the core takes itself (expiry, removal after being
        unhealthy too long) act on the instance directly.

        `revision` (cluster mode): the store revision the change was written at;
        a visible change then sets the service's index to it instead of counting.
        """
        self._advance(now)
        if revision is None:
            return self._apply(change, now)
        self._store_revision = revision
        try:
            return self._apply(change, now)
        finally:
            self._store_revision = None

    def _apply(self, change: InstanceChange, now: float) -> bool:
        if isinstance(change, Registration):
            request = change.request
            current = self._find(request.service_name, request.instance_id)
            if current is None:
                if self._count >= self.config.max_instances:
                    raise registry_full(self.config.max_instances)
                self._add(request, now, change)
                return True
            self._update(current, request, now, change.stamp)
            return False
        if isinstance(change, Removal):
            instance = self._find(change.service_name, change.instance_id)
            if instance is None:
                raise not_registered(change.service_name, change.instance_id)
            self._remove(instance, change.reason)
            return True
        if isinstance(change, MaintenanceStarted | MaintenanceEnded):
            return self._maintenance(change, now)
        if isinstance(change, HealthRecorded):
            return self._record_health(change, now)
        if isinstance(change, SoftStateRecorded):
            return self._record_soft_state(change)
        return self._record_probe(change, now)

    def register(self, request: RegisterRequest, now: float) -> bool:
        """Add or update an instance; True when it is new. Counts as a heartbeat."""
        return self.apply(Registration(request), now)

    def unregister(self, service_name: str, instance_id: str, now: float) -> None:
        self.apply(Removal(service_name, instance_id, RemovalReason.UNREGISTERED), now)

    def record_probe(self, result: ProbeResult, now: float) -> bool:
        """Apply a probe's outcome; False when it was stale (instance gone or moved)."""
        return self.apply(result, now)

    def start_maintenance(
        self, service_name: str, instance_id: str, reason: str | None, now: float
    ) -> bool:
        """Take an instance out of healthy reads; False when it already was (same reason)."""
        return self.apply(MaintenanceStarted(service_name, instance_id, reason), now)

    def end_maintenance(self, service_name: str, instance_id: str, now: float) -> bool:
        """Put it back; False when it was not in maintenance."""
        return self.apply(MaintenanceEnded(service_name, instance_id), now)

    def heartbeat(
        self,
        service_name: str,
        instance_id: str,
        load: float | None,
        now: float,
        *,
        status: Status | None = None,
    ) -> None:
        """Renew an instance's lease; unknown instances are the client's cue to register.

        An instance with a ttl check is healthy while it heartbeats, unless
        the heartbeat reports `status` unhealthy; other instances are probed,
        so a `status` from them is refused (422).
        """
        self._advance(now)
        service = self._services.get(service_name)
        instance = service.instances.get(instance_id) if service is not None else None
        if instance is None or service is None:
            raise not_registered(service_name, instance_id)
        ttl = instance.check is CheckType.TTL
        if status is not None and not ttl:
            raise status_not_reported()
        instance.last_heartbeat = instance.lease_from = now
        self.stats.heartbeats += 1
        before = (instance.status, instance.load)
        if load is not None:
            instance.load = unit_load(load)
        if ttl:
            self._reported(instance, status or Status.HEALTHY, now)
        self._touched(service, instance, before)

    def _touched(self, service: Service, instance: Instance, before: tuple[Status, float]) -> None:
        """After a heartbeat, a probe or soft state from the store moved `instance`
        (`before`: its status and load until then): renders show it, and the index rises
        only for a status change or a load move of WATCH_LOAD_DELTA or more since the
        last rise (timestamps alone never raise it; the one rule for both modes)."""
        self.views.instance_changed(
            service, instance, targets=(instance.status, instance.load) != before
        )
        if instance.status != before[0] or instance.load_moved(self.config.watch_load_delta):
            self._bump_index(service, instance)

    def _reported(self, instance: Instance, status: Status, now: float) -> None:
        """A ttl-checked instance's own word on its health (a heartbeat or registration)."""
        instance.last_health_check = now
        if status == Status.UNHEALTHY:
            self._set_status(instance, Signal.REPORTED_UNHEALTHY, "reported unhealthy", now)
        else:
            self._set_status(instance, Signal.REPORTED_HEALTHY, "reported healthy", now)

    def _add(self, request: RegisterRequest, now: float, change: Registration) -> None:
        name = request.service_name
        instance = Instance.registered(request, now, next(self._generations))
        stamp, restored_at = change.stamp, change.restored_at
        if stamp is not None:
            instance.registered_at = stamp.registered_at - self.wall_offset
            instance.last_heartbeat = instance.lease_from = stamp.updated_at - self.wall_offset
        service = self._services.get(name)
        if service is None:
            # Cluster mode: a new service's index is only its own change's revision. A
            # listing applies keys in key order, not revision order, so starting from the
            # global index would give a service listed after a newer one that newer
            # revision, unlike the nodes that saw its change live.
            start = self._global_index if self._store_revision is None else 0
            service = Service(name, start)
            self._services[name] = service
            self._tombstones.pop(name, None)
        service.instances[request.instance_id] = instance
        service.ordered = None
        self._count += 1
        self._status_counts[instance.status] += 1
        if self.config.local_expiry:
            self._timers.expire_later(instance)
        probed = instance.check.probed
        if probed:
            self._timers.probe_first(instance, now)
            self._timers.start_retries(instance)
        self.stats.registrations += 1
        self._bump_index(service, instance)
        if restored_at is None:
            self._effects.append(
                InstanceRegistered(name, request.instance_id, instance.probe_url, updated=False)
            )
            if not probed and self._store_revision is None:
                # Registration counts as the first heartbeat (in cluster mode the
                # registering node writes that status to the store instead).
                self._reported(instance, Status.HEALTHY, now)
        else:
            # Restored: `unknown` until it is probed, or for a ttl check until
            # it heartbeats (the registry cannot know what happened meanwhile). It
            # shows the last heartbeat the snapshot saw (none happened since), while
            # its TTL runs from now (`lease_from`), a full TTL of grace.
            instance.registered_at = restored_at - self.wall_offset
            heartbeat = change.heartbeat_at
            shown = restored_at if heartbeat is None else max(restored_at, heartbeat)
            instance.last_heartbeat = min(shown - self.wall_offset, now)
            if probed:
                self._timers.probe_at_once(instance, now)

    def _update(
        self,
        instance: Instance,
        request: RegisterRequest,
        now: float,
        stamp: StoreStamp | None = None,
    ) -> None:
        service = self._services[instance.service_name]
        check = CheckType(request.check.type)
        address_changed = (
            instance.host != request.host
            or instance.port != request.port
            or instance.health_endpoint != request.health_endpoint
            or instance.check is not check
        )
        status_before = instance.status
        visible_change = (
            address_changed
            or instance.metadata != request.metadata
            or instance.tags != request.tags
        )
        instance.host = request.host
        instance.port = request.port
        instance.health_endpoint = request.health_endpoint
        instance.check = check
        instance.metadata = dict(request.metadata)
        instance.tags = request.tags
        heartbeat = now if stamp is None else stamp.updated_at - self.wall_offset
        instance.last_heartbeat = instance.lease_from = heartbeat
        if request.load_percentage is not None:
            instance.load = unit_load(request.load_percentage)
        # Every re-registration starts a new incarnation (the service restarted, or
        # moved): fresh probe streaks, probed at once with first-probe retries, and
        # results of probes sent to the previous one are stale.
        instance.generation = next(self._generations)
        instance.successes = 0
        instance.failures = 0
        instance.probe_in_flight = False
        if address_changed:
            self._set_status(instance, Signal.ADDRESS_CHANGED, "address changed", now)
        elif check.probed:
            self._set_status(instance, Signal.REREGISTERED, "registered again", now)
        if check.probed:
            self._timers.probe_first(instance, now)
            self._timers.start_retries(instance)
        else:
            self._timers.no_probes(instance)
        if not check.probed and self._store_revision is None:  # counts as a heartbeat
            self._reported(instance, Status.HEALTHY, now)
        visible_change = visible_change or instance.status != status_before
        self.stats.re_registrations += 1
        self.views.instance_changed(service, instance, targets=True, registration=True)
        if visible_change or instance.load_moved(self.config.watch_load_delta):
            self._bump_index(service, instance)
        self._effects.append(
            InstanceRegistered(
                instance.service_name, instance.instance_id, instance.probe_url, updated=True
            )
        )

    def _remove(self, instance: Instance, reason: RemovalReason) -> None:
        if reason is RemovalReason.UNREGISTERED:
            self.stats.unregistrations += 1
        elif reason is RemovalReason.TTL_EXPIRED:
            self.stats.expirations += 1
        else:
            self.stats.unhealthy_removals += 1
        service = self._services[instance.service_name]
        del service.instances[instance.instance_id]
        service.ordered = None
        instance.removed = True
        self._count -= 1
        self._status_counts[instance.status] -= 1
        self._bump_index(service, instance)
        if not service.instances:
            del self._services[service.name]
            self._tombstones[service.name] = service.index
        self._effects.append(InstanceRemoved(instance.service_name, instance.instance_id, reason))

    # -------------------------------------------------------- maintenance

    def _maintenance(self, change: MaintenanceStarted | MaintenanceEnded, now: float) -> bool:
        service = self._services.get(change.service_name)
        instance = service.instances.get(change.instance_id) if service is not None else None
        if instance is None or service is None:
            raise not_registered(change.service_name, change.instance_id)
        current = instance.maintenance
        if isinstance(change, MaintenanceEnded):
            if current is None:
                return False
            instance.maintenance = None
            reason = current.reason
        else:
            reason = change.reason
            if current is not None and current.reason == reason:
                return False
            if current is not None:  # a new reason: still the same drain
                since = current.since
            else:
                since = now if change.since is None else change.since - self.wall_offset
            instance.maintenance = Maintenance(reason, since)
        self.views.instance_changed(service, instance, targets=True)
        self._bump_index(service, instance)
        self._effects.append(
            MaintenanceChanged(
                instance.service_name,
                instance.instance_id,
                instance.maintenance is not None,
                reason,
            )
        )
        return True

    # ----------------------------------------------------- probe results

    def probe_is_current(self, probe: RunProbe) -> bool:
        """Whether a probe handed out earlier is still wanted.

        A driver that queues probes behind its concurrency limit asks this
        before sending one: an instance unregistered or moved meanwhile must
        not be sent a request (its result would be dropped as stale anyway).
        A probe not sent needs no result: removal and an address change both
        clear the instance's probe in flight.
        """
        instance = self._find(probe.service_name, probe.instance_id)
        if instance is None or instance.generation != probe.generation:
            self.stats.probes_stale += 1
            return False
        return True

    def _record_probe(self, result: ProbeResult, now: float) -> bool:
        service = self._services.get(result.service_name)
        instance = service.instances.get(result.instance_id) if service is not None else None
        if instance is None or service is None or instance.generation != result.generation:
            self.stats.probes_stale += 1
            return False
        counts = self._came_back(instance, result, now)
        instance.last_health_check = now
        before = (instance.status, instance.load)
        if isinstance(result, ProbePassed):
            instance.successes += 1
            instance.failures = 0
            if result.load is not None:
                instance.load = unit_load(result.load)
            self._set_status(instance, Signal.PROBE_PASSED, "probe passed", now)
        elif counts:
            instance.failures += 1
            instance.successes = 0
            self._set_status(instance, Signal.PROBE_FAILED, result.reason, now)
        self._touched(service, instance, before)
        return True

    def _came_back(self, instance: Instance, result: ProbeResult, now: float) -> bool:
        """What every returned probe does in both modes: count it, end the probe in
        flight, and end or go on with first-probe retries. False for a failed retry:
        retries are extra probes, so its failure does not count toward the failure
        threshold (an instance that never passed turns `unhealthy` no sooner than its
        scheduled probes say)."""
        retry = instance.probe_retry
        instance.probe_in_flight = instance.probe_retry = False
        if isinstance(result, ProbePassed):
            self.stats.probes_passed += 1
            self._timers.first_passed(instance)
            return True
        self.stats.probes_failed += 1
        self._timers.retry_first(instance, now)
        return not retry

    def probe_returned(
        self, result: ProbeResult, now: float
    ) -> tuple[InstanceSnapshot, bool] | None:
        """Cluster mode: a probe came back, but the store decides the status.

        Clears the probe in flight (and goes on with first-probe retries, as in
        one process) and returns the instance as it is with whether the result
        counts toward the thresholds (a failed retry does not), or None when the
        result is stale (the instance is gone or moved).
        """
        self._advance(now)
        instance = self._find(result.service_name, result.instance_id)
        if instance is None or instance.generation != result.generation:
            self.stats.probes_stale += 1
            return None
        counts = self._came_back(instance, result, now)
        return instance.snapshot(), counts

    def _record_soft_state(self, change: SoftStateRecorded) -> bool:
        """Take the soft values the store holds (cluster mode): a heartbeat's or probe's
        timestamps and load; True when anything shown moved."""
        service = self._services.get(change.service_name)
        instance = service.instances.get(change.instance_id) if service is not None else None
        if instance is None or service is None:
            return False
        offset = self.wall_offset
        heartbeat = change.heartbeat_at - offset
        checked = None if change.checked_at is None else change.checked_at - offset
        load = unit_load(change.load)
        if (instance.last_heartbeat, instance.load, instance.last_health_check) == (
            heartbeat,
            load,
            checked,
        ):
            return False
        before = (instance.status, instance.load)
        instance.last_heartbeat, instance.load, instance.last_health_check = (
            heartbeat,
            load,
            checked,
        )
        instance.lease_from = heartbeat
        self._touched(service, instance, before)
        return True

    def _record_health(self, change: HealthRecorded, now: float) -> bool:
        """Take the status the store holds (cluster mode); True when anything shown moved."""
        instance = self._find(change.service_name, change.instance_id)
        if instance is None:
            return False
        checked = None if change.checked_at is None else change.checked_at - self.wall_offset
        old = instance.status
        if old == change.status and instance.last_health_check == checked:
            return False
        instance.last_health_check = checked
        if change.status == Status.HEALTHY:
            self._timers.first_passed(instance)  # some node's probe passed
        if change.status != old:
            instance.status = change.status
            self._status_counts[old] -= 1
            self._status_counts[change.status] += 1
            unhealthy = change.status == Status.UNHEALTHY
            instance.unhealthy_since = (now if checked is None else checked) if unhealthy else None
            self._effects.append(
                StatusChanged(
                    instance.service_name, instance.instance_id, old, change.status, change.reason
                )
            )
        service = self._services[instance.service_name]
        self.views.instance_changed(service, instance, targets=change.status != old)
        self._bump_index(service, instance)
        return True

    def _set_status(self, instance: Instance, signal: Signal, reason: str, now: float) -> None:
        old = instance.status
        new = next_status(
            old,
            signal,
            successes=instance.successes,
            failures=instance.failures,
            success_threshold=self.config.success_threshold,
            failure_threshold=self.config.failure_threshold,
        )
        if new == old:
            return
        instance.status = new
        self._status_counts[old] -= 1
        self._status_counts[new] += 1
        instance.unhealthy_since = now if new == Status.UNHEALTHY else None
        if new == Status.UNHEALTHY:
            self._timers.turned_unhealthy(instance, now)
        self._effects.append(
            StatusChanged(instance.service_name, instance.instance_id, old, new, reason)
        )

    # ------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        """When the driver must call `on_timer` next (it may call earlier)."""
        return self._timers.next_deadline(expiry_paused_until=self._preservation.next_check)

    def on_timer(self, now: float) -> None:
        """Do everything due by `now`: hand out probes, expire, deregister."""
        self._advance(now)
        owns = self.probe_filter
        for instance, retry in self._timers.probes_due(now):
            if owns is not None and not owns(instance.service_name, instance.instance_id):
                continue  # cluster mode: another node probes it
            if instance.probe_in_flight:
                self.stats.probes_skipped += 1
                continue
            instance.probe_in_flight = True
            instance.probe_retry = retry
            self._effects.append(
                RunProbe(
                    instance.service_name,
                    instance.instance_id,
                    instance.probe_url,
                    instance.generation,
                    instance.check,
                )
            )
        if not self.config.local_expiry:
            return
        self._expire_due(now)
        for instance in self._timers.unhealthy_too_long(now):
            self._remove(instance, RemovalReason.UNHEALTHY_TOO_LONG)

    def _expire_due(self, now: float) -> None:
        preservation = self._preservation
        if preservation.expiry_paused(now, self._count, self._last_heartbeats):
            return
        due = self._timers.expired(now)
        if not due:
            return
        if self._pause_instead(preservation, now):
            for instance in due:
                self._timers.expire_later(instance)
            return
        for instance in due:
            self._remove(instance, RemovalReason.TTL_EXPIRED)

    def _pause_instead(self, preservation: SelfPreservation, now: float) -> bool:
        if preservation.pause_instead(now, self._count, self._last_heartbeats):
            self.stats.self_preservation_entries += 1
            return True
        return False

    def expiry_paused(self, preservation: SelfPreservation, now: float, *, due: bool) -> bool:
        """Cluster mode, on the one node that decides (the guardian): whether expiry is
        paused now, by the rules of one process's own expiry over this registry's
        instances. `preservation` is the guardian's own decision state (what every node
        shows follows the store instead: `follow_self_preservation`); `due`: some
        instance's lease is about to run out (an expiry would be due)."""
        self._advance(now)
        if preservation.expiry_paused(now, self._count, self._last_heartbeats):
            return True
        return due and self._pause_instead(preservation, now)

    def mark_service(self, name: str, revision: int) -> None:
        """Cluster mode: the store marked a visible change of service `name` at
        `revision` (the `services/<name>` key, written in the same txn as the change):
        its index, or the index its tombstone keeps once it has no instance, rises to
        it. Nodes that watched the change and nodes that list the prefix later both
        take the index from the mark, so they show the same one."""
        service = self._services.get(name)
        if service is None:
            if revision > self._tombstones.get(name, 0):
                self._tombstones[name] = revision
                self._global_index = max(self._global_index, revision)
                self._raised.add(name)
            return
        if revision > service.index:
            service.index = revision
            self._global_index = max(self._global_index, revision)
            self._raised.add(name)
            self.views.index_raised(service)

    def follow_self_preservation(self, active: bool, reason: str | None, now: float) -> None:
        """Cluster mode, every other node: show the mode as the guardian stored it."""
        self._advance(now)
        self._preservation.follow(active, reason)

    # ---------------------------------------------------------- snapshots

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to rebuild the fleet after a restart, JSON-ready."""
        instances = (
            instance
            for name in sorted(self._services)
            for instance in self._services[name].sorted_instances()
        )
        return write_snapshot(instances, self._global_index, self.wall_offset)

    def restore(self, document: object, now: float) -> tuple[int, int]:
        """Load a `snapshot()`; returns (restored, skipped). Refuses other formats.

        Entries come back as quiet registrations (`unknown`, a full TTL,
        probed at once); invalid ones, ones already registered and any past
        the instance limit are skipped.
        """
        self._advance(now)
        entries, saved_index = read_snapshot(document)
        restored = 0
        for entry in entries:
            if (
                entry is not None
                and self._find(entry.request.service_name, entry.request.instance_id) is None
                and self._count < self.config.max_instances
            ):
                restored_change = Registration(
                    entry.request, restored_at=entry.registered_at, heartbeat_at=entry.heartbeat_at
                )
                self.apply(restored_change, now)
                if entry.maintenance is not None:
                    reason, since = entry.maintenance
                    change = MaintenanceStarted(
                        entry.request.service_name, entry.request.instance_id, reason, since
                    )
                    self.apply(change, now)
                restored += 1
        if saved_index is not None and saved_index >= self._global_index:
            # Carry the index on, so watchers do not see it go backwards.
            self._global_index = saved_index + 1
            for service in self._services.values():
                service.index = self._global_index
        return restored, len(entries) - restored

    # ----------------------------------------------------------- indexes

    def _bump_index(self, service: Service, instance: Instance) -> None:
        """Raise the global index and give it to `service`: its watchers wake.

        In cluster mode the index is the store revision of the change instead, which
        the view caps at the service's mark: a change the store did not mark as visible
        leaves it where it is, on every node alike (see `mark_service`).
        """
        revision = self._store_revision
        instance.load_at_rise = instance.load
        if revision is None:
            self._global_index += 1
            service.index = self._global_index
        elif revision <= service.index:
            return  # cluster mode: the index only rises to the service's mark (`mark_service`)
        else:
            service.index = revision
            self._global_index = max(self._global_index, revision)
        self._raised.add(service.name)
        self.views.index_raised(service)

    def restart_indexes(self) -> None:
        """Cluster mode: the store started over (etcd lost its data; its revisions begin
        again at 1). Every index goes back to 1, so the next change gives its own
        revision, and watchers see the index go backwards (the sign of a restart)."""
        self._global_index = 1
        self.index_epoch += 1
        for service in self._services.values():
            service.index = 1
            self.views.index_raised(service)
        self._raised.update(self._services)
        self._raised.update(self._tombstones)
        self._tombstones.clear()

    def service_index(self, name: str) -> int:
        service = self._services.get(name)
        if service is not None:
            return service.index
        return self._tombstones.get(name, 1)

    def watched_names(self, since: int) -> list[str]:
        """Every service, and every removed one whose index passed `since` (watch streams)."""
        removed = [name for name, index in self._tombstones.items() if index > since]
        return [*self._services, *removed]

    @property
    def global_index(self) -> int:
        return self._global_index

    def drain_effects(self) -> list[Effect]:
        """Hand the driver everything decided since the last drain, in order."""
        effects = self._effects[:]
        self._effects.clear()
        if self._raised:
            effects.append(IndexRaised(frozenset(self._raised)))
            self._raised = set()
        return effects

    # ------------------------------------------------------------ summary

    @property
    def instance_count(self) -> int:
        return self._count

    @property
    def service_count(self) -> int:
        return len(self._services)

    def status_counts(self) -> dict[str, int]:
        return {status.value: count for status, count in self._status_counts.items()}

    @property
    def self_preservation(self) -> tuple[bool, str | None]:
        """Whether expiry is paused, and why."""
        return self._preservation.active, self._preservation.reason

    def instance_snapshot(self, service_name: str, instance_id: str) -> InstanceSnapshot | None:
        """A frozen copy of one instance's fields (None when not registered)."""
        instance = self._find(service_name, instance_id)
        return None if instance is None else instance.snapshot()
