"""The registry state machine: every decision, no I/O, time passed in.

Each public method takes `now` (monotonic seconds from the driver), checks
everything it needs before it changes anything, and leaves work for the
driver as effects (`drain_effects`). Hot paths touch one instance: a heartbeat
is two dict lookups and a few assignments. Expiry, probe and deregistration
schedules are heaps with lazy deletion, so nothing scans the fleet except the
self-preservation check, which runs only when an expiry is actually due.
"""

from __future__ import annotations

import heapq
import itertools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .config import RegistryConfig
from .errors import DriverError, RequestError
from .events import (
    Effect,
    IndexRaised,
    InstanceRegistered,
    InstanceRemoved,
    ProbePassed,
    ProbeResult,
    RunProbe,
    SelfPreservationChanged,
    StatusChanged,
)
from .instance import Instance
from .models import RegisterRequest
from .render import encode, instance_json, join_instances, join_target_groups, target_group_json
from .status import Signal, Status, next_status

# How often, while self-preservation holds, the core re-checks whether
# heartbeats came back (monotonic seconds).
SELF_PRESERVATION_RECHECK = 1.0
SNAPSHOT_FORMAT = "service-discovery-snapshot"
SNAPSHOT_VERSION = 1
_LATEST_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z, the last a timestamp can show
_HashSpread = float(2**32)


@dataclass(slots=True)
class Stats:
    """Counters since start, for `/metrics`; plain ints so the core stays pure."""

    registrations: int = 0
    re_registrations: int = 0
    heartbeats: int = 0
    unregistrations: int = 0
    expirations: int = 0
    unhealthy_removals: int = 0
    probes_passed: int = 0
    probes_failed: int = 0
    probes_stale: int = 0
    probes_skipped: int = 0
    self_preservation_entries: int = 0


class _Service:
    """One service's instances, watch index and rendered bodies."""

    __slots__ = ("cache", "index", "instances", "name", "ordered")

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index
        self.instances: dict[str, Instance] = {}
        self.ordered: list[Instance] | None = None
        self.cache: dict[str, bytes] = {}

    def sorted_instances(self) -> list[Instance]:
        ordered = self.ordered
        if ordered is None:
            ordered = [self.instances[k] for k in sorted(self.instances)]
            self.ordered = ordered
        return ordered


def _unit(load: float) -> float:
    """A load as the registry keeps it: a float in 0..1 (NaN counts as 0)."""
    value = float(load)
    return min(1.0, max(0.0, value)) if value == value else 0.0


def not_registered(service_name: str, instance_id: str) -> RequestError:
    return RequestError(
        "instance_not_found",
        404,
        f"Instance {service_name}:{instance_id} is not registered",
    )


class Registry:
    """All registry state. Single-threaded by design: call it from one loop."""

    def __init__(self, config: RegistryConfig, *, now: float, wall_offset: float) -> None:
        """`wall_offset` turns the core's monotonic `now` into Unix time for display."""
        self.config = config
        self.wall_offset = wall_offset
        self.started_at = now
        self.stats = Stats()
        self._now = now
        self._services: dict[str, _Service] = {}
        self._count = 0
        self._global_index = 1
        self._tombstones: dict[str, int] = {}
        self._seq = itertools.count()
        # Registry-wide, so a probe of a removed incarnation never matches a new one.
        self._generations = itertools.count(1)
        self._expiry: list[tuple[float, int, Instance]] = []
        self._probes: list[tuple[float, int, Instance]] = []
        self._unhealthy: list[tuple[float, int, Instance]] = []
        self._effects: list[Effect] = []
        self._raised: set[str] = set()
        self._global_cache: dict[str, bytes] = {}
        self._status_counts = dict.fromkeys(Status, 0)
        self._sp_active = False
        self._sp_since = 0.0
        self._sp_reason: str | None = None
        self._sp_next_check = 0.0
        self._sp_blocked_until = float("-inf")

    # ----------------------------------------------------------------- time

    def _advance(self, now: float) -> None:
        if now < self._now:
            raise DriverError(f"time went backwards: {now} < {self._now}")
        self._now = now

    @property
    def now(self) -> float:
        """The latest time the driver reported."""
        return self._now

    # ------------------------------------------------------------- writes

    def register(self, request: RegisterRequest, now: float) -> bool:
        """Add or update an instance; True when it is new. Counts as a heartbeat."""
        self._advance(now)
        name, iid = request.service_name, request.instance_id
        service = self._services.get(name)
        current = service.instances.get(iid) if service is not None else None
        if current is None:
            if self._count >= self.config.max_instances:
                raise RequestError(
                    "registry_full",
                    503,
                    f"The registry holds its maximum of {self.config.max_instances} instances",
                )
            self._add(request, now)
            return True
        self._update(current, request, now)
        return False

    def _add(self, request: RegisterRequest, now: float, *, announce: bool = True) -> None:
        name = request.service_name
        instance = Instance(
            name,
            request.instance_id,
            request.host,
            request.port,
            request.health_endpoint,
            dict(request.metadata),
            0.0 if request.load_percentage is None else _unit(request.load_percentage),
            now,
        )
        instance.generation = next(self._generations)
        service = self._services.get(name)
        if service is None:
            service = _Service(name, self._global_index)
            self._services[name] = service
            self._tombstones.pop(name, None)
        service.instances[request.instance_id] = instance
        service.ordered = None
        self._count += 1
        self._status_counts[instance.status] += 1
        heapq.heappush(
            self._expiry, (now + self.config.registration_ttl, next(self._seq), instance)
        )
        self._schedule_first_probe(instance, now)
        self.stats.registrations += 1
        self._raise(service, instance)
        if announce:
            self._effects.append(
                InstanceRegistered(name, request.instance_id, instance.probe_url, updated=False)
            )

    def _update(self, instance: Instance, request: RegisterRequest, now: float) -> None:
        service = self._services[instance.service_name]
        address_changed = (
            instance.host != request.host
            or instance.port != request.port
            or instance.health_endpoint != request.health_endpoint
        )
        visible_change = address_changed or instance.metadata != request.metadata
        instance.host = request.host
        instance.port = request.port
        instance.health_endpoint = request.health_endpoint
        instance.metadata = dict(request.metadata)
        instance.last_heartbeat = now
        if request.load_percentage is not None:
            instance.load = _unit(request.load_percentage)
        if address_changed:
            instance.generation = next(self._generations)
            instance.successes = 0
            instance.failures = 0
            instance.probe_in_flight = False
            self._set_status(instance, Signal.ADDRESS_CHANGED, "address changed", now)
            self._schedule_first_probe(instance, now)
        self.stats.re_registrations += 1
        instance._tail = None
        self._touch(service, instance, targets=True)
        if visible_change or self._load_moved(instance):
            self._raise(service, instance)
        self._effects.append(
            InstanceRegistered(
                instance.service_name, instance.instance_id, instance.probe_url, updated=True
            )
        )

    def heartbeat(
        self, service_name: str, instance_id: str, load: float | None, now: float
    ) -> None:
        """Renew an instance's lease; unknown instances are the client's cue to register."""
        self._advance(now)
        service = self._services.get(service_name)
        instance = service.instances.get(instance_id) if service is not None else None
        if instance is None or service is None:
            raise not_registered(service_name, instance_id)
        instance.last_heartbeat = now
        self.stats.heartbeats += 1
        old_load = instance.load
        if load is not None:
            instance.load = _unit(load)
        self._touch(service, instance, targets=instance.load != old_load)
        if load is not None and self._load_moved(instance):
            self._raise(service, instance)

    def unregister(self, service_name: str, instance_id: str, now: float) -> None:
        self._advance(now)
        service = self._services.get(service_name)
        instance = service.instances.get(instance_id) if service is not None else None
        if instance is None:
            raise not_registered(service_name, instance_id)
        self.stats.unregistrations += 1
        self._remove(instance, "unregistered")

    def _remove(self, instance: Instance, reason: str) -> None:
        service = self._services[instance.service_name]
        del service.instances[instance.instance_id]
        service.ordered = None
        instance.removed = True
        self._count -= 1
        self._status_counts[instance.status] -= 1
        self._raise(service, instance)
        if not service.instances:
            del self._services[service.name]
            self._tombstones[service.name] = service.index
        self._effects.append(InstanceRemoved(instance.service_name, instance.instance_id, reason))

    # ----------------------------------------------------- probe results

    def probe_is_current(self, probe: RunProbe) -> bool:
        """Whether a probe handed out earlier is still wanted.

        A driver that queues probes behind its concurrency limit asks this
        before sending one: an instance unregistered or moved meanwhile must
        not be sent a request (its result would be dropped as stale anyway).
        A probe not sent needs no result: removal and an address change both
        clear the instance's probe in flight.
        """
        service = self._services.get(probe.service_name)
        instance = service.instances.get(probe.instance_id) if service is not None else None
        if instance is None or instance.generation != probe.generation:
            self.stats.probes_stale += 1
            return False
        return True

    def record_probe(self, result: ProbeResult, now: float) -> bool:
        """Apply a probe's outcome; False when it was stale (instance gone or moved)."""
        self._advance(now)
        service = self._services.get(result.service_name)
        instance = service.instances.get(result.instance_id) if service is not None else None
        if instance is None or service is None or instance.generation != result.generation:
            self.stats.probes_stale += 1
            return False
        instance.probe_in_flight = False
        instance.last_health_check = now
        before = (instance.status, instance.load)
        if isinstance(result, ProbePassed):
            self.stats.probes_passed += 1
            instance.successes += 1
            instance.failures = 0
            if result.load is not None:
                instance.load = _unit(result.load)
            self._set_status(instance, Signal.PROBE_PASSED, "probe passed", now)
        else:
            self.stats.probes_failed += 1
            instance.failures += 1
            instance.successes = 0
            self._set_status(instance, Signal.PROBE_FAILED, result.reason, now)
        self._touch(service, instance, targets=(instance.status, instance.load) != before)
        if instance.status != before[0] or self._load_moved(instance):
            self._raise(service, instance)
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
        after = self.config.deregister_unhealthy_after
        if new == Status.UNHEALTHY and after > 0:
            heapq.heappush(self._unhealthy, (now + after, next(self._seq), instance))
        self._effects.append(
            StatusChanged(instance.service_name, instance.instance_id, old.value, new.value, reason)
        )

    # ------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        """When the driver must call `on_timer` next (it may call earlier)."""
        candidates = []
        if self._probes:
            candidates.append(self._probes[0][0])
        if self._sp_active:
            candidates.append(self._sp_next_check)
        elif self._expiry:
            candidates.append(self._expiry[0][0])
        if self._unhealthy:
            candidates.append(self._unhealthy[0][0])
        return min(candidates) if candidates else None

    def on_timer(self, now: float) -> None:
        """Do everything due by `now`: hand out probes, expire, deregister."""
        self._advance(now)
        self._start_due_probes(now)
        self._expire_due(now)
        self._deregister_unhealthy(now)

    def _probe_offset(self, instance: Instance) -> float:
        """Where in the interval this instance's probes fall, by a hash of its key.

        A deterministic offset (not a random one) keeps fake-clock tests exact
        while still spreading a burst of registrations evenly.
        """
        key = f"{instance.service_name}/{instance.instance_id}".encode()
        return zlib.crc32(key) / _HashSpread * self.config.health_check_interval

    def _schedule_first_probe(self, instance: Instance, now: float) -> None:
        instance.probe_due = now + self._probe_offset(instance)
        heapq.heappush(self._probes, (instance.probe_due, next(self._seq), instance))

    def _start_due_probes(self, now: float) -> None:
        heap = self._probes
        interval = self.config.health_check_interval
        while heap and heap[0][0] <= now:
            due, _, instance = heapq.heappop(heap)
            if instance.removed or due != instance.probe_due:
                continue  # a stale entry: removed or rescheduled since
            following = due + interval
            if instance.probe_rephase:  # probed at once after a restore: now spread out
                instance.probe_rephase = False
                following = now + (self._probe_offset(instance) or interval)
            elif following <= now:  # the driver woke late: keep the phase, skip missed rounds
                following += interval * ((now - following) // interval + 1)
            instance.probe_due = following
            heapq.heappush(heap, (following, next(self._seq), instance))
            if instance.probe_in_flight:
                self.stats.probes_skipped += 1
                continue
            instance.probe_in_flight = True
            self._effects.append(
                RunProbe(
                    instance.service_name,
                    instance.instance_id,
                    instance.probe_url,
                    instance.generation,
                )
            )

    def _expire_due(self, now: float) -> None:
        config = self.config
        if self._sp_active:
            if now < self._sp_next_check:
                return
            share = self._silent_share(now)
            if share is None or share <= config.self_preservation_threshold:
                self._leave_self_preservation("heartbeats came back")
            elif now >= self._sp_since + config.self_preservation_max_seconds:
                self._sp_blocked_until = now + config.registration_ttl
                self._leave_self_preservation(
                    f"maximum of {config.self_preservation_max_seconds:g}s reached"
                )
            else:
                self._sp_next_check = now + SELF_PRESERVATION_RECHECK
                return
        heap = self._expiry
        ttl = config.registration_ttl
        due: list[Instance] = []
        while heap and heap[0][0] <= now:
            _, _, instance = heap[0]
            if instance.removed:
                heapq.heappop(heap)
                continue
            deadline = instance.last_heartbeat + ttl
            if deadline > now:  # heartbeats moved it on since it was pushed
                heapq.heapreplace(heap, (deadline, next(self._seq), instance))
                continue
            heapq.heappop(heap)
            due.append(instance)
        if not due:
            return
        if config.self_preservation_threshold > 0 and now >= self._sp_blocked_until:
            share = self._silent_share(now)
            if share is not None and share > config.self_preservation_threshold:
                for instance in due:
                    heapq.heappush(heap, (instance.last_heartbeat + ttl, next(self._seq), instance))
                self._enter_self_preservation(now, share)
                return
        for instance in due:
            self.stats.expirations += 1
            self._remove(instance, "ttl_expired")

    def _silent_share(self, now: float) -> float | None:
        """Share of instances with no heartbeat for half a TTL; None below the minimum."""
        if self._count < self.config.self_preservation_min_instances or self._count == 0:
            return None
        cutoff = now - self.config.registration_ttl / 2
        silent = 0
        for service in self._services.values():
            for instance in service.instances.values():
                if instance.last_heartbeat <= cutoff:
                    silent += 1
        return silent / self._count

    def _enter_self_preservation(self, now: float, share: float) -> None:
        self._sp_active = True
        self._sp_since = now
        self._sp_next_check = now + SELF_PRESERVATION_RECHECK
        self._sp_reason = (
            f"{share:.0%} of {self._count} instances stopped heartbeating at once "
            f"(threshold {self.config.self_preservation_threshold:.0%}); expiry paused"
        )
        self.stats.self_preservation_entries += 1
        self._effects.append(SelfPreservationChanged(True, self._sp_reason))

    def _leave_self_preservation(self, why: str) -> None:
        self._sp_active = False
        self._sp_reason = None
        self._effects.append(SelfPreservationChanged(False, why))

    def _deregister_unhealthy(self, now: float) -> None:
        heap = self._unhealthy
        after = self.config.deregister_unhealthy_after
        while heap and heap[0][0] <= now:
            deadline, _, instance = heapq.heappop(heap)
            since = instance.unhealthy_since
            if instance.removed or since is None or since + after != deadline:
                continue  # recovered, re-registered or already gone
            self.stats.unhealthy_removals += 1
            self._remove(instance, "unhealthy_too_long")

    # ---------------------------------------------------------- snapshots

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to rebuild the fleet after a restart, JSON-ready.

        Health and heartbeat times are left out on purpose: a restored
        instance starts `unknown` with a full TTL, because the registry cannot
        know what happened while it was down.
        """
        offset = self.wall_offset
        instances = [
            {
                "service_name": i.service_name,
                "instance_id": i.instance_id,
                "host": i.host,
                "port": i.port,
                "health_endpoint": i.health_endpoint,
                "metadata": dict(i.metadata),
                "load_percentage": i.load,
                "registered_at": i.registered_at + offset,
            }
            for name in sorted(self._services)
            for i in self._services[name].sorted_instances()
        ]
        return {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "global_index": self._global_index,
            "instances": instances,
        }

    def restore(self, document: object, now: float) -> tuple[int, int]:
        """Load a `snapshot()`; returns (restored, skipped). Refuses other formats.

        Entries are validated like registrations; a bad entry is skipped, not
        fatal, so one corrupt record cannot cost the whole fleet.
        """
        self._advance(now)
        if (
            not isinstance(document, dict)
            or document.get("format") != SNAPSHOT_FORMAT
            or document.get("version") != SNAPSHOT_VERSION
            or not isinstance(document.get("instances"), list)
        ):
            raise ValueError(f"not a version {SNAPSHOT_VERSION} registry snapshot")
        restored = skipped = 0
        for entry in document["instances"]:
            try:
                request = RegisterRequest.model_validate(entry)
                registered_at = entry["registered_at"]
                if (
                    isinstance(registered_at, bool)
                    or not isinstance(registered_at, int | float)
                    or not 0 <= registered_at <= _LATEST_TIMESTAMP
                ):
                    raise ValueError("registered_at")
            except (ValueError, TypeError, KeyError):
                skipped += 1
                continue
            service = self._services.get(request.service_name)
            if (service is not None and request.instance_id in service.instances) or (
                self._count >= self.config.max_instances
            ):
                skipped += 1
                continue
            self._add(request, now, announce=False)
            instance = self._services[request.service_name].instances[request.instance_id]
            instance.registered_at = float(registered_at) - self.wall_offset
            instance.probe_due = now
            instance.probe_rephase = True
            heapq.heappush(self._probes, (now, next(self._seq), instance))
            restored += 1
        saved_index = document.get("global_index")
        if isinstance(saved_index, int) and saved_index >= self._global_index:
            # Carry the index on, so watchers do not see it go backwards.
            self._global_index = saved_index + 1
            for service in self._services.values():
                service.index = self._global_index
        return restored, skipped

    # ----------------------------------------------------------- indexes

    def _load_moved(self, instance: Instance) -> bool:
        moved = abs(instance.load - instance.load_at_rise)
        return moved > 0 and moved >= self.config.watch_load_delta - 1e-12

    def _raise(self, service: _Service, instance: Instance) -> None:
        self._global_index += 1
        service.index = self._global_index
        instance.load_at_rise = instance.load
        self._raised.add(service.name)
        service.cache.clear()
        self._global_cache.clear()

    def _touch(self, service: _Service, instance: Instance, *, targets: bool) -> None:
        """Forget what shows a changed instance; `targets`: its Prometheus labels changed.

        Target groups show no timestamps, so a heartbeat or a probe that
        changes neither status nor load leaves `/prometheus` cached.
        """
        instance._json = None
        cache = service.cache
        if targets:
            instance._sd_json = None
            cache.clear()
            self._global_cache.clear()
            return
        if cache:
            cache.pop("instances", None)
            cache.pop("healthy", None)
        self._global_cache.pop("services", None)

    def service_index(self, name: str) -> int:
        service = self._services.get(name)
        if service is not None:
            return service.index
        return self._tombstones.get(name, 1)

    @property
    def global_index(self) -> int:
        return self._global_index

    def drain_effects(self) -> list[Effect]:
        """Hand the driver everything decided since the last drain, in order."""
        effects = self._effects
        if self._raised:
            effects.append(IndexRaised(frozenset(self._raised)))
            self._raised = set()
        self._effects = []
        return effects

    # -------------------------------------------------------------- reads

    def service_instances_body(self, name: str) -> bytes | None:
        """`{"service_name", "instances"}` or None when the service is unknown."""
        service = self._services.get(name)
        if service is None:
            return None
        body = service.cache.get("instances")
        if body is None:
            body = (
                b'{"service_name":'
                + encode(name)
                + b',"instances":'
                + join_instances(service.sorted_instances(), self.wall_offset)
                + b"}"
            )
            service.cache["instances"] = body
        return body

    def healthy_instances_body(self, name: str) -> bytes:
        service = self._services.get(name)
        if service is None:
            return b'{"service_name":' + encode(name) + b',"healthy_instances":[]}'
        body = service.cache.get("healthy")
        if body is None:
            healthy = [i for i in service.sorted_instances() if i.status == Status.HEALTHY]
            body = (
                b'{"service_name":'
                + encode(name)
                + b',"healthy_instances":'
                + join_instances(healthy, self.wall_offset)
                + b"}"
            )
            service.cache["healthy"] = body
        return body

    def service_targets_body(self, name: str) -> bytes:
        service = self._services.get(name)
        if service is None:
            return b"[]"
        body = service.cache.get("targets")
        if body is None:
            body = join_target_groups(service.sorted_instances())
            service.cache["targets"] = body
        return body

    def all_services_body(self) -> bytes:
        body = self._global_cache.get("services")
        if body is None:
            # One join over every fragment: no per-service copies of tens of
            # MiB in between (they would stay in the allocator once freed).
            body = b"".join(self._all_services_pieces())
            self._global_cache["services"] = body
        return body

    def _all_services_pieces(self) -> Iterator[bytes]:
        offset = self.wall_offset
        yield b'{"services":{'
        for number, name in enumerate(sorted(self._services)):
            yield (b',"' if number else b'"') + encode(name)[1:] + b":["
            for position, instance in enumerate(self._services[name].sorted_instances()):
                if position:
                    yield b","
                yield instance_json(instance, offset)
            yield b"]"
        yield b"}}"

    def all_targets_body(self) -> bytes:
        body = self._global_cache.get("targets")
        if body is None:
            groups = (
                target_group_json(instance)
                for name in sorted(self._services)
                for instance in self._services[name].sorted_instances()
            )
            body = b"[" + b",".join(groups) + b"]"
            self._global_cache["targets"] = body
        return body

    def rendered(self, scope: str | None) -> dict[str, bytes] | None:
        """The cache of rendered bodies for a service (None: the global one).

        It is emptied whenever anything those bodies show changes, so a body
        still found in it is current. Read-only for callers.
        """
        if scope is None:
            return self._global_cache
        service = self._services.get(scope)
        return service.cache if service is not None else None

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
        return self._sp_active, self._sp_reason

    def instance_snapshot(self, service_name: str, instance_id: str) -> Instance | None:
        """The live record, for tests and tooling that must not mutate it."""
        service = self._services.get(service_name)
        return service.instances.get(instance_id) if service is not None else None
