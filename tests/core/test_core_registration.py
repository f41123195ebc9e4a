"""Registration, re-registration, heartbeats and unregistration, as event sequences."""

from __future__ import annotations

from typing import Any

import pytest
from core_support import AUTH, START, Core, iso, with_config

from conformance.client import INSTANCE_KEYS
from sd_core import (
    DriverError,
    HttpRequest,
    IndexRaised,
    InstanceRegistered,
    InstanceRemoved,
    ProbePassed,
    RegisterRequest,
    RemovalReason,
    Status,
    StatusChanged,
)


def test_registration_renders_the_full_instance() -> None:
    core = Core()
    core.now = START + 0.123456
    core.register(host="localhost", metadata={"version": "1.0.0"})
    instance = core.instance()
    assert list(instance) == INSTANCE_KEYS
    assert instance == {
        "service_name": "game-service",
        "instance_id": "game-1",
        "host": "localhost",
        "port": 8080,
        "health_endpoint": "/health",
        "status": "unknown",
        "last_health_check": None,
        "last_heartbeat": iso(core.now),
        "load_percentage": 0.0,
        "metadata": {"version": "1.0.0"},
        "registered_at": iso(core.now),
        "check": {"type": "http"},
        "maintenance": None,
    }
    assert instance["registered_at"] == "2024-01-15T10:46:40.123456Z"


def test_registration_effects() -> None:
    core = Core()
    core.register(host="::1", port=9000, health_endpoint="/hc?x=1")
    assert core.effects == [
        InstanceRegistered("game-service", "game-1", "http://[::1]:9000/hc?x=1", updated=False),
        IndexRaised(frozenset({"game-service"})),
    ]
    assert core.registry.instance_count == 1
    assert core.registry.service_count == 1
    assert core.registry.stats.registrations == 1


def test_reregistration_updates_in_place_and_keeps_registered_at() -> None:
    core = Core()
    core.register(metadata={"version": "1"}, load_percentage=0.5)
    registered_at = core.instance()["registered_at"]
    core.now += 42.5
    core.effects.clear()
    core.register(metadata={"version": "2"})
    instance = core.instance()
    assert instance["registered_at"] == registered_at
    assert instance["last_heartbeat"] == iso(core.now)  # counts as a heartbeat
    assert instance["metadata"] == {"version": "2"}
    assert instance["load_percentage"] == 0.5  # omitted load keeps the current one
    assert core.registry.instance_count == 1
    assert core.effects[0] == InstanceRegistered(
        "game-service", "game-1", "http://10.0.0.1:8080/health", updated=True
    )
    assert core.registry.stats.re_registrations == 1


def test_reregistration_without_metadata_means_empty_metadata() -> None:
    core = Core()
    core.register(metadata={"version": "1"})
    core.register()
    assert core.instance()["metadata"] == {}


def test_reregistration_with_load_sets_it() -> None:
    core = Core()
    core.register(load_percentage=0.5)
    core.register(load_percentage=0.25)
    assert core.instance()["load_percentage"] == 0.25


def test_reregistration_is_never_409() -> None:
    core = Core()
    for _ in range(3):
        assert core.register().status == 200


def _healthy_core(**config: Any) -> Core:
    core = Core(with_config(**config))
    core.register()
    assert core.probe(passed=True)
    assert core.status() == "healthy"
    core.effects.clear()
    return core


ADDRESS_CHANGES = [
    ("host", {"host": "10.0.0.2"}, "http://10.0.0.2:8080/health"),
    ("port", {"port": 8081}, "http://10.0.0.1:8081/health"),
    ("health_endpoint", {"health_endpoint": "/ready"}, "http://10.0.0.1:8080/ready"),
    ("ipv6 host", {"host": "fd00::1"}, "http://[fd00::1]:8080/health"),
]


@pytest.mark.parametrize(
    ("change", "url"), [(c[1], c[2]) for c in ADDRESS_CHANGES], ids=[c[0] for c in ADDRESS_CHANGES]
)
def test_address_change_resets_status_and_reschedules_probe(
    change: dict[str, Any], url: str
) -> None:
    core = _healthy_core()
    first_probe_at = core.probes_issued[0][0]
    offset = first_probe_at - START
    old = core.take_probe()  # the second round, in flight while the address changes
    core.now += 1.0
    changed_at = core.now
    core.effects.clear()
    core.register(**change)
    assert core.status() == "unknown"
    assert StatusChanged(
        "game-service", "game-1", Status.HEALTHY, Status.UNKNOWN, "address changed"
    ) in (core.effects)
    changed = next(e for e in core.effects if isinstance(e, StatusChanged))
    assert (type(changed.old), type(changed.new)) == (Status, Status)
    assert IndexRaised(frozenset({"game-service"})) in core.effects
    # the old probe's answer is stale: ignored, whatever it says
    stale_before = core.registry.stats.probes_stale
    assert core.answer(old, passed=True) is False
    assert core.registry.stats.probes_stale == stale_before + 1
    assert core.status() == "unknown"
    assert core.instance()["last_health_check"] is not None  # kept from the first probe
    # the new address is probed at the same hashed offset inside the next interval
    new = core.take_probe()
    assert (new.service_name, new.instance_id, new.url) == ("game-service", "game-1", url)
    assert new.generation != old.generation
    assert core.probes_issued[-1][0] == pytest.approx(changed_at + offset, abs=1e-9)
    assert core.answer(new, passed=True) is True
    assert core.status() == "healthy"


def test_address_change_resets_probe_counters() -> None:
    core = _healthy_core(failure_threshold=2)
    assert core.probe(passed=False)  # one failure of two
    assert core.status() == "healthy"
    core.register(port=9000)
    assert core.probe(passed=False)  # counters were reset: still one failure of two
    assert core.status() == "unknown"
    assert core.probe(passed=False)
    assert core.status() == "unhealthy"


def test_reregistration_with_same_address_keeps_healthy_and_probes_the_new_run() -> None:
    core = _healthy_core()
    old = core.take_probe()  # in flight when the instance registers again
    core.effects.clear()
    core.register(metadata={"a": "b"})
    assert core.status() == "healthy"  # a running instance registering again stays visible
    assert not any(isinstance(e, StatusChanged) for e in core.effects)
    assert core.registry.next_deadline() == core.now  # the new run is probed at once
    assert core.answer(old, passed=False) is False  # the previous run's probe is stale
    fresh = core.take_probe()
    assert fresh.generation != old.generation


def test_heartbeat_renews_and_sets_load() -> None:
    core = Core()
    core.register()
    core.now += 30
    assert core.heartbeat().status == 200
    assert core.instance()["last_heartbeat"] == iso(core.now)
    assert core.instance()["load_percentage"] == 0.0
    core.now += 30
    assert core.heartbeat(load=0.42).status == 200
    assert core.instance()["load_percentage"] == 0.42
    core.now += 30
    core.heartbeat()  # no load: keeps the last one
    assert core.instance()["load_percentage"] == 0.42
    assert core.registry.stats.heartbeats == 3


def test_heartbeat_load_of_an_integer_is_a_float() -> None:
    core = Core()
    core.register()
    core.heartbeat(load=1)
    assert core.instance()["load_percentage"] == 1.0
    assert core.targets()[0]["labels"]["load_percentage"] == "1.0"


def test_unregister_removes_and_404s_after() -> None:
    core = Core()
    core.register("game-service", "game-1")
    core.register("game-service", "game-2")
    core.effects.clear()
    assert core.unregister("game-service", "game-1").status == 200
    assert core.effects == [
        InstanceRemoved("game-service", "game-1", RemovalReason.UNREGISTERED),
        IndexRaised(frozenset({"game-service"})),
    ]
    removed = core.effects[0]
    assert isinstance(removed, InstanceRemoved) and type(removed.reason) is RemovalReason
    assert [i["instance_id"] for i in core.services()["game-service"]] == ["game-2"]
    assert core.unregister("game-service", "game-1").status == 404
    assert core.heartbeat("game-service", "game-1").status == 404
    assert core.unregister("game-service", "game-2").status == 200
    assert core.services() == {}
    assert core.get("/v1/discovery/services/game-service").status == 404
    assert core.registry.instance_count == 0
    assert core.registry.service_count == 0


def test_probe_result_for_an_unregistered_instance_is_stale() -> None:
    core = Core()
    core.register()
    probe = core.take_probe()
    core.unregister()
    assert core.answer(probe, passed=True) is False
    assert core.registry.stats.probes_stale == 1
    assert core.services() == {}


@pytest.mark.parametrize("how", ["unregister", "ttl"])
def test_probe_of_a_previous_incarnation_is_stale(how: str) -> None:
    core = Core(with_config(registration_ttl=100, health_check_interval=30, health_check_timeout=5))
    core.register(port=8080)
    old = core.take_probe()  # in flight for http://10.0.0.1:8080/health
    if how == "unregister":
        core.unregister()
    else:
        core.advance_to(START + 100)
        assert not core.present()
    core.register(port=9090)  # the client registers again, at a new address
    assert core.answer(old, passed=False) is False
    assert core.status() == "unknown"
    assert core.instance()["last_health_check"] is None


def test_new_instance_is_probed_at_once_then_on_its_phase() -> None:
    core = Core(with_config(health_check_interval=30, health_check_timeout=5))
    core.register()
    assert core.registry.next_deadline() == START
    probe = core.take_probe()
    assert core.now == START
    core.answer(probe, passed=True)
    phase = core.registry.next_deadline()
    assert phase is not None and START < phase <= START + 30


def test_a_registration_storm_gets_its_first_probes_spread_out() -> None:
    core = Core(with_config(health_check_interval=30, first_probes_per_second=10))
    for n in range(50):
        core.register(instance=f"game-{n}")
    core.advance(0)
    assert len(core.pending) == 1  # one probe at once, the others wait their slot
    core.advance(1.0)
    assert len(core.pending) <= 1 + 10 + 1  # about 10 a second, never the whole burst


def _on_phase(core: Core) -> None:
    """Let the first probe (at once) pass, so the instance runs on its phase."""
    core.answer(core.take_probe(), passed=True)


def test_probe_in_flight_is_not_handed_out_twice() -> None:
    core = Core(with_config(health_check_interval=10, health_check_timeout=5))
    core.register()
    _on_phase(core)
    probe = core.take_probe()
    core.advance(35)  # three more rounds fall due while the first is unanswered
    assert core.pending == []
    assert core.registry.stats.probes_skipped == 3
    assert core.answer(probe, passed=True)
    nxt = core.take_probe()
    assert nxt.generation == probe.generation
    assert core.probes_issued[-1][0] == pytest.approx(core.probes_issued[1][0] + 40)


def test_probes_follow_every_interval_and_keep_phase_when_the_driver_is_late() -> None:
    core = Core(with_config(health_check_interval=30, health_check_timeout=5))
    core.register()
    _on_phase(core)
    first = core.registry.next_deadline()
    assert first is not None and START < first <= START + 30
    times = []
    for _ in range(3):
        probe = core.take_probe()
        times.append(core.now)
        core.answer(probe, passed=True)
    assert times == pytest.approx([first, first + 30, first + 60])
    # the driver oversleeps by 2.5 intervals: one probe now, then back on the old phase
    late = first + 60 + 75
    core.now = late
    core.registry.on_timer(late)
    core.drain()
    assert len(core.pending) == 1
    assert core.registry.next_deadline() == pytest.approx(first + 150)


def test_direct_core_calls_share_the_http_rules() -> None:
    """`Registry.register` takes the same validated model the HTTP layer builds."""
    core = Core()
    request = RegisterRequest(service_name="a", instance_id="b", host="h", port=1)
    assert core.registry.register(request, core.now) is True
    assert core.registry.register(request, core.now) is False


@pytest.mark.parametrize(
    "operation",
    ["register", "heartbeat", "unregister", "record_probe", "on_timer", "http register"],
)
def test_time_going_backwards_is_a_driver_error_and_changes_nothing(operation: str) -> None:
    core = Core()
    core.register()
    probe = core.take_probe()
    core.drain()
    before = core.snapshot("game-service")
    earlier = core.now - 0.001
    registry = core.registry
    request = RegisterRequest(service_name="game-service", instance_id="game-2", host="h", port=1)
    with pytest.raises(DriverError, match="backwards"):
        if operation == "register":
            registry.register(request, earlier)
        elif operation == "heartbeat":
            registry.heartbeat("game-service", "game-1", 0.5, earlier)
        elif operation == "unregister":
            registry.unregister("game-service", "game-1", earlier)
        elif operation == "record_probe":
            registry.record_probe(ProbePassed("game-service", "game-1", probe.generation), earlier)
        elif operation == "on_timer":
            registry.on_timer(earlier)
        else:
            core.api.handle(
                HttpRequest(
                    "POST",
                    "/v1/discovery/register",
                    b"",
                    AUTH,
                    "application/json",
                    request.model_dump_json().encode(),
                ),
                earlier,
            )
    assert core.snapshot("game-service") == before
    assert registry.now == core.now
    # the same moment again is fine
    registry.heartbeat("game-service", "game-1", None, core.now)
