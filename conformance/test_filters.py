"""Filters on every list endpoint: `?meta.<key>=<value>` (all match), `?status=` (any).

They combine with each other and with blocking queries; a bad one is a 422,
and unknown parameters are still ignored.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from conformance.client import Api, assert_validation_error, index_of, instance_body
from conformance.fixture_types import Names
from conformance.server_process import ServerProcess


def _fleet(api: Api, unique: Names) -> str:
    """Three instances of a new service: i-1 and i-3 in zone a, i-2 in zone b."""
    service = unique("filters")
    api.register_ok(instance_body(service, "i-1", metadata={"zone": "a", "tier": "web"}))
    api.register_ok(instance_body(service, "i-2", metadata={"zone": "b", "tier": "web"}))
    api.register_ok(instance_body(service, "i-3", metadata={"zone": "a", "tier": "db"}))
    return service


def _ids(instances: list[dict[str, Any]]) -> list[str]:
    return [i["instance_id"] for i in instances]


def _labels(groups: list[dict[str, Any]], service: str) -> list[str]:
    return [g["labels"]["instance"] for g in groups if g["labels"]["service_name"] == service]


def test_metadata_filters_all_must_match(api: Api, unique: Names) -> None:
    service = _fleet(api, unique)
    path = f"/v1/discovery/services/{service}"
    assert _ids(api.http.get(path, params={"meta.zone": "a"}).json()["instances"]) == ["i-1", "i-3"]
    both = api.http.get(path, params=[("meta.zone", "a"), ("meta.tier", "web")])
    assert _ids(both.json()["instances"]) == ["i-1"]
    none = api.http.get(path, params=[("meta.zone", "a"), ("meta.zone", "b")])
    assert none.status_code == 200 and none.json()["instances"] == []


def test_status_filters_any_may_match(api: Api, unique: Names) -> None:
    service = _fleet(api, unique)  # on the quiet server every instance stays unknown
    path = f"/v1/discovery/services/{service}"
    assert api.http.get(path, params={"status": "healthy"}).json()["instances"] == []
    either = api.http.get(path, params=[("status", "healthy"), ("status", "unknown")])
    assert _ids(either.json()["instances"]) == ["i-1", "i-2", "i-3"]
    mixed = api.http.get(path, params=[("status", "unknown"), ("meta.zone", "b")])
    assert _ids(mixed.json()["instances"]) == ["i-2"]


def test_every_list_endpoint_filters(api: Api, unique: Names) -> None:
    service = _fleet(api, unique)
    zone_a = {"meta.zone": "a"}
    services = api.http.get("/v1/discovery/services", params=zone_a).json()["services"]
    assert _ids(services[service]) == ["i-1", "i-3"]
    assert all(i["metadata"].get("zone") == "a" for group in services.values() for i in group)
    only_b = api.http.get("/v1/discovery/services", params={"meta.zone": "b", "meta.tier": "web"})
    assert _ids(only_b.json()["services"][service]) == ["i-2"]
    healthy = api.http.get(f"/v1/discovery/services/{service}/healthy", params=zone_a)
    assert healthy.status_code == 200 and healthy.json()["healthy_instances"] == []
    targets = api.http.get(f"/v1/discovery/services/{service}/instances", params=zone_a).json()
    assert _labels(targets, service) == ["i-1", "i-3"]
    everything = api.http.get("/v1/discovery/prometheus", params={"meta.tier": "db"}).json()
    assert _labels(everything, service) == ["i-3"]
    assert all(g["labels"].get("tier") == "db" for g in everything)


def test_a_service_without_a_match_is_left_out_of_services(api: Api, unique: Names) -> None:
    service = _fleet(api, unique)
    services = api.http.get("/v1/discovery/services", params={"meta.zone": "nowhere"})
    assert service not in services.json()["services"]
    index_of(services)


def test_filtered_reads_follow_changes(api: Api, unique: Names) -> None:
    service = _fleet(api, unique)
    path = f"/v1/discovery/services/{service}"
    assert _ids(api.http.get(path, params={"meta.zone": "b"}).json()["instances"]) == ["i-2"]
    api.register_ok(instance_body(service, "i-1", metadata={"zone": "b", "tier": "web"}))
    assert _ids(api.http.get(path, params={"meta.zone": "b"}).json()["instances"]) == ["i-1", "i-2"]


def test_blocking_queries_combine_with_filters(
    server: ServerProcess, api: Api, unique: Names
) -> None:
    service = _fleet(api, unique)
    path = f"/v1/discovery/services/{service}"
    index = index_of(api.http.get(path, params={"meta.zone": "b"}))
    answered: list[Any] = []

    def watch() -> None:
        params = {"meta.zone": "b", "index": str(index), "wait": "20s"}
        answered.append(api.http.get(path, params=params, timeout=30))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        api.register_ok(instance_body(service, "i-4", metadata={"zone": "b"}))
    finally:
        watcher.join(timeout=30)
    [response] = answered
    assert index_of(response) > index
    assert _ids(response.json()["instances"]) == ["i-2", "i-4"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "bogus"}, "status"),
        ({"status": ""}, "status"),
        ({"meta.": "x"}, "meta"),
    ],
    ids=["unknown-status", "empty-status", "empty-key"],
)
@pytest.mark.parametrize(
    "path",
    [
        "/v1/discovery/services",
        "/v1/discovery/services/{service}",
        "/v1/discovery/services/{service}/healthy",
        "/v1/discovery/services/{service}/instances",
        "/v1/discovery/prometheus",
    ],
)
def test_a_bad_filter_is_422(
    api: Api, unique: Names, path: str, params: dict[str, str], field: str
) -> None:
    service = _fleet(api, unique)
    assert_validation_error(api.http.get(path.format(service=service), params=params), field)


def test_unknown_parameters_are_still_ignored(api: Api, unique: Names) -> None:
    service = _fleet(api, unique)
    response = api.http.get(f"/v1/discovery/services/{service}", params={"colour": "blue"})
    assert _ids(response.json()["instances"]) == ["i-1", "i-2", "i-3"]
