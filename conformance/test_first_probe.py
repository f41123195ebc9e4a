"""A new instance is probed at once: visible to healthy-only readers within seconds.

On the default 30 s interval, waiting for an instance's phase left a fresh
deploy out of `/healthy` for up to half a minute. The registry now runs a new
(or re-addressed) instance's first probe at once, as Consul runs a new check.
"""

from __future__ import annotations

import time

from conformance.client import api_for, instance_body
from conformance.common import SECRET, unique_name
from conformance.fixture_types import Launcher, MakeFake

#: The issue's bound, on loopback, from the registration's answer to `healthy`.
HEALTHY_WITHIN_SECONDS = 2.0


def test_registration_to_healthy_on_the_default_interval(launch: Launcher, fake: MakeFake) -> None:
    server = launch({})  # every probe setting at its default: a 30 s interval
    peer = fake()
    service = unique_name("first-probe")
    with api_for(server.url, SECRET) as api:
        api.register_ok(instance_body(service, "fresh", port=peer.port, health_endpoint="/ok"))
        registered = time.monotonic()
        healthy: list[str] = []
        while time.monotonic() - registered < HEALTHY_WITHIN_SECONDS + 5:
            body = api.healthy(service).json()
            healthy = [i["instance_id"] for i in body["healthy_instances"]]
            if healthy:
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - registered
    assert healthy == ["fresh"], f"still not healthy after {elapsed:.2f} s"
    assert elapsed < HEALTHY_WITHIN_SECONDS, f"healthy only after {elapsed:.2f} s"
    assert peer.hits("/ok") == 1, "more than the one first probe on a 30 s interval"
