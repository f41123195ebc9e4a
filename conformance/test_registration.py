"""Register, heartbeat, unregister, and how instances are rendered.

Runs on the quiet server (probes a day away), so every status is ``unknown``
and ``last_health_check`` is ``null``: exactly what docs/api.md says a
registered, never-probed instance looks like.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from conformance.client import (
    INSTANCE_KEYS,
    Api,
    assert_error,
    assert_not_registered,
    assert_timestamp,
    index_of,
    instance_body,
)
from conformance.dedicated_servers import StateFileServer
from conformance.fixture_types import Names


def _near_now(value: object) -> datetime:
    stamp = assert_timestamp(value)
    assert abs(datetime.now(UTC) - stamp) < timedelta(seconds=60), f"{value} is not now"
    return stamp


def test_register_answers_exactly_and_renders_the_instance_in_full(api: Api, unique: Names) -> None:
    service = unique("render")
    response = api.register(
        instance_body(
            service,
            "game-1",
            host="localhost",
            health_endpoint="/healthz",
            metadata={"version": "1.0.0", "environment": "production"},
        )
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True,
        "message": f"Service {service}:game-1 registered successfully",
        "ttl_seconds": 180,
    }
    api.registered.add((service, "game-1"))

    response = api.service(service)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["service_name", "instances"]
    assert body["service_name"] == service
    [instance] = body["instances"]
    assert list(instance) == INSTANCE_KEYS, "instance keys or their order differ from docs/api.md"
    assert {
        k: instance[k] for k in INSTANCE_KEYS if k not in ("last_heartbeat", "registered_at")
    } == {
        "service_name": service,
        "instance_id": "game-1",
        "host": "localhost",
        "port": 8080,
        "health_endpoint": "/healthz",
        "status": "unknown",
        "last_health_check": None,
        "load_percentage": 0.0,
        "metadata": {"version": "1.0.0", "environment": "production"},
        "check": {"type": "http"},
        "maintenance": None,
    }
    assert isinstance(instance["load_percentage"], float)
    registered_at = _near_now(instance["registered_at"])
    last_heartbeat = _near_now(instance["last_heartbeat"])
    assert last_heartbeat >= registered_at, "registration counts as the first heartbeat"


def test_health_endpoint_defaults_to_slash_health(api: Api, unique: Names) -> None:
    service = unique("default-endpoint")
    api.register_ok(instance_body(service, "i", port=1))
    instance = api.instance(service, "i")
    assert instance is not None
    assert instance["health_endpoint"] == "/health"
    assert instance["metadata"] == {}


def test_unknown_fields_are_ignored(api: Api, unique: Names) -> None:
    service = unique("extra-fields")
    api.register_ok(
        instance_body(service, "i", port=1, weight=10, labels=["a", "b"], nested={"x": None})
    )
    instance = api.instance(service, "i")
    assert instance is not None
    assert list(instance) == INSTANCE_KEYS


def test_load_from_registration_and_heartbeat(api: Api, unique: Names) -> None:
    """Load is taken from register and heartbeat; omitted on re-registration, it is kept."""
    service = unique("load")
    body = instance_body(service, "i", port=1)
    api.register_ok({**body, "load_percentage": 0.5})
    instance = api.instance(service, "i")
    assert instance is not None and instance["load_percentage"] == 0.5
    api.register_ok(body)
    instance = api.instance(service, "i")
    assert instance is not None and instance["load_percentage"] == 0.5
    api.heartbeat_ok(service, "i", load_percentage=0.25)
    instance = api.instance(service, "i")
    assert instance is not None and instance["load_percentage"] == 0.25
    api.heartbeat_ok(service, "i")
    instance = api.instance(service, "i")
    assert instance is not None and instance["load_percentage"] == 0.25


def test_reregistration_updates_in_place_and_keeps_registered_at(api: Api, unique: Names) -> None:
    service = unique("rereg")
    api.register_ok(instance_body(service, "i", port=1, metadata={"a": "1", "b": "2"}))
    first = api.instance(service, "i")
    assert first is not None
    api.register_ok(
        instance_body(service, "i", port=2, health_endpoint="/ready", metadata={"c": "3"})
    )
    second = api.instance(service, "i")
    assert second is not None
    assert second["registered_at"] == first["registered_at"]
    assert second["port"] == 2 and second["health_endpoint"] == "/ready"
    assert second["metadata"] == {"c": "3"}, "metadata is replaced, not merged"
    assert assert_timestamp(second["last_heartbeat"]) >= assert_timestamp(first["last_heartbeat"])
    response = api.service(service)
    assert len(response.json()["instances"]) == 1, "re-registration must not duplicate"

    api.register_ok(instance_body(service, "i", port=2))
    third = api.instance(service, "i")
    assert third is not None
    assert third["metadata"] == {}, "omitted metadata on re-registration means an empty map"
    assert third["health_endpoint"] == "/health"
    assert third["registered_at"] == first["registered_at"]


def test_instances_ordered_by_id_and_services_by_name(api: Api, unique: Names) -> None:
    base = unique("order")
    for instance in ("b-2", "a-10", "c", "a-9"):
        api.register_ok(instance_body(base, instance, host="::1", port=5))
    ids = [item["instance_id"] for item in api.service(base).json()["instances"]]
    assert ids == ["a-10", "a-9", "b-2", "c"]

    for name in (f"{base}-z", f"{base}-a", f"{base}-m"):
        api.register_ok(instance_body(name, "x", host="::1", port=5))
    names = list(api.services().json()["services"])
    assert names == sorted(names), "services must be ordered by name"
    groups = api.prometheus().json()
    keys = [(group["labels"]["service_name"], group["labels"]["instance"]) for group in groups]
    assert keys == sorted(keys), "Prometheus groups are ordered by service, then instance"


def test_heartbeat_answers_exactly_and_refreshes_last_heartbeat(api: Api, unique: Names) -> None:
    service = unique("heartbeat")
    api.register_ok(instance_body(service, "i", port=1))
    before = api.instance(service, "i")
    assert before is not None
    api.heartbeat_ok(service, "i")
    after = api.instance(service, "i")
    assert after is not None
    assert assert_timestamp(after["last_heartbeat"]) > assert_timestamp(before["last_heartbeat"])
    assert after["registered_at"] == before["registered_at"]


def test_heartbeat_for_unknown_instance_is_404(api: Api, unique: Names) -> None:
    service = unique("hb-unknown")
    assert_not_registered(api.heartbeat(service, "ghost"), service, "ghost")
    api.register_ok(instance_body(service, "real", port=1))
    assert_not_registered(api.heartbeat(service, "ghost"), service, "ghost")


def test_unregister_answers_exactly_and_removes(api: Api, unique: Names) -> None:
    service = unique("unreg")
    for instance in ("a", "b"):
        api.register_ok(instance_body(service, instance, port=1))
    response = api.unregister(service, "a")
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "message": "Service unregistered successfully"}
    assert [i["instance_id"] for i in api.service(service).json()["instances"]] == ["b"]
    assert_not_registered(api.unregister(service, "a"), service, "a")
    assert_not_registered(api.heartbeat(service, "a"), service, "a")

    assert api.unregister(service, "b").status_code == 200
    assert service not in api.services().json()["services"]
    assert_error(api.service(service), 404, "service_not_found")
    healthy = api.healthy(service)
    assert healthy.status_code == 200
    assert healthy.json() == {"service_name": service, "healthy_instances": []}
    assert api.sd_instances(service).json() == []


def test_unknown_service_reads(api: Api, unique: Names) -> None:
    """404 only on the plain service endpoint; never-seen services report index 1."""
    service = unique("never-seen")
    response = api.service(service)
    assert_error(response, 404, "service_not_found")
    assert index_of(response) == 1

    response = api.healthy(service)
    assert response.status_code == 200
    assert response.json() == {"service_name": service, "healthy_instances": []}
    assert index_of(response) == 1

    response = api.sd_instances(service)
    assert response.status_code == 200
    assert response.json() == []
    assert index_of(response) == 1


def test_unregister_unknown_is_404(api: Api, unique: Names) -> None:
    service = unique("unreg-unknown")
    assert_not_registered(api.unregister(service, "x"), service, "x")


def test_healthy_endpoint_lists_only_healthy(api: Api, unique: Names) -> None:
    """On the quiet server nothing is probed, so nothing is healthy yet."""
    service = unique("healthy-list")
    api.register_ok(instance_body(service, "i", port=1))
    assert api.healthy(service).json() == {"service_name": service, "healthy_instances": []}


def test_services_lists_every_instance_in_full(api: Api, unique: Names) -> None:
    service = unique("all")
    api.register_ok(instance_body(service, "i", port=3))
    body = api.services().json()
    assert list(body) == ["services"]
    [instance] = body["services"][service]
    assert instance == api.instance(service, "i")


def test_ipv6_hosts_are_stored_as_sent(api: Api, unique: Names) -> None:
    service = unique("ipv6")
    api.register_ok(instance_body(service, "bare", host="::1", port=1))
    api.register_ok(instance_body(service, "brkt", host="[::1]", port=1))
    hosts = {i["instance_id"]: i["host"] for i in api.service(service).json()["instances"]}
    assert hosts == {"bare": "::1", "brkt": "[::1]"}


def test_json_content_type_with_charset_is_accepted(api: Api, unique: Names) -> None:
    service = unique("charset")
    response = api.post_raw(
        "/v1/discovery/register",
        json.dumps(instance_body(service, "i", port=1)).encode(),
        "application/json; charset=utf-8",
    )
    assert response.status_code == 200, response.text
    api.registered.add((service, "i"))


def test_last_heartbeat_survives_a_restart(state_server: StateFileServer, unique: Names) -> None:
    """A restored instance shows its real last heartbeat, not the restart (none happened)."""
    service = unique("heartbeat-restart")
    api = state_server.api
    api.register_ok(instance_body(service, "i-1"))
    shown = api.instance(service, "i-1")
    api = state_server.restart()
    restored = api.instance(service, "i-1")
    assert shown is not None and restored is not None
    assert restored["last_heartbeat"] == shown["last_heartbeat"]
