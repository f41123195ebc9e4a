"""Expiry: the TTL, heartbeats that prevent it, and unhealthy deregistration.

A dedicated server per frontend with a 2 s TTL, unhealthy instances removed
after 1 s, probes every 0.5 s and self-preservation off (it would otherwise
be a second, unrelated reason for an instance to survive). Instances that
must not be removed for being unhealthy point at a passing fake endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conformance.client import (
    Api,
    assert_error,
    assert_not_registered,
    index_of,
    instance_body,
    make_client,
    poll_until,
)
from conformance.common import PROBE_ENV, SECRET, unique_name
from conformance.dedicated_servers import server_fixture
from conformance.fake_instances import FakeInstance, refused_port
from conformance.fixture_types import Clients
from conformance.server_process import ServerProcess

TTL = 2.0
DEREGISTER_UNHEALTHY_AFTER = 1.0


ttl_server = server_fixture(
    {
        **PROBE_ENV,
        "SERVICE_REGISTRATION_TTL_SECONDS": str(TTL),
        "DEREGISTER_UNHEALTHY_AFTER_SECONDS": str(DEREGISTER_UNHEALTHY_AFTER),
        "SELF_PRESERVATION_THRESHOLD": "0",
    }
)


@pytest.fixture
def ttl_api(ttl_server: ServerProcess, clients: Clients) -> Api:
    return clients(ttl_server)


@pytest.fixture(scope="module")
def healthy_fake() -> Iterator[FakeInstance]:
    with FakeInstance() as fake:
        yield fake


def _register(api: Api, fake: FakeInstance, service: str, instance: str = "i") -> None:
    api.register_ok(instance_body(service, instance, port=fake.port, health_endpoint="/ok"))


def _blocking_get(base_url: str, path: str, index: int) -> httpx.Response:
    with make_client(base_url, SECRET, timeout=30) as client:
        return client.get(path, params={"index": str(index), "wait": "20s"})


def test_instance_without_heartbeats_expires_after_the_ttl(
    ttl_api: Api, ttl_server: ServerProcess, healthy_fake: FakeInstance
) -> None:
    """Removed no earlier than the TTL, watchers woken, heartbeat then 404."""
    service = unique_name("ttl-expire")
    _register(ttl_api, healthy_fake, service)
    # Let the probes settle first (unknown -> healthy, load 0.42 both raise the
    # index), so that the removal is the only change left to wake the watcher.
    poll_until(
        lambda: True if ttl_api.status(service, "i") == "healthy" else None,
        TTL + 3.0,
        "the instance to become healthy",
    )
    last_heartbeat = time.monotonic()
    ttl_api.heartbeat_ok(service, "i")
    path = f"/v1/discovery/services/{service}/instances"
    current = index_of(ttl_api.http.get(path))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ttl-watcher") as pool:
        held = pool.submit(_blocking_get, ttl_server.url, path, current)
        gone = poll_until(
            lambda: time.monotonic() if ttl_api.instance(service, "i") is None else None,
            TTL + 6.0,
            "the instance to expire",
        )
        response = held.result(timeout=25)
    lived = gone - last_heartbeat
    assert lived >= TTL - 0.1, f"removed {lived:.2f} s after the last heartbeat, TTL is {TTL} s"
    assert response.status_code == 200, response.text
    assert response.json() == []
    assert index_of(response) > current, "expiry must wake watchers"
    assert_error(ttl_api.service(service), 404, "service_not_found")
    assert_not_registered(ttl_api.heartbeat(service, "i"), service, "i")
    ttl_api.registered.clear()


def test_heartbeats_keep_an_instance_past_the_ttl(ttl_api: Api, healthy_fake: FakeInstance) -> None:
    service = unique_name("ttl-alive")
    _register(ttl_api, healthy_fake, service)
    until = time.monotonic() + TTL * 1.5
    last_heartbeat = time.monotonic()
    while time.monotonic() < until:
        ttl_api.heartbeat_ok(service, "i")
        last_heartbeat = time.monotonic()
        assert ttl_api.instance(service, "i") is not None, "expired despite heartbeats"
        time.sleep(0.4)
    gone = poll_until(
        lambda: time.monotonic() if ttl_api.instance(service, "i") is None else None,
        TTL + 6.0,
        "the instance to expire once heartbeats stopped",
    )
    assert gone - last_heartbeat >= TTL - 0.1, "expired before a TTL after the last heartbeat"


def test_reregistration_after_expiry_starts_afresh(
    ttl_api: Api, healthy_fake: FakeInstance
) -> None:
    """The heartbeat 404 is the client's cue to register again; that must work."""
    service = unique_name("ttl-again")
    _register(ttl_api, healthy_fake, service)
    first = ttl_api.instance(service, "i")
    assert first is not None
    poll_until(
        lambda: True if ttl_api.instance(service, "i") is None else None,
        TTL + 6.0,
        "the instance to expire",
    )
    assert ttl_api.heartbeat(service, "i").status_code == 404
    _register(ttl_api, healthy_fake, service)
    second = ttl_api.instance(service, "i")
    assert second is not None
    assert second["registered_at"] > first["registered_at"]
    assert second["status"] == "unknown"


def test_unhealthy_instance_is_deregistered(ttl_api: Api) -> None:
    """Heartbeats keep coming; only the unhealthy rule can remove it.

    The control is test_heartbeats_keep_an_instance_past_the_ttl: a healthy
    instance with heartbeats on this same server stays.
    """
    service = unique_name("ttl-unhealthy")
    ttl_api.register_ok(instance_body(service, "i", port=refused_port()))
    statuses: list[str] = []
    deadline = time.monotonic() + 10.0
    while True:
        ttl_api.heartbeat(service, "i")
        status = ttl_api.status(service, "i")
        if status is None:
            break
        if not statuses or statuses[-1] != status:
            statuses.append(status)
        assert time.monotonic() < deadline, f"never removed; statuses {statuses}"
        time.sleep(0.05)
    assert statuses == ["unknown", "unhealthy"], statuses
    assert_not_registered(ttl_api.heartbeat(service, "i"), service, "i")
