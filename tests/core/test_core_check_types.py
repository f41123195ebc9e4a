"""Check types: `http` (the default), `tcp` (a connect) and `ttl` (heartbeats report it)."""

from __future__ import annotations

import json

from core_support import HEARTBEAT, REGISTER, WALL_OFFSET, Core, register_body

from sd_core import CheckType, Registry, RegistryConfig, RunProbe, StatusChanged
from sd_core.body import as_bytes


def test_http_is_the_default_and_shown() -> None:
    core = Core()
    core.register()
    assert core.instance()["check"] == {"type": "http"}
    probe = core.take_probe()
    assert probe.kind is CheckType.HTTP and probe.url == "http://10.0.0.1:8080/health"


def test_tcp_checks_are_probes_of_the_address() -> None:
    core = Core()
    core.register(host="::1", port=5432, check={"type": "tcp"})
    assert core.instance()["check"] == {"type": "tcp"}
    probe = core.take_probe()
    assert probe == RunProbe(
        "game-service", "game-1", "tcp://[::1]:5432", probe.generation, CheckType.TCP
    )
    core.answer(probe, True)
    assert core.status() == "healthy"


def test_ttl_checks_are_never_probed_and_healthy_on_registration() -> None:
    core = Core()
    core.register(check={"type": "ttl"})
    assert core.status() == "healthy"
    assert core.instance()["last_health_check"] is not None
    core.advance(3 * core.config.health_check_interval)
    assert core.probes_issued == []


def test_a_ttl_heartbeat_reports_the_status() -> None:
    core = Core()
    core.register(check={"type": "ttl"})
    index = core.registry.service_index("game-service")
    body = {"service_name": "game-service", "instance_id": "game-1", "status": "unhealthy"}
    assert core.send("POST", HEARTBEAT, body).status == 200
    assert core.status() == "unhealthy"
    assert core.registry.service_index("game-service") > index
    assert any(
        isinstance(e, StatusChanged) and e.reason == "reported unhealthy" for e in core.effects
    )
    index = core.registry.service_index("game-service")
    core.heartbeat()  # no status: healthy while it heartbeats
    assert core.status() == "healthy"
    assert core.registry.service_index("game-service") > index
    index = core.registry.service_index("game-service")
    core.heartbeat()
    assert core.registry.service_index("game-service") == index  # nothing changed


def test_a_ttl_instance_expires_by_the_registration_ttl() -> None:
    core = Core()
    core.register(check={"type": "ttl"})
    core.advance(core.config.registration_ttl + 1)
    assert not core.present()


def test_status_on_a_probed_instance_is_refused() -> None:
    core = Core()
    core.register()
    before = core.snapshot("game-service")
    body = {"service_name": "game-service", "instance_id": "game-1", "status": "healthy"}
    reply = core.send("POST", HEARTBEAT, body)
    assert (reply.status, reply.detail_fields) == (422, ["status"])
    assert core.snapshot("game-service") == before
    bad = {**body, "status": "degraded"}
    assert core.send("POST", HEARTBEAT, bad).status == 422


def test_an_unknown_type_is_422() -> None:
    core = Core()
    for check in ({"type": "grpc"}, {"type": None}, "http", {"kind": "tcp", "type": 1}):
        reply = core.send("POST", REGISTER, register_body(check=check))
        assert (reply.status, reply.error) == (422, "validation_error"), check
        assert reply.detail_fields[0].startswith("check"), reply.body
    assert core.registry.instance_count == 0


def test_changing_the_check_type_resets_and_reschedules() -> None:
    core = Core()
    core.register()
    core.probe(passed=True)
    core.register(check={"type": "ttl"})
    assert core.status() == "healthy"
    core.pending.clear()
    core.advance(3 * core.config.health_check_interval)
    assert core.pending == []  # the old probe schedule is gone
    core.register(check={"type": "tcp"})
    assert core.status() == "unknown"
    assert core.take_probe().kind is CheckType.TCP


def test_check_types_survive_a_snapshot_and_ttl_waits_for_a_heartbeat() -> None:
    core = Core()
    core.register(instance="t", check={"type": "ttl"})
    core.register(instance="c", check={"type": "tcp"})
    document = json.loads(json.dumps(core.registry.snapshot()))
    restored = Registry(RegistryConfig(), now=0.0, wall_offset=WALL_OFFSET)
    assert restored.restore(document, 0.0) == (2, 0)
    instances = json.loads(as_bytes(restored.views.all_services()))["services"]["game-service"]
    assert [(i["instance_id"], i["check"], i["status"]) for i in instances] == [
        ("c", {"type": "tcp"}, "unknown"),
        ("t", {"type": "ttl"}, "unknown"),
    ]
    restored.on_timer(0.0)
    probes = [e for e in restored.drain_effects() if isinstance(e, RunProbe)]
    assert [p.instance_id for p in probes] == ["c"]
    restored.heartbeat("game-service", "t", None, 1.0)
    assert restored.instance_snapshot("game-service", "t").status == "healthy"  # type: ignore[union-attr]


def test_a_snapshot_from_before_check_types_loads_as_http() -> None:
    core = Core()
    core.register()
    document = core.registry.snapshot()
    del document["instances"][0]["check"]
    restored = Registry(RegistryConfig(), now=0.0, wall_offset=WALL_OFFSET)
    assert restored.restore(document, 0.0) == (1, 0)
    assert restored.instance_snapshot("game-service", "game-1").check is CheckType.HTTP  # type: ignore[union-attr]
