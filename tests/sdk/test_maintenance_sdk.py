"""Maintenance, drain on exit, discovery filters and health-check kinds, against the fake.

The drain scenarios run on trio (with ``MockClock(autojump_threshold=0)``, so
a 30 s drain takes no real time) and on asyncio (with an injected sleep that
records the wait instead of waiting).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import trio
import trio.testing

from service_discovery import (
    CheckType,
    InstanceStatus,
    NotFoundError,
    NotSupportedError,
    ServiceRegistrationRequest,
    ValidationError,
)

from .conftest import KEY_A, MakeClient
from .fakes import FakeRegistry

MAINTENANCE = "/v1/discovery/maintenance/my-service/instance-1"
UNREGISTER = "/v1/discovery/unregister/my-service/instance-1"


async def test_set_and_clear_maintenance(
    make_client: MakeClient, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    async with make_client(cache=False) as client:
        await client.register_service(request_a)
        assert await client.set_maintenance(reason="deploy") is True
        assert registry.paths("PUT") == [MAINTENANCE]
        assert registry.bodies[-1] == {"reason": "deploy"}
        assert await client.discover_services("my-service") == []
        (listed,) = await client.discover_services("my-service", healthy_only=False)
        assert listed.in_maintenance
        assert listed.maintenance is not None and listed.maintenance.reason == "deploy"
        assert listed.maintenance.since is not None
        await client.set_maintenance("my-service", "instance-1", reason="again")  # no-op
        await client.clear_maintenance()
        assert registry.paths("DELETE") == [MAINTENANCE]
        (back,) = await client.discover_services("my-service")
        assert back.maintenance is None and not back.in_maintenance


async def test_maintenance_of_an_unknown_instance_is_not_found(
    make_client: MakeClient,
) -> None:
    async with make_client() as client:
        with pytest.raises(NotFoundError) as caught:
            await client.set_maintenance("my-service", "nobody")
    assert caught.value.code == "instance_not_found"
    assert not isinstance(caught.value, NotSupportedError)


async def test_an_older_registry_says_not_supported(
    make_client: MakeClient, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    registry.maintenance_route = False
    async with make_client() as client:
        await client.register_service(request_a)
        with pytest.raises(NotSupportedError) as caught:
            await client.set_maintenance(reason="deploy")
    assert isinstance(caught.value, NotFoundError)  # older code catching 404 still works


def test_instances_of_an_older_registry_have_no_maintenance_or_check() -> None:
    from service_discovery import ServiceInstance

    instance = ServiceInstance(service_name="a", instance_id="b", host="h", port=1)
    assert instance.maintenance is None and instance.check is None


# -- registered(drain_seconds=) ---------------------------------------------------


async def _drain_scenario(
    registry: FakeRegistry, request: ServiceRegistrationRequest, sleep: Any
) -> list[tuple[str, str]]:
    options: dict[str, Any] = {"cache": False}
    if sleep is not None:
        options["sleep"] = sleep
    async with (
        registry.client(**options) as client,
        client.registered(request, interval_seconds=1000, drain_seconds=30),
    ):
        assert KEY_A in registry.instances
        registry.log.clear()
    return list(registry.log)


def test_drain_on_trio_waits_in_maintenance_then_unregisters(
    registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    seen: dict[str, Any] = {}

    async def main() -> None:
        original = registry.handle

        async def spy(request: Any) -> Any:
            if request.method == "DELETE":
                seen["waited"] = trio.current_time()
                seen["in_maintenance"] = registry.instances[KEY_A]["maintenance"] is not None
            return await original(request)

        registry.handle = spy  # type: ignore[method-assign]
        seen["start"] = trio.current_time()
        seen["log"] = await _drain_scenario(registry, request_a, None)

    trio.run(main, clock=clock)
    assert seen["log"] == [("PUT", MAINTENANCE), ("DELETE", UNREGISTER)]
    assert seen["in_maintenance"]
    assert seen["waited"] - seen["start"] >= 30  # on the mock clock: no real waiting
    assert KEY_A not in registry.instances


def test_drain_on_asyncio_with_an_injected_sleep(
    registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    log = asyncio.run(_drain_scenario(registry, request_a, sleep))
    assert 30 in waits
    assert log == [("PUT", MAINTENANCE), ("DELETE", UNREGISTER)]


async def test_drain_against_an_older_registry_unregisters_at_once(
    registry: FakeRegistry,
    request_a: ServiceRegistrationRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.maintenance_route = False
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await trio.lowlevel.checkpoint()

    with caplog.at_level(logging.INFO, "service_discovery.client"):
        log = await _drain_scenario(registry, request_a, sleep)
    assert log == [("PUT", MAINTENANCE), ("DELETE", UNREGISTER)]
    assert 30 not in waits
    assert KEY_A not in registry.instances
    assert "no maintenance route" in caplog.text


async def test_negative_drain_is_refused(
    make_client: MakeClient, request_a: ServiceRegistrationRequest
) -> None:
    async with make_client() as client:
        with pytest.raises(ValueError, match="drain_seconds"):
            async with client.registered(request_a, drain_seconds=-1):
                pass


# -- filters ---------------------------------------------------------------------


def _seed(registry: FakeRegistry) -> None:
    for name, version, status in [("a", "1.0.0", "healthy"), ("b", "2.0", "unhealthy")]:
        registry.add("svc", name, status=status)
        registry.instances[("svc", name)]["metadata"] = {"version": version, "zone": "x y"}


async def test_metadata_filter_is_sent_encoded_and_applied(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    _seed(registry)
    async with make_client() as client:
        found = await client.discover_services(
            "svc", healthy_only=False, metadata={"version": "1.0.0", "zone": "x y"}
        )
        assert [i.instance_id for i in found] == ["a"]
    assert registry.queries[-1] == "meta.version=1.0.0&meta.zone=x+y"


async def test_status_filter_any_may_match(make_client: MakeClient, registry: FakeRegistry) -> None:
    _seed(registry)
    async with make_client() as client:
        found = await client.discover_services("svc", healthy_only=False, status="unhealthy")
        assert [i.instance_id for i in found] == ["b"]
        both = await client.discover_services(
            "svc", healthy_only=False, status=[InstanceStatus.HEALTHY, "unhealthy"]
        )
        assert [i.instance_id for i in both] == ["a", "b"]
    assert "status=healthy&status=unhealthy" in registry.queries


async def test_filters_are_cached_apart(make_client: MakeClient, registry: FakeRegistry) -> None:
    _seed(registry)
    async with make_client() as client:
        everything = await client.discover_services("svc", healthy_only=False)
        filtered = await client.discover_services(
            "svc", healthy_only=False, metadata={"version": "2.0"}
        )
        again = await client.discover_services("svc", healthy_only=False)
    assert [i.instance_id for i in everything] == ["a", "b"] == [i.instance_id for i in again]
    assert [i.instance_id for i in filtered] == ["b"]
    assert len(registry.paths("GET")) == 2  # the third answer came from the cache


async def test_filters_also_apply_when_the_registry_ignores_them(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    _seed(registry)
    original = registry._listing

    def old_listing(service: str, healthy: bool, params: Any = None) -> Any:
        return original(service, healthy)  # an older registry: query ignored

    registry._listing = old_listing  # type: ignore[method-assign]
    async with make_client() as client:
        found = await client.discover_services(
            "svc", healthy_only=False, metadata={"version": "2.0"}
        )
    assert [i.instance_id for i in found] == ["b"]


async def test_a_bad_status_filter_raises_before_sending(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    async with make_client() as client:
        with pytest.raises(ValidationError):
            await client.discover_services("svc", status="sleepy")
    assert registry.log == []


# -- checks and TTL status ----------------------------------------------------------


@pytest.mark.parametrize("check", ["tcp", {"type": "tcp"}, CheckType.TCP])
def test_check_forms(check: Any) -> None:
    request = ServiceRegistrationRequest(
        service_name="s", instance_id="i", host="h", port=1, check=check
    )
    assert request.to_payload()["check"] == {"type": "tcp"}
    assert request.check_type is CheckType.TCP


def test_no_check_sends_none_and_a_bad_one_is_refused() -> None:
    plain = ServiceRegistrationRequest(service_name="s", instance_id="i", host="h", port=1)
    assert "check" not in plain.to_payload() and plain.check_type is CheckType.HTTP
    with pytest.raises(ValidationError):
        ServiceRegistrationRequest(service_name="s", instance_id="i", host="h", port=1, check="x")


async def test_ttl_instance_reports_status_on_every_heartbeat(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    async with make_client(cache=False) as client:
        await client.register_service(
            service_name="job", instance_id="j1", host="h", port=1, check="ttl"
        )
        assert registry.bodies[-1]["check"] == {"type": "ttl"}
        await client.report_status("unhealthy")
        assert registry.bodies[-1]["status"] == "unhealthy"
        (listed,) = await client.discover_services("job", healthy_only=False)
        assert listed.status is InstanceStatus.UNHEALTHY
        assert listed.check is not None and listed.check.type is CheckType.TTL
        await client.send_heartbeat()
        assert registry.bodies[-1]["status"] == "unhealthy"  # remembered
        await client.send_heartbeat(status="healthy")
        assert registry.bodies[-1]["status"] == "healthy"


async def test_status_is_refused_for_a_probed_instance(
    make_client: MakeClient, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    async with make_client() as client:
        await client.register_service(request_a)
        with pytest.raises(ValueError, match="ttl"):
            await client.report_status("healthy")
    assert "status" not in registry.bodies[-1]
