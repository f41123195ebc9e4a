"""Self-preservation: expiry pauses when most of the fleet goes silent at once.

Each test starts its own server (TTL 2 s, at least 3 instances, threshold
0.5, probes a day away) because the mode is registry-wide and, after its
maximum, locked out for a TTL: tests sharing a server would steer each other.
Both ways out are checked, since docs/api.md promises the mode never sticks.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from conformance.client import Api, api_for, instance_body, make_client, poll_until
from conformance.common import QUIET_INTERVAL, SECRET, unique_name
from conformance.fixture_types import Launcher

TTL = 2.0


def _env(max_seconds: float) -> dict[str, str]:
    return {
        "HEALTH_CHECK_INTERVAL_SECONDS": QUIET_INTERVAL,
        "SERVICE_REGISTRATION_TTL_SECONDS": str(TTL),
        "SELF_PRESERVATION_THRESHOLD": "0.5",
        "SELF_PRESERVATION_MIN_INSTANCES": "3",
        "SELF_PRESERVATION_MAX_SECONDS": str(max_seconds),
    }


def _health(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/health")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _register_fleet(api: Api, service: str) -> None:
    for instance in ("a", "b", "c"):
        api.register_ok(instance_body(service, instance, port=5000))


def _wait_for_mode(health: httpx.Client, api: Api, service: str) -> float:
    """Wait until the mode is on; the whole silent fleet must still be listed."""
    entered = poll_until(
        lambda: time.monotonic() if _health(health)["self_preservation"] else None,
        TTL + 4.0,
        "self-preservation to start",
    )
    body = _health(health)
    reason = body["self_preservation_reason"]
    assert isinstance(reason, str) and reason, body
    ids = [i["instance_id"] for i in api.service(service).json()["instances"]]
    assert ids == ["a", "b", "c"], "expiry ran although self-preservation is on"
    return entered


def test_mode_ends_after_its_maximum_and_the_due_expiries_run(launch: Launcher) -> None:
    max_seconds = 2.0
    server = launch(_env(max_seconds))
    service = unique_name("sp-max")
    with api_for(server.url, SECRET) as api, make_client(server.url) as health:
        assert _health(health)["self_preservation"] is False
        registered = time.monotonic()
        _register_fleet(api, service)
        entered = _wait_for_mode(health, api, service)
        assert entered - registered >= TTL - 0.1, "the mode started before any expiry was due"
        gone = poll_until(
            lambda: time.monotonic() if api.service(service).status_code == 404 else None,
            max_seconds + 4.0,
            "the fleet to expire after the mode's maximum",
        )
        assert gone - entered >= max_seconds - 0.5, "expiry resumed before the maximum"
        body = _health(health)
        assert body["self_preservation"] is False, body
        assert body["self_preservation_reason"] is None, body
        api.registered.clear()


def test_mode_ends_as_soon_as_heartbeats_come_back(launch: Launcher) -> None:
    server = launch(_env(60.0))
    service = unique_name("sp-back")
    with api_for(server.url, SECRET) as api, make_client(server.url) as health:
        _register_fleet(api, service)
        _wait_for_mode(health, api, service)
        back = time.monotonic()

        def only_the_silent_one_expired() -> bool | None:
            api.heartbeat_ok(service, "a")
            api.heartbeat_ok(service, "b")
            ids = [i["instance_id"] for i in api.service(service).json()["instances"]]
            time.sleep(0.1)
            return True if ids == ["a", "b"] else None

        poll_until(only_the_silent_one_expired, 6.0, "c to expire once a and b heartbeat")
        assert time.monotonic() - back < 6.0
        body = _health(health)
        assert body["self_preservation"] is False, body
