"""Check types: `http` (the default), `tcp` (a connect) and `ttl` (heartbeats report it)."""

from __future__ import annotations

import pytest

from conformance.client import (
    Api,
    api_for,
    assert_validation_error,
    index_of,
    instance_body,
    poll_until,
)
from conformance.common import PROBE_ENV, PROBE_INTERVAL, SECRET
from conformance.dedicated_servers import StateFileServer
from conformance.fake_instances import refused_port
from conformance.fixture_types import Launcher, MakeFake, Names


def _wait_status(api: Api, service: str, instance: str, status: str) -> None:
    poll_until(
        lambda: True if api.status(service, instance) == status else None,
        20 * PROBE_INTERVAL,
        f"{service}:{instance} to turn {status}",
    )


def test_http_is_the_default_and_every_instance_shows_its_check(api: Api, unique: Names) -> None:
    service = unique("checks")
    api.register_ok(instance_body(service, "plain"))
    for kind in ("http", "tcp", "ttl"):
        api.register_ok(instance_body(service, kind, check={"type": kind}))
    shown = {i["instance_id"]: i["check"] for i in api.service(service).json()["instances"]}
    assert shown == {
        "plain": {"type": "http"},
        "http": {"type": "http"},
        "tcp": {"type": "tcp"},
        "ttl": {"type": "ttl"},
    }


@pytest.mark.parametrize(
    "check", [{"type": "grpc"}, {"type": "HTTP"}, {"type": None}, "ttl", {}], ids=str
)
def test_an_unknown_check_is_422(api: Api, unique: Names, check: object) -> None:
    service = unique("bad-check")
    if check == {}:  # an empty check object means the default
        api.register_ok(instance_body(service, "i", check=check))
        instance = api.instance(service, "i")
        assert instance is not None and instance["check"] == {"type": "http"}
        return
    assert_validation_error(api.register(instance_body(service, "i", check=check)), "check")
    assert api.service(service).status_code == 404


def test_a_ttl_instance_is_healthy_while_it_heartbeats(api: Api, unique: Names) -> None:
    service = unique("ttl")
    api.register_ok(instance_body(service, "i", check={"type": "ttl"}))
    assert api.status(service, "i") == "healthy"  # registration is the first heartbeat
    assert len(api.healthy(service).json()["healthy_instances"]) == 1

    index = api.service_index(service)
    api.heartbeat_ok(service, "i", status="unhealthy")
    assert api.status(service, "i") == "unhealthy"
    assert api.healthy(service).json()["healthy_instances"] == []
    assert api.service_index(service) > index

    api.heartbeat_ok(service, "i", status="healthy")
    assert api.status(service, "i") == "healthy"
    api.heartbeat_ok(service, "i", status="unhealthy")
    api.heartbeat_ok(service, "i")  # no status: it heartbeats, so it is healthy
    assert api.status(service, "i") == "healthy"
    index = api.service_index(service)
    api.heartbeat_ok(service, "i")
    assert api.service_index(service) == index


def test_status_is_refused_from_a_probed_instance_and_bad_values(api: Api, unique: Names) -> None:
    service = unique("status-refused")
    api.register_ok(instance_body(service, "http"))
    api.register_ok(instance_body(service, "ttl", check={"type": "ttl"}))
    before = api.snapshot()
    assert_validation_error(api.heartbeat(service, "http", status="healthy"), "status")
    assert_validation_error(api.heartbeat(service, "ttl", status="degraded"), "status")
    assert api.snapshot() == before


def test_a_ttl_instance_is_never_probed(probe_api: Api, fake: MakeFake, unique: Names) -> None:
    service = unique("ttl-unprobed")
    instance = fake()
    body = instance_body(service, "ttl", port=instance.port, health_endpoint="/json-fail")
    probe_api.register_ok({**body, "check": {"type": "ttl"}})
    probe_api.register_ok(instance_body(service, "http", port=instance.port, health_endpoint="/ok"))
    poll_until(lambda: True if instance.hits("/ok") >= 3 else None, 20 * PROBE_INTERVAL, "3 probes")
    assert instance.hits("/json-fail") == 0
    assert probe_api.status(service, "ttl") == "healthy"


def test_tcp_checks_pass_on_a_connect_and_fail_when_refused(
    probe_api: Api, fake: MakeFake, unique: Names
) -> None:
    service = unique("tcp")
    listening = fake()
    tcp = {"type": "tcp"}
    probe_api.register_ok(instance_body(service, "up", port=listening.port, check=tcp))
    probe_api.register_ok(instance_body(service, "down", port=refused_port(), check=tcp))
    _wait_status(probe_api, service, "up", "healthy")
    _wait_status(probe_api, service, "down", "unhealthy")
    assert listening.requests() == []  # a TCP check sends nothing
    targets = probe_api.sd_instances(service).json()
    assert {g["labels"]["instance"]: g["labels"]["status"] for g in targets} == {
        "down": "unhealthy",
        "up": "healthy",
    }


def test_tcp_checks_obey_the_probe_allowlist(
    launch: Launcher, fake: MakeFake, unique: Names
) -> None:
    server = launch({**PROBE_ENV, "HEALTH_CHECK_ALLOWED_NETWORKS": "10.0.0.0/8"})
    listening = fake()
    service = unique("tcp-refused")
    with api_for(server.url, SECRET) as api:
        response = api.register(
            instance_body(service, "i", port=listening.port, check={"type": "tcp"})
        )
        assert response.status_code == 200
        assert "health checks refused" in response.json()["message"]
        _wait_status(api, service, "i", "unhealthy")


def test_check_types_survive_a_restart(state_server: StateFileServer, unique: Names) -> None:
    service = unique("checks-restart")
    for kind in ("http", "tcp", "ttl"):
        state_server.api.register_ok(instance_body(service, kind, check={"type": kind}))
    api = state_server.restart()
    response = api.service(service)
    index_of(response)
    shown = {i["instance_id"]: i["check"]["type"] for i in response.json()["instances"]}
    assert shown == {"http": "http", "tcp": "tcp", "ttl": "ttl"}
    assert api.status(service, "ttl") == "unknown"  # until it heartbeats again
    api.heartbeat_ok(service, "ttl")
    assert api.status(service, "ttl") == "healthy"
