"""Typed models, and settings taken from the environment."""

from __future__ import annotations

import logging

import httpx
import pytest

from service_discovery import (
    InstanceStatus,
    ServiceDiscoveryClient,
    ServiceInstance,
    ServiceInstanceList,
    ServiceRegistrationRequest,
)
from service_discovery.config import ClientSettings

INSTANCE_JSON = {
    "service_name": "game-service",
    "instance_id": "game-1",
    "host": "localhost",
    "port": 8080,
    "health_endpoint": "/health",
    "status": "healthy",
    "last_health_check": "2024-01-15T10:30:00Z",
    "last_heartbeat": "2024-01-15T10:29:45.123456Z",
    "load_percentage": 0.3,
    "metadata": {"version": "1.0.0"},
    "registered_at": "2024-01-15T10:00:00Z",
}


def test_instance_parses_the_contract_json() -> None:
    instance = ServiceInstance.model_validate({**INSTANCE_JSON, "added_later": 1})
    assert instance.status is InstanceStatus.HEALTHY
    assert instance.is_healthy
    assert instance.last_heartbeat is not None
    assert instance.last_heartbeat.microsecond == 123456
    assert instance.base_url == "http://localhost:8080"
    dumped = instance.model_dump(mode="json")
    assert dumped["last_health_check"] == "2024-01-15T10:30:00.000000Z"
    assert "added_later" not in dumped


def test_instance_without_probe_yet() -> None:
    instance = ServiceInstance.model_validate(
        {**INSTANCE_JSON, "status": "unknown", "last_health_check": None}
    )
    assert instance.last_health_check is None
    assert not instance.is_healthy


@pytest.mark.parametrize(
    ("host", "address"),
    [("::1", "[::1]:8080"), ("[::1]", "[::1]:8080"), ("10.0.0.1", "10.0.0.1:8080")],
)
def test_address_brackets_ipv6(host: str, address: str) -> None:
    assert ServiceInstance.model_validate({**INSTANCE_JSON, "host": host}).address == address


def test_instance_is_frozen() -> None:
    instance = ServiceInstance.model_validate(INSTANCE_JSON)
    with pytest.raises(ValueError, match="frozen"):
        instance.port = 1  # type: ignore[misc]


def test_instance_list_is_a_list_with_provenance() -> None:
    instance = ServiceInstance.model_validate(INSTANCE_JSON)
    listed = ServiceInstanceList([instance], discovery_index=7)
    assert listed == [instance]
    assert listed[0] is instance
    assert (listed.stale, listed.discovery_index) == (False, 7)
    copy = listed.copy_with(stale=True, age_seconds=3.0)
    assert copy is not listed
    assert (copy.stale, copy.discovery_index, copy.age_seconds) == (True, 7, 3.0)
    assert "stale=True" in repr(copy)


def test_registration_payload_leaves_out_unset_load() -> None:
    request = ServiceRegistrationRequest(service_name="s", instance_id="i", host="h", port=1)
    assert request.to_payload() == {
        "service_name": "s",
        "instance_id": "i",
        "host": "h",
        "port": 1,
        "health_endpoint": "/health",
        "metadata": {},
    }
    with_load = request.model_copy(update={"load_percentage": 0.5})
    assert with_load.to_payload()["load_percentage"] == 0.5


def test_settings_default_when_env_is_empty() -> None:
    settings = ClientSettings.resolve(environ={})
    assert settings.url == "http://service-discovery:3004"
    assert settings.secret is None
    assert settings.heartbeat_interval == 60.0


def test_settings_come_from_env() -> None:
    env = {
        "SERVICE_DISCOVERY_URL": "http://registry:9999/",
        "SERVICE_DISCOVERY_SECRET": "s3cret",
        "SERVICE_HEARTBEAT_INTERVAL": "15",
    }
    settings = ClientSettings.resolve(environ=env)
    assert (settings.url, settings.secret, settings.heartbeat_interval) == (
        "http://registry:9999",
        "s3cret",
        15.0,
    )


def test_arguments_beat_env() -> None:
    env = {"SERVICE_DISCOVERY_URL": "http://env", "SERVICE_DISCOVERY_SECRET": "env"}
    settings = ClientSettings.resolve("http://arg", "arg", 5, environ=env)
    assert (settings.url, settings.secret, settings.heartbeat_interval) == ("http://arg", "arg", 5)


@pytest.mark.parametrize("raw", ["soon", "0", "-3", "nan", "inf"])
def test_bad_interval_in_env_warns_and_defaults(raw: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="service_discovery"):
        settings = ClientSettings.resolve(environ={"SERVICE_HEARTBEAT_INTERVAL": raw})
    assert settings.heartbeat_interval == 60.0
    assert "SERVICE_HEARTBEAT_INTERVAL" in caplog.text


class Capture:
    """A transport that records requests and answers an empty healthy list."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"service_name": "s", "healthy_instances": []})


async def test_client_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_DISCOVERY_URL", "http://from-env:1234")
    monkeypatch.setenv("SERVICE_DISCOVERY_SECRET", "env-secret")
    monkeypatch.setenv("SERVICE_HEARTBEAT_INTERVAL", "2.5")
    capture = Capture()
    async with ServiceDiscoveryClient(transport=httpx.MockTransport(capture)) as client:
        assert client.url == "http://from-env:1234"
        assert client.heartbeat_interval == 2.5
        await client.discover_services("s")
    (request,) = capture.requests
    assert str(request.url) == "http://from-env:1234/v1/discovery/services/s/healthy"
    assert request.headers["authorization"] == "Bearer env-secret"
    assert request.headers["user-agent"].startswith("service-discovery-python/")


async def test_client_without_secret_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("SERVICE_DISCOVERY_SECRET", raising=False)
    capture = Capture()
    with caplog.at_level(logging.WARNING, logger="service_discovery"):
        client = ServiceDiscoveryClient("http://x", transport=httpx.MockTransport(capture))
    assert "secret" in caplog.text
    async with client:
        await client.discover_services("s")
    assert "authorization" not in capture.requests[0].headers


async def test_names_are_quoted_in_paths() -> None:
    capture = Capture()
    async with ServiceDiscoveryClient(
        "http://x", "s", transport=httpx.MockTransport(capture)
    ) as client:
        await client.discover_services("a/b c")
    assert capture.requests[0].url.raw_path == b"/v1/discovery/services/a%2Fb%20c/healthy"


def test_transport_and_http_client_are_exclusive() -> None:
    with pytest.raises(TypeError):
        ServiceDiscoveryClient(
            "http://x",
            "s",
            transport=httpx.MockTransport(lambda r: httpx.Response(200)),
            http_client=httpx.AsyncClient(),
        )
