"""The Prometheus HTTP SD lists, including hostile metadata.

Metadata comes from whoever can register, and it becomes Prometheus labels:
a key like ``__address__`` would redirect the scrape, ``instance`` would
disguise one target as another. These tests pin the mapping docs/api.md fixes.
"""

from __future__ import annotations

from typing import Any

from conformance.client import Api, index_of, instance_body
from conformance.fixture_types import Names

HOSTILE_METADATA = {
    "__address__": "127.0.0.1:1",
    "__scheme__": "https",
    "__metrics_path__": "/evil",
    "__meta_x": "z",
    "instance": "impostor",
    "service_name": "impostor-service",
    "status": "healthy",
    "load_percentage": "0.99",
    "app-version": "1.2",
    "app.version": "9.9",
    "9lives": "dropped",
    "a b": "c",
    "-lead": "dash",
    "_ok": "kept",
    "ünï": "u",
    "--x": "double-dash-becomes-reserved",
    "version": "1.0.0",
}

#: What HOSTILE_METADATA must turn into, beside the four built-in labels.
EXPECTED_METADATA_LABELS = {
    "app_version": "1.2",  # "app-version" sorts before "app.version" and wins
    "a_b": "c",
    "_lead": "dash",
    "_ok": "kept",
    "_n_": "u",
    "version": "1.0.0",
}


def _groups_of(api: Api, service: str) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = [
        g for g in api.prometheus().json() if g["labels"].get("service_name") == service
    ]
    return groups


def test_target_group_shape_and_builtin_labels(api: Api, unique: Names) -> None:
    service = unique("sd-shape")
    api.register_ok(
        instance_body(
            service, "game-1", host="localhost", metadata={"version": "1.0.0"}, load_percentage=0.3
        )
    )
    expected = [
        {
            "targets": ["localhost:8080"],
            "labels": {
                "instance": "game-1",
                "service_name": service,
                "status": "unknown",
                "load_percentage": "0.3",
                "version": "1.0.0",
            },
        }
    ]
    response = api.sd_instances(service)
    assert response.status_code == 200
    assert response.json() == expected
    assert _groups_of(api, service) == expected


def test_load_label_is_shortest_round_trip_string(api: Api, unique: Names) -> None:
    service = unique("sd-load")
    api.register_ok(instance_body(service, "i", port=1))
    [group] = api.sd_instances(service).json()
    assert group["labels"]["load_percentage"] == "0.0"
    api.heartbeat_ok(service, "i", load_percentage=0.42)
    [group] = api.sd_instances(service).json()
    assert group["labels"]["load_percentage"] == "0.42"


def test_hostile_metadata_keys(api: Api, unique: Names) -> None:
    service = unique("sd-hostile")
    api.register_ok(instance_body(service, "real-1", port=9100, metadata=HOSTILE_METADATA))
    [group] = api.sd_instances(service).json()
    assert group["targets"] == ["127.0.0.1:9100"], "__address__ must not redirect the scrape"
    assert group["labels"] == {
        "instance": "real-1",
        "service_name": service,
        "status": "unknown",
        "load_percentage": "0.0",
        **EXPECTED_METADATA_LABELS,
    }
    assert all(isinstance(value, str) for value in group["labels"].values())
    # The instance itself still shows the metadata exactly as registered.
    instance = api.instance(service, "real-1")
    assert instance is not None and instance["metadata"] == HOSTILE_METADATA


def test_ipv6_targets_are_bracketed(api: Api, unique: Names) -> None:
    service = unique("sd-ipv6")
    api.register_ok(instance_body(service, "bare", host="::1", port=9101))
    api.register_ok(instance_body(service, "brkt", host="[::1]", port=9102))
    groups = api.sd_instances(service).json()
    assert [g["targets"] for g in groups] == [["[::1]:9101"], ["[::1]:9102"]]


def test_one_group_per_instance_healthy_or_not_in_order(api: Api, unique: Names) -> None:
    service = unique("sd-order")
    for instance in ("c", "a", "b"):
        api.register_ok(instance_body(service, instance, port=9))
    groups = api.sd_instances(service).json()
    assert [g["labels"]["instance"] for g in groups] == ["a", "b", "c"]
    assert _groups_of(api, service) == groups


def test_unknown_service_is_an_empty_list_with_index(api: Api, unique: Names) -> None:
    response = api.sd_instances(unique("sd-none"))
    assert response.status_code == 200
    assert response.json() == []
    assert index_of(response) == 1


def test_prometheus_list_is_a_list(api: Api) -> None:
    response = api.prometheus()
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list)
    for group in body:
        assert set(group) == {"targets", "labels"}
        assert len(group["targets"]) == 1
        assert all(isinstance(v, str) for v in group["labels"].values())
