"""Maintenance (a drain): in every body, out of healthy reads, labelled for Prometheus."""

from __future__ import annotations

import json

from core_support import READ_AUTH, SERVICES, WALL_OFFSET, Core, iso

from sd_core import MaintenanceChanged, Registry, RegistryConfig
from sd_core.body import as_bytes

PATH = "/v1/discovery/maintenance/game-service/game-1"
HEALTHY = f"{SERVICES}/game-service/healthy"


def _healthy_core() -> Core:
    core = Core()
    core.register()
    core.probe(passed=True)
    assert core.status() == "healthy"
    return core


def test_maintenance_is_shown_and_leaves_healthy_reads() -> None:
    core = _healthy_core()
    index = core.registry.service_index("game-service")
    reply = core.send("PUT", PATH, {"reason": "deploy"})
    assert (reply.status, reply.body) == (
        200,
        {"success": True, "message": "Instance game-service:game-1 is in maintenance"},
    )
    assert core.instance()["maintenance"] == {"reason": "deploy", "since": iso(core.now)}
    assert core.instance()["status"] == "healthy"  # the status is the probes' word still
    assert core.get(HEALTHY).body["healthy_instances"] == []
    [group] = core.targets()
    assert group["labels"]["maintenance"] == "true"
    assert core.registry.service_index("game-service") > index
    assert MaintenanceChanged("game-service", "game-1", True, "deploy") in core.effects


def test_ending_maintenance_restores_the_instance() -> None:
    core = _healthy_core()
    before = core.registry.views.all_services()
    core.send("PUT", PATH, {"reason": "deploy"})
    index = core.registry.service_index("game-service")
    reply = core.send("DELETE", PATH)
    assert reply.status == 200
    assert reply.body["message"] == "Instance game-service:game-1 is out of maintenance"
    assert core.registry.service_index("game-service") > index
    assert core.instance()["maintenance"] is None
    assert "maintenance" not in core.targets()[0]["labels"]
    assert len(core.get(HEALTHY).body["healthy_instances"]) == 1
    # Byte for byte as before, but for the index-free body's unchanged timestamps.
    assert core.registry.views.all_services() == before


def test_repeating_either_call_changes_nothing() -> None:
    core = _healthy_core()
    core.send("PUT", PATH, {"reason": "deploy"})
    index = core.registry.global_index
    since = core.instance()["maintenance"]["since"]
    core.now += 5
    assert core.send("PUT", PATH, {"reason": "deploy"}).status == 200
    assert core.registry.global_index == index
    assert core.instance()["maintenance"]["since"] == since
    core.send("DELETE", PATH)
    index = core.registry.global_index
    assert core.send("DELETE", PATH).status == 200
    assert core.registry.global_index == index


def test_a_new_reason_keeps_the_start() -> None:
    core = _healthy_core()
    core.send("PUT", PATH, {"reason": "deploy"})
    since = core.instance()["maintenance"]["since"]
    core.now += 5
    core.send("PUT", PATH, {"reason": "disk swap"})
    assert core.instance()["maintenance"] == {"reason": "disk swap", "since": since}


def test_no_body_means_no_reason() -> None:
    core = _healthy_core()
    assert core.send("PUT", PATH, content_type=None).status == 200
    assert core.instance()["maintenance"]["reason"] is None


def test_bad_requests_change_nothing() -> None:
    core = _healthy_core()
    before = core.snapshot("game-service")
    assert core.send("PUT", PATH, {"reason": "x" * 257}).error == "validation_error"
    assert core.send("PUT", PATH, {"reason": "a\nb"}).error == "validation_error"
    assert core.send("PUT", PATH, body=b"{", content_type="application/json").status == 400
    assert core.send("PUT", PATH, {"reason": 1}).status == 422
    unknown = core.send("PUT", "/v1/discovery/maintenance/game-service/nope", {})
    assert (unknown.status, unknown.error) == (404, "instance_not_found")
    assert core.send("DELETE", "/v1/discovery/maintenance/nope/x").status == 404
    assert core.send("PUT", PATH, {"reason": "r"}, auth=READ_AUTH).status == 403
    assert core.send("PUT", PATH, {"reason": "r"}, auth=None).status == 401
    assert core.send("GET", PATH).status == 405
    assert core.snapshot("game-service") == before


def test_probes_go_on_during_maintenance() -> None:
    core = _healthy_core()
    core.send("PUT", PATH, {"reason": "deploy"})
    core.probe(passed=False)
    core.probe(passed=False)
    assert core.status() == "unhealthy"
    core.send("DELETE", PATH)
    assert core.get(HEALTHY).body["healthy_instances"] == []


def test_reregistration_keeps_maintenance() -> None:
    core = _healthy_core()
    core.send("PUT", PATH, {"reason": "deploy"})
    core.register(port=9999)
    assert core.instance()["maintenance"]["reason"] == "deploy"


def test_metadata_cannot_fake_the_maintenance_label() -> None:
    core = Core()
    core.register(metadata={"maintenance": "true", "zone": "a"})
    labels = core.targets()[0]["labels"]
    assert "maintenance" not in labels and labels["zone"] == "a"


def test_maintenance_survives_a_snapshot() -> None:
    core = _healthy_core()
    core.send("PUT", PATH, {"reason": "deploy"})
    shown = core.instance()["maintenance"]
    document = json.loads(json.dumps(core.registry.snapshot()))
    restored = Registry(RegistryConfig(), now=50.0, wall_offset=WALL_OFFSET + 950.0)
    assert restored.restore(document, 50.0) == (1, 0)
    [instance] = json.loads(as_bytes(restored.views.all_services()))["services"]["game-service"]
    assert instance["maintenance"] == shown


def test_a_malformed_saved_maintenance_is_dropped_not_the_instance() -> None:
    core = _healthy_core()
    document = core.registry.snapshot()
    document["instances"][0]["maintenance"] = {"reason": 5, "since": "yesterday"}
    restored = Registry(RegistryConfig(), now=0.0, wall_offset=WALL_OFFSET)
    assert restored.restore(document, 0.0) == (1, 0)
    [instance] = json.loads(as_bytes(restored.views.all_services()))["services"]["game-service"]
    assert instance["maintenance"] is None
