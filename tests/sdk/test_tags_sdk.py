"""Tags in the SDK: sent on registration (`register_service`, `registered`, the sync
client), read back on instances, and `tags=` as a discovery filter, sent as `?tag=` and
checked again locally."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from service_discovery import (
    ServiceDiscoveryClient,
    ServiceRegistrationRequest,
    SyncServiceDiscoveryClient,
    ValidationError,
)

from .conftest import MakeClient
from .fakes import FakeRegistry, ids
from .registry_process import SECRET, RegistryProcess, running_registry

FIELDS: dict[str, Any] = {"service_name": "s", "instance_id": "i", "host": "h", "port": 1}


def test_tags_are_sent_only_when_given() -> None:
    tagged = ServiceRegistrationRequest(**FIELDS, tags=["web", "traefik.enable=true"])
    assert tagged.to_payload()["tags"] == ["web", "traefik.enable=true"]
    assert "tags" not in ServiceRegistrationRequest(**FIELDS).to_payload()
    assert "tags" not in ServiceRegistrationRequest(**FIELDS, tags=()).to_payload()


@pytest.mark.parametrize("tags", ["web", ["a,b"], [""], [7]])
def test_a_bad_tag_list_raises_before_sending(tags: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        ServiceRegistrationRequest(**FIELDS, tags=tags)
    assert caught.value.details[0].field.startswith("tags")


def _seed(registry: FakeRegistry) -> None:
    for name, tags in (("a", ["web", "eu"]), ("b", ["web"]), ("c", [])):
        registry.add("svc", name)
        if tags:  # as the registry renders them: only a tagged instance has the key
            registry.instances[("svc", name)]["tags"] = tags


async def test_the_tag_filter_is_sent_and_applied_here_too(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    """The fake ignores `?tag=`, like a registry older than tags: the answer still is."""
    _seed(registry)
    async with make_client() as client:
        both = await client.discover_services("svc", tags=["web", "eu"])
        web = await client.discover_services("svc", tags="web")
        everything = await client.discover_services("svc")
    assert ids(both) == ["a"]
    assert ids(web) == ["a", "b"]
    assert ids(everything) == ["a", "b", "c"]
    assert everything[0].tags == ("web", "eu") and everything[2].tags == ()
    assert "tag=eu&tag=web" in registry.queries


async def test_a_bad_tag_filter_raises_before_sending(
    make_client: MakeClient, registry: FakeRegistry
) -> None:
    async with make_client() as client:
        with pytest.raises(ValidationError):
            await client.discover_services("svc", tags=["a,b"])
    assert registry.log == []


@pytest.fixture(scope="module")
def real_registry() -> Iterator[RegistryProcess]:
    with running_registry("trio") as server:
        yield server


def test_registered_with_tags_on_a_real_registry(real_registry: RegistryProcess) -> None:
    async def main() -> None:
        client = ServiceDiscoveryClient(real_registry.url, SECRET, cache=False)
        stay = client.registered(
            service_name="tagged-async",
            instance_id="t1",
            host="127.0.0.1",
            port=9,
            tags=["web", "eu", "web"],
        )
        async with client, stay:
            (found,) = await client.discover_services(
                "tagged-async", healthy_only=False, tags=["eu", "web"]
            )
            assert found.tags == ("web", "eu")
            assert await client.discover_services("tagged-async", False, tags="us") == []
            every = await client.get_all_services(tags="eu")
            assert [i.instance_id for i in every["tagged-async"]] == ["t1"]
            assert "tagged-async" not in await client.get_all_services(tags="us")

    asyncio.run(main())


def test_the_sync_client_registers_tags(real_registry: RegistryProcess) -> None:
    with SyncServiceDiscoveryClient(real_registry.url, SECRET, cache=False) as client:
        client.register_service(
            service_name="tagged-sync", instance_id="s1", host="127.0.0.1", port=9, tags=["db"]
        )
        client.register_service(
            service_name="tagged-sync", instance_id="s2", host="127.0.0.1", port=9
        )
        found = client.discover_services("tagged-sync", healthy_only=False, tags=["db"])
        assert ids(found) == ["s1"]
        assert found[0].tags == ("db",)
        assert ids(client.get_all_services(tags="db")["tagged-sync"]) == ["s1"]
        client.unregister_service("tagged-sync", "s1")
        client.unregister_service("tagged-sync", "s2")
