"""Random event sequences against a small reference model of the registry's rules.

The machine drives the real `Registry` through the real `HttpApi` (bytes in), moves a
fake clock like a driver does (waking at every deadline the core names), answers probes
in any order, sends stale results and time jumps backwards, and after every step compares
the core with a model written from docs/api.md alone. Self-preservation is off
(threshold 0), so every instance without a heartbeat for a TTL must be gone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import hypothesis.strategies as st
from core_support import probe_result
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sd_core import (
    DriverError,
    HttpApi,
    HttpRequest,
    HttpResponse,
    InstanceRemoved,
    ProbePassed,
    RegisterRequest,
    Registry,
    RegistryConfig,
    RunProbe,
)
from sd_core.body import as_bytes

TTL = 10.0
INTERVAL = 3.0
UNHEALTHY_AFTER = 6.0
SUCCESS, FAILURE = 2, 2
DELTA = 0.1
WALL = 1_700_000_000.0
SECRET = "prop-secret"
AUTH = f"Bearer {SECRET}"

SERVICES = ["a", "b"]
INSTANCES = ["1", "2", "3"]
HOSTS = ["10.0.0.1", "::1"]
PORTS = [80, 81]
ENDPOINTS = ["/health", "/h?x=1"]
METADATA: list[dict[str, str]] = [{}, {"v": "1"}, {"v": "2", "app-zone": "eu"}]
LOADS: list[float | None] = [None, 0.0, 0.05, 0.1, 0.15, 0.5, 1.0]
STEPS = [0.0, 0.25, 0.5, 1.0, 2.5, 3.0, 4.75, 6.0, 9.75, 10.0, 12.5]


def _iso(monotonic: float) -> str:
    return datetime.fromtimestamp(monotonic + WALL, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _url(host: str, port: int, endpoint: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{endpoint}"


@dataclass
class Model:
    """One instance as the documented rules say it must be."""

    host: str
    port: int
    endpoint: str
    metadata: dict[str, str]
    load: float
    registered_at: float
    last_heartbeat: float
    # The core's generation for the current address: opaque, learned from the first
    # probe handed out for it (None until then).
    generation: int | None = None
    status: str = "unknown"
    successes: int = 0
    failures: int = 0
    unhealthy_since: float | None = None
    last_health_check: float | None = None
    load_at_rise: float = field(default=0.0)

    def load_moved(self) -> bool:
        moved = abs(self.load - self.load_at_rise)
        return moved > 0 and moved >= DELTA - 1e-9


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = RegistryConfig(
            registration_ttl=TTL,
            health_check_interval=INTERVAL,
            health_check_timeout=1.0,
            success_threshold=SUCCESS,
            failure_threshold=FAILURE,
            deregister_unhealthy_after=UNHEALTHY_AFTER,
            watch_load_delta=DELTA,
            self_preservation_threshold=0.0,
            # The model counts every probe; retries are tested on their own
            # (tests/core/test_core_first_probes.py).
            first_probe_retry=0.0,
        )
        self.now = 0.0
        self.registry = Registry(config, now=self.now, wall_offset=WALL)
        self.api = HttpApi(self.registry, secret=SECRET, frontend="prop", version="0")
        self.model: dict[tuple[str, str], Model] = {}
        self.pending: list[RunProbe] = []
        self.changed: set[str] = set()
        self.removed_by_core: set[tuple[str, str]] = set()
        self.removed_by_model: set[tuple[str, str]] = set()
        self.retired: set[int] = set()  # generations of old addresses and incarnations
        self.indexes = {name: 1 for name in SERVICES}
        self.global_index = 1

    # ------------------------------------------------------------ helpers

    def _drain(self) -> None:
        for effect in self.registry.drain_effects():
            if isinstance(effect, RunProbe):
                key = (effect.service_name, effect.instance_id)
                assert key in self.model, f"probe for unknown {key}"
                expected = self.model[key]
                if expected.generation is None:
                    assert effect.generation not in self.retired, "a generation reused"
                    expected.generation = effect.generation
                assert effect.generation == expected.generation
                assert effect.url == _url(expected.host, expected.port, expected.endpoint)
                assert all(
                    (p.service_name, p.instance_id, p.generation)
                    != (effect.service_name, effect.instance_id, effect.generation)
                    for p in self.pending
                ), "a probe handed out while the last one is still in flight"
                self.pending.append(effect)
            elif isinstance(effect, InstanceRemoved):
                self.removed_by_core.add((effect.service_name, effect.instance_id))

    def _remove(self, key: tuple[str, str]) -> None:
        item = self.model.pop(key)
        if item.generation is not None:
            self.retired.add(item.generation)
        self.changed.add(key[0])
        self.removed_by_model.add(key)
        # Probes of the removed incarnation stay pending: answered later, after the
        # same key registered again, they must be ignored as stale.

    def _expire_model(self, now: float) -> None:
        for key, item in list(self.model.items()):
            expired = item.last_heartbeat + TTL <= now
            since = item.unhealthy_since
            unhealthy_too_long = since is not None and since + UNHEALTHY_AFTER <= now
            if expired or (item.status == "unhealthy" and unhealthy_too_long):
                self._remove(key)

    def _advance(self, dt: float) -> None:
        """Move the clock like a driver: wake at every deadline up to the target."""
        target = self.now + dt
        while (deadline := self.registry.next_deadline()) is not None and deadline <= target:
            self.now = max(self.now, deadline)
            self.registry.on_timer(self.now)
            self._drain()
        self.now = target
        self.registry.on_timer(target)
        self._drain()
        self._expire_model(target)

    def _post(self, path: str, body: dict[str, Any]) -> HttpResponse:
        result = self.api.handle(
            HttpRequest("POST", path, b"", AUTH, "application/json", json.dumps(body).encode()),
            self.now,
        )
        assert isinstance(result, HttpResponse)
        self._drain()
        return result

    def _set_status(self, item: Model, status: str) -> None:
        if status != item.status:
            item.status = status
            item.unhealthy_since = self.now if status == "unhealthy" else None

    # -------------------------------------------------------------- rules

    @rule(
        dt=st.sampled_from(STEPS),
        service=st.sampled_from(SERVICES),
        instance=st.sampled_from(INSTANCES),
        host=st.sampled_from(HOSTS),
        port=st.sampled_from(PORTS),
        endpoint=st.sampled_from(ENDPOINTS),
        metadata=st.sampled_from(METADATA),
        load=st.sampled_from(LOADS),
    )
    def register(
        self,
        dt: float,
        service: str,
        instance: str,
        host: str,
        port: int,
        endpoint: str,
        metadata: dict[str, str],
        load: float | None,
    ) -> None:
        self._advance(dt)
        body: dict[str, Any] = {
            "service_name": service,
            "instance_id": instance,
            "host": host,
            "port": port,
            "health_endpoint": endpoint,
            "metadata": metadata,
        }
        if load is not None:
            body["load_percentage"] = load
        response = self._post("/v1/discovery/register", body)
        assert response.status == 200, response.body
        key = (service, instance)
        item = self.model.get(key)
        if item is None:
            start_load = 0.0 if load is None else load
            self.model[key] = Model(
                host,
                port,
                endpoint,
                dict(metadata),
                start_load,
                self.now,
                self.now,
                load_at_rise=start_load,
            )
            self.changed.add(service)
            return
        moved = (item.host, item.port, item.endpoint) != (host, port, endpoint)
        visible = moved or item.metadata != metadata
        item.host, item.port, item.endpoint = host, port, endpoint
        item.metadata = dict(metadata)
        item.last_heartbeat = self.now
        if load is not None:
            item.load = load
        # Every re-registration is a new incarnation: fresh streaks, old probes stale;
        # a move resets the status, and an unhealthy one goes back to unknown anyway.
        if item.generation is not None:
            self.retired.add(item.generation)
        item.generation = None
        item.successes = item.failures = 0
        if moved or item.status == "unhealthy":
            visible = visible or item.status != "unknown"
            self._set_status(item, "unknown")
        if visible or item.load_moved():
            item.load_at_rise = item.load
            self.changed.add(service)

    @rule(
        dt=st.sampled_from(STEPS),
        service=st.sampled_from(SERVICES),
        instance=st.sampled_from(INSTANCES),
        load=st.sampled_from(LOADS),
    )
    def heartbeat(self, dt: float, service: str, instance: str, load: float | None) -> None:
        self._advance(dt)
        body: dict[str, Any] = {"service_name": service, "instance_id": instance}
        if load is not None:
            body["load_percentage"] = load
        response = self._post("/v1/discovery/heartbeat", body)
        item = self.model.get((service, instance))
        if item is None:
            assert response.status == 404
            assert json.loads(response.body)["error"] == "instance_not_found"
            return
        assert response.status == 200
        item.last_heartbeat = self.now
        if load is not None:
            item.load = load
            if item.load_moved():
                item.load_at_rise = load
                self.changed.add(service)

    @rule(service=st.sampled_from(SERVICES), instance=st.sampled_from(INSTANCES))
    def unregister(self, service: str, instance: str) -> None:
        result = self.api.handle(
            HttpRequest(
                "DELETE", f"/v1/discovery/unregister/{service}/{instance}", b"", AUTH, None, b""
            ),
            self.now,
        )
        assert isinstance(result, HttpResponse)
        self._drain()
        key = (service, instance)
        if key in self.model:
            assert result.status == 200
            self._remove(key)
        else:
            assert result.status == 404

    @rule(dt=st.sampled_from(STEPS))
    def advance(self, dt: float) -> None:
        self._advance(dt)

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data(), passed=st.booleans(), load=st.sampled_from(LOADS))
    def answer_probe(self, data: st.DataObject, passed: bool, load: float | None) -> None:
        probe = self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1)))
        applied = self.registry.record_probe(probe_result(probe, passed, load), self.now)
        self._drain()
        key = (probe.service_name, probe.instance_id)
        item = self.model.get(key)
        if item is None or item.generation != probe.generation:
            assert applied is False
            return
        assert applied is True
        item.last_health_check = self.now
        before = item.status
        if passed:
            item.successes += 1
            item.failures = 0
            if load is not None:
                item.load = load
            if item.status != "healthy" and item.successes >= SUCCESS:
                self._set_status(item, "healthy")
        else:
            item.failures += 1
            item.successes = 0
            if item.status != "unhealthy" and item.failures >= FAILURE:
                self._set_status(item, "unhealthy")
        if item.status != before or item.load_moved():
            item.load_at_rise = item.load
            self.changed.add(probe.service_name)

    @rule(
        service=st.sampled_from(SERVICES),
        instance=st.sampled_from(INSTANCES),
        passed=st.booleans(),
        future=st.integers(1, 3),
    )
    def stale_result(self, service: str, instance: str, passed: bool, future: int) -> None:
        """A result for a generation that was never handed out is ignored."""
        generation = 10**9 + future
        result = probe_result(RunProbe(service, instance, "http://never/", generation), passed, 0.9)
        before = self.registry.views.all_services()
        assert self.registry.record_probe(result, self.now) is False
        self._drain()
        assert self.registry.views.all_services() == before

    @rule(
        back=st.sampled_from([1e-9, 0.25, 5.0]),
        operation=st.sampled_from(["register", "heartbeat", "unregister", "timer", "probe"]),
    )
    def time_goes_backwards(self, back: float, operation: str) -> None:
        if self.now - back >= self.now:
            return  # too small to go backwards from here
        earlier = self.now - back
        before = (
            self.registry.views.all_services(),
            self.registry.global_index,
            self.registry.next_deadline(),
        )
        registry = self.registry
        try:
            if operation == "register":
                request = RegisterRequest(service_name="a", instance_id="1", host="h", port=1)
                registry.register(request, earlier)
            elif operation == "heartbeat":
                registry.heartbeat("a", "1", None, earlier)
            elif operation == "unregister":
                registry.unregister("a", "1", earlier)
            elif operation == "timer":
                registry.on_timer(earlier)
            else:
                registry.record_probe(ProbePassed("a", "1", 0), earlier)
        except DriverError:
            pass
        else:
            raise AssertionError(f"{operation} at {earlier} < {self.now} was accepted")
        assert registry.drain_effects() == []
        assert before == (
            registry.views.all_services(),
            registry.global_index,
            registry.next_deadline(),
        )

    # --------------------------------------------------------- invariants

    @invariant()
    def bodies_match_the_model(self) -> None:
        registry = self.registry
        assert registry.now == self.now
        services = json.loads(as_bytes(registry.views.all_services()))["services"]
        shown = {
            (name, item["instance_id"]): item for name, items in services.items() for item in items
        }
        assert set(shown) == set(self.model)
        assert list(services) == sorted(services)
        for items in services.values():
            ids = [i["instance_id"] for i in items]
            assert ids == sorted(ids)
        for key, expected in self.model.items():
            item = shown[key]
            assert expected.last_heartbeat + TTL > self.now  # nothing silent outlives its TTL
            assert item["host"] == expected.host
            assert item["port"] == expected.port
            assert item["health_endpoint"] == expected.endpoint
            assert item["metadata"] == expected.metadata
            assert item["status"] == expected.status, key
            assert item["load_percentage"] == expected.load
            assert item["last_heartbeat"] == _iso(expected.last_heartbeat)
            assert item["registered_at"] == _iso(expected.registered_at)
            checked = expected.last_health_check
            assert item["last_health_check"] == (None if checked is None else _iso(checked))
        for name in SERVICES:
            mine = sorted((k[1], v) for k, v in self.model.items() if k[0] == name)
            body = registry.views.service_instances(name)
            if not mine:
                assert body is None
            else:
                assert body is not None
                assert json.loads(body)["instances"] == services[name]
            healthy_body = as_bytes(registry.views.healthy_instances(name))
            healthy = json.loads(healthy_body)["healthy_instances"]
            assert [i["instance_id"] for i in healthy] == [
                iid for iid, v in mine if v.status == "healthy"
            ]
            targets = json.loads(registry.views.service_targets(name))
            assert [g["labels"]["instance"] for g in targets] == [iid for iid, _ in mine]
            for group in targets:
                assert all(isinstance(v, str) for v in group["labels"].values())
        assert len(json.loads(as_bytes(registry.views.all_targets()))) == len(self.model)

    @invariant()
    def counts_match_the_model(self) -> None:
        registry = self.registry
        assert registry.instance_count == len(self.model)
        assert registry.service_count == len({k[0] for k in self.model})
        counts = registry.status_counts()
        assert sum(counts.values()) == len(self.model)
        for status in ("unknown", "healthy", "unhealthy"):
            assert counts[status] == sum(1 for m in self.model.values() if m.status == status)

    @invariant()
    def indexes_follow_visible_changes(self) -> None:
        registry = self.registry
        current = {name: registry.service_index(name) for name in SERVICES}
        global_index = registry.global_index
        assert global_index >= max(current.values())
        assert global_index >= self.global_index
        for name in SERVICES:
            if name in self.changed:
                assert current[name] > self.indexes[name], name
            else:
                assert current[name] == self.indexes[name], name
        if self.changed:
            assert global_index == max(current[name] for name in self.changed)
        else:
            assert global_index == self.global_index
        self.indexes, self.global_index = current, global_index
        self.changed = set()
        assert self.removed_by_core == self.removed_by_model
        self.removed_by_core, self.removed_by_model = set(), set()

    @invariant()
    def pending_probes_are_current_or_retired(self) -> None:
        for probe in self.pending:
            item = self.model.get((probe.service_name, probe.instance_id))
            current = item is not None and probe.generation == item.generation
            assert current or probe.generation in self.retired
        assert not math.isnan(self.now)


RegistryMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_registry_matches_its_model = RegistryMachine.TestCase
