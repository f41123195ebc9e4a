"""Maintenance (a drain): PUT/DELETE /v1/discovery/maintenance/{service}/{instance}.

An instance in maintenance stays registered and probed, shows
`"maintenance": {"reason", "since"}` in every body, leaves `/healthy`, and
carries `maintenance="true"` in Prometheus; ending it puts it back as it is.
"""

from __future__ import annotations

from typing import Any

from conformance.client import (
    INSTANCE_KEYS,
    Api,
    assert_error,
    assert_timestamp,
    assert_validation_error,
    index_of,
    instance_body,
    poll_until,
)
from conformance.common import PROBE_INTERVAL
from conformance.dedicated_servers import StateFileServer
from conformance.fixture_types import MakeFake, Names


def _path(service: str, instance: str) -> str:
    return f"/v1/discovery/maintenance/{service}/{instance}"


def _ok(response: Any, message: str) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "message": message}


def test_maintenance_on_and_off(api: Api, unique: Names) -> None:
    service = unique("maint")
    api.register_ok(instance_body(service, "i-1", metadata={"zone": "a"}))
    api.register_ok(instance_body(service, "i-2"))
    before = api.instance(service, "i-1")
    assert before is not None and before["maintenance"] is None
    index = api.service_index(service)

    response = api.http.put(_path(service, "i-1"), json={"reason": "deploy"})
    _ok(response, f"Instance {service}:i-1 is in maintenance")
    shown = api.instance(service, "i-1")
    assert shown is not None and list(shown) == INSTANCE_KEYS
    assert set(shown["maintenance"]) == {"reason", "since"}
    assert shown["maintenance"]["reason"] == "deploy"
    assert_timestamp(shown["maintenance"]["since"])
    assert api.service_index(service) > index
    [group] = [g for g in api.sd_instances(service).json() if g["labels"]["instance"] == "i-1"]
    assert group["labels"]["maintenance"] == "true"
    [other] = [g for g in api.sd_instances(service).json() if g["labels"]["instance"] == "i-2"]
    assert "maintenance" not in other["labels"]
    everywhere = api.services().json()["services"][service]
    assert [i["maintenance"] is not None for i in everywhere] == [True, False]

    index = api.service_index(service)
    _ok(api.http.delete(_path(service, "i-1")), f"Instance {service}:i-1 is out of maintenance")
    assert api.service_index(service) > index
    after = api.instance(service, "i-1")
    assert after is not None and after["maintenance"] is None
    assert {k: v for k, v in after.items() if k != "last_heartbeat"} == {
        k: v for k, v in before.items() if k != "last_heartbeat"
    }
    assert all("maintenance" not in g["labels"] for g in api.sd_instances(service).json())


def test_repeating_either_call_answers_200_and_changes_nothing(api: Api, unique: Names) -> None:
    service = unique("maint-again")
    api.register_ok(instance_body(service, "i"))
    assert api.http.put(_path(service, "i"), json={"reason": "deploy"}).status_code == 200
    state = api.snapshot()
    _ok(
        api.http.put(_path(service, "i"), json={"reason": "deploy"}),
        f"Instance {service}:i is in maintenance",
    )
    assert api.snapshot() == state
    assert api.http.delete(_path(service, "i")).status_code == 200
    state = api.snapshot()
    _ok(api.http.delete(_path(service, "i")), f"Instance {service}:i is out of maintenance")
    assert api.snapshot() == state


def test_reason_is_optional(api: Api, unique: Names) -> None:
    service = unique("maint-noreason")
    api.register_ok(instance_body(service, "a"))
    api.register_ok(instance_body(service, "b"))
    assert api.http.put(_path(service, "a")).status_code == 200
    assert api.http.put(_path(service, "b"), json={}).status_code == 200
    for name in ("a", "b"):
        shown = api.instance(service, name)
        assert shown is not None and shown["maintenance"]["reason"] is None


def test_bad_requests_are_refused_and_change_nothing(
    api: Api, read_api: Api, anon: Any, unique: Names
) -> None:
    service = unique("maint-bad")
    api.register_ok(instance_body(service, "i"))
    state = api.snapshot()
    assert_validation_error(api.http.put(_path(service, "i"), json={"reason": "x" * 257}), "reason")
    assert_validation_error(api.http.put(_path(service, "i"), json={"reason": 7}), "reason")
    broken = api.http.put(
        _path(service, "i"), content=b"{", headers={"Content-Type": "application/json"}
    )
    assert_error(broken, 400, "invalid_json")
    not_json = api.http.put(
        _path(service, "i"), content=b"drain", headers={"Content-Type": "text/plain"}
    )
    assert_error(not_json, 415, "unsupported_media_type")
    assert_error(api.http.put(_path(service, "nobody"), json={}), 404, "instance_not_found")
    assert_error(api.http.delete(_path("no-such-service", "i")), 404, "instance_not_found")
    assert_error(read_api.http.put(_path(service, "i"), json={}), 403, "forbidden")
    assert_error(read_api.http.delete(_path(service, "i")), 403, "forbidden")
    assert_error(anon.put(_path(service, "i"), json={}), 401, "unauthorized")
    assert_error(api.http.get(_path(service, "i")), 405, "method_not_allowed")
    assert api.snapshot() == state
    assert api.http.put(_path(service, "i"), json={"reason": "x" * 256}).status_code == 200


def test_healthy_reads_leave_it_out_and_probes_go_on(
    probe_api: Api, fake: MakeFake, unique: Names
) -> None:
    service = unique("maint-probed")
    instance = fake()
    probe_api.register_ok(
        instance_body(service, "i", port=instance.port, health_endpoint="/toggle")
    )
    poll_until(
        lambda: True if probe_api.status(service, "i") == "healthy" else None,
        20 * PROBE_INTERVAL,
        "the instance to turn healthy",
    )
    assert len(probe_api.healthy(service).json()["healthy_instances"]) == 1
    assert probe_api.http.put(_path(service, "i"), json={"reason": "drain"}).status_code == 200
    healthy = probe_api.healthy(service)
    assert healthy.json()["healthy_instances"] == []
    index_of(healthy)

    instance.set_toggle(False)  # it breaks while drained: probes must still see it
    poll_until(
        lambda: True if probe_api.status(service, "i") == "unhealthy" else None,
        20 * PROBE_INTERVAL,
        "the instance in maintenance to turn unhealthy",
    )
    assert probe_api.http.delete(_path(service, "i")).status_code == 200
    assert probe_api.healthy(service).json()["healthy_instances"] == []  # fresh, not stale
    instance.set_toggle(True)
    poll_until(
        lambda: probe_api.healthy(service).json()["healthy_instances"] or None,
        20 * PROBE_INTERVAL,
        "the instance to come back",
    )


def test_maintenance_survives_a_restart(state_server: StateFileServer, unique: Names) -> None:
    service = unique("maint-restart")
    api = state_server.api
    api.register_ok(instance_body(service, "drained"))
    api.register_ok(instance_body(service, "serving"))
    assert api.http.put(_path(service, "drained"), json={"reason": "deploy"}).status_code == 200
    shown = api.instance(service, "drained")
    api = state_server.restart()
    restored = api.instance(service, "drained")
    assert restored is not None and shown is not None
    assert restored["maintenance"] == shown["maintenance"]
    other = api.instance(service, "serving")
    assert other is not None and other["maintenance"] is None
