"""When X-Discovery-Index rises, and when it must not.

Watchers (gateways, SDK caches) re-fetch on every rise, so a rise on every
heartbeat would turn the watch into polling; a missing rise would leave them
routing to stale addresses. Runs on the quiet server, where only the test
changes anything, so "unchanged" can be asserted exactly.
"""

from __future__ import annotations

from conformance.client import Api, index_of
from conformance.fixture_types import Names


def _body(service: str, instance: str = "i", **fields: object) -> dict[str, object]:
    return {
        "service_name": service,
        "instance_id": instance,
        "host": "127.0.0.1",
        "port": 1000,
        **fields,
    }


def test_adding_an_instance_raises_service_and_global_index_alike(api: Api, unique: Names) -> None:
    service = unique("idx-add")
    before = api.global_index()
    assert api.service_index(service) == 1, "a service never seen reports index 1"
    api.register_ok(_body(service))
    after = api.service_index(service)
    assert after > before
    assert api.global_index() == after, "one counter: the global index is the newest rise"
    for response in (api.service(service), api.sd_instances(service), api.healthy(service)):
        assert index_of(response) == after
    assert index_of(api.prometheus()) == api.global_index()


def test_a_change_elsewhere_leaves_a_service_index_alone(api: Api, unique: Names) -> None:
    first, second = unique("idx-a"), unique("idx-b")
    api.register_ok(_body(first))
    first_index = api.service_index(first)
    api.register_ok(_body(second))
    assert api.service_index(first) == first_index
    assert api.global_index() > first_index
    assert api.global_index() >= api.service_index(second)


def test_heartbeats_and_small_load_moves_do_not_raise_it(api: Api, unique: Names) -> None:
    service = unique("idx-hb")
    api.register_ok(_body(service))
    index = api.service_index(service)
    global_index = api.global_index()
    for _ in range(3):
        api.heartbeat_ok(service, "i")
    api.heartbeat_ok(service, "i", load_percentage=0.05)
    api.heartbeat_ok(service, "i", load_percentage=0.0)
    assert api.service_index(service) == index
    assert api.global_index() == global_index


def test_load_delta_is_measured_from_the_last_rise(api: Api, unique: Names) -> None:
    """Drift in small steps must still raise the index once it adds up to the delta."""
    service = unique("idx-load")
    api.register_ok(_body(service))
    index = api.service_index(service)

    def step(load: float, rises: bool) -> None:
        nonlocal index
        api.heartbeat_ok(service, "i", load_percentage=load)
        now = api.service_index(service)
        if rises:
            assert now > index, f"load moved to {load}: index should rise"
            assert now == api.global_index()
        else:
            assert now == index, f"load moved to {load}: index should stay"
        index = now

    step(0.2, rises=True)  # 0.2 from 0.0
    step(0.25, rises=False)  # 0.05 from 0.2
    step(0.28, rises=False)  # 0.08 from 0.2
    step(0.33, rises=True)  # 0.13 from 0.2
    step(0.25, rises=False)  # 0.08 from 0.33
    step(0.2, rises=True)  # 0.13 from 0.33


def test_reregistration_raises_it_only_for_real_changes(api: Api, unique: Names) -> None:
    service = unique("idx-rereg")
    body = _body(service, metadata={"v": "1"})
    api.register_ok(body)
    index = api.service_index(service)

    api.register_ok(body)
    assert api.service_index(service) == index, "an identical re-registration changes nothing"

    for change in (
        {"metadata": {"v": "2"}},
        {"port": 1001},
        {"health_endpoint": "/ready"},
        {"host": "127.0.0.2"},
    ):
        body = {**body, **change}
        api.register_ok(body)
        now = api.service_index(service)
        assert now > index, f"{change} should raise the index"
        index = now


def test_removal_raises_it_and_the_empty_service_keeps_that_index(api: Api, unique: Names) -> None:
    service = unique("idx-rm")
    api.register_ok(_body(service))
    before = api.service_index(service)
    assert api.unregister(service, "i").status_code == 200
    removal = api.service_index(service)
    assert removal > before
    assert api.global_index() == removal
    api.register_ok(_body(unique("idx-other")))
    assert api.service_index(service) == removal, "a gone service keeps its removal's index"
    assert index_of(api.service(service)) == removal, "the 404 carries the index too"


def test_failed_writes_do_not_raise_it(api: Api, unique: Names) -> None:
    service = unique("idx-fail")
    api.register_ok(_body(service))
    index = api.global_index()
    assert api.heartbeat(service, "ghost").status_code == 404
    assert api.unregister(service, "ghost").status_code == 404
    assert api.register(_body(service, port=0)).status_code == 422
    assert api.global_index() == index
