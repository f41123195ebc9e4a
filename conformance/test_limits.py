"""Configured limits: the instance cap and a non-default body limit.

A dedicated quiet server per frontend with SERVICE_DISCOVERY_MAX_INSTANCES=2
and SERVICE_DISCOVERY_MAX_BODY_BYTES=2048 proves the variables are honoured
(the shared server only shows the defaults), and pins the order of checks
around the cap: field validation first, then ``registry_full``.
"""

from __future__ import annotations

import json

import pytest

from conformance.client import Api, api_for, assert_error, assert_validation_error, instance_body
from conformance.common import QUIET_INTERVAL, unique_name
from conformance.dedicated_servers import server_fixture
from conformance.fixture_types import Clients
from conformance.server_process import ServerProcess

MAX_INSTANCES = 2
MAX_BODY = 2048


limits_server = server_fixture(
    {
        "HEALTH_CHECK_INTERVAL_SECONDS": QUIET_INTERVAL,
        "SERVICE_DISCOVERY_MAX_INSTANCES": str(MAX_INSTANCES),
        "SERVICE_DISCOVERY_MAX_BODY_BYTES": str(MAX_BODY),
    }
)


@pytest.fixture
def limits_api(limits_server: ServerProcess, clients: Clients) -> Api:
    return clients(limits_server)


def test_registry_full_past_the_cap(limits_api: Api) -> None:
    service = unique_name("cap")
    limits_api.register_ok(instance_body(service, "a"))
    limits_api.register_ok(instance_body(unique_name("cap-other"), "b"))
    before = limits_api.snapshot()
    assert_error(limits_api.register(instance_body(service, "c")), 503, "registry_full")
    assert limits_api.snapshot() == before, "a rejected registration changed the registry"

    # Re-registering an existing instance is not a new instance: still fine.
    limits_api.register_ok(instance_body(service, "a", port=3001))
    assert limits_api.instance(service, "a") is not None

    # Validation comes before the registry's own checks.
    assert_validation_error(limits_api.register(instance_body(service, "c", port=0)), "port")

    # Room again once one leaves.
    assert limits_api.unregister(service, "a").status_code == 200
    limits_api.register_ok(instance_body(service, "c"))


def test_configured_body_limit(limits_api: Api, limits_server: ServerProcess) -> None:
    service = unique_name("small-body")
    base = instance_body(service, "i")
    empty = len(json.dumps({**base, "pad": ""}).encode())
    exact = json.dumps({**base, "pad": "p" * (MAX_BODY - empty)}).encode()
    over = json.dumps({**base, "pad": "p" * (MAX_BODY - empty + 1)}).encode()
    assert len(exact) == MAX_BODY and len(over) == MAX_BODY + 1

    before = limits_api.snapshot()
    assert_error(limits_api.post_raw("/v1/discovery/register", over), 413, "payload_too_large")
    assert limits_api.snapshot() == before
    with api_for(limits_server.url, None) as anon:
        assert_error(anon.post_raw("/v1/discovery/register", over), 413, "payload_too_large")

    response = limits_api.post_raw("/v1/discovery/register", exact)
    assert response.status_code == 200, response.text
    limits_api.registered.add((service, "i"))
