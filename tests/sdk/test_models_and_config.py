"""Typed models, and settings taken from the environment."""

from __future__ import annotations

import logging

import httpx
import pytest

from service_discovery import (
    ConfigurationError,
    InstanceStatus,
    ServiceDiscoveryClient,
    ServiceDiscoveryError,
    ServiceInstance,
    ServiceInstanceList,
    ServiceRegistrationRequest,
    SyncServiceDiscoveryClient,
    ValidationError,
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


def test_attempt_and_connect_timeouts_default_come_from_env_and_lose_to_arguments() -> None:
    settings = ClientSettings.resolve(environ={})
    assert (settings.timeout, settings.attempt_timeout, settings.connect_timeout) == (10, 2, 1)
    env = {"SERVICE_DISCOVERY_ATTEMPT_TIMEOUT": "0.5", "SERVICE_DISCOVERY_CONNECT_TIMEOUT": "0.25"}
    settings = ClientSettings.resolve(environ=env)
    assert (settings.attempt_timeout, settings.connect_timeout) == (0.5, 0.25)
    settings = ClientSettings.resolve(environ=env, attempt_timeout=3, connect_timeout=2)
    assert (settings.attempt_timeout, settings.connect_timeout) == (3, 2)


@pytest.mark.parametrize(
    "variable", ["SERVICE_DISCOVERY_ATTEMPT_TIMEOUT", "SERVICE_DISCOVERY_CONNECT_TIMEOUT"]
)
def test_a_bad_timeout_in_env_warns_and_defaults(
    variable: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service_discovery"):
        settings = ClientSettings.resolve(environ={variable: "soon"})
    assert (settings.attempt_timeout, settings.connect_timeout) == (2, 1)
    assert variable in caplog.text


@pytest.mark.parametrize("option", ["timeout", "attempt_timeout", "connect_timeout"])
def test_a_timeout_argument_must_be_positive(option: str) -> None:
    with pytest.raises(ValueError, match=f"{option} must be positive"):
        SyncServiceDiscoveryClient("http://r", "s", **{option: 0})


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


@pytest.mark.parametrize("name", ["a/b", "a b", "", "-x", "x" * 129, "a%2Fb"])
async def test_names_the_registry_refuses_are_refused_before_sending(name: str) -> None:
    """``discover_services("a/b")`` used to send the path as it was."""
    capture = Capture()
    async with ServiceDiscoveryClient(
        "http://x", "s", transport=httpx.MockTransport(capture)
    ) as client:
        for call in (
            lambda: client.discover_services(name),
            lambda: client.pick(name),
            lambda: client.unregister_service(name, "i-1"),
            lambda: client.unregister_service("svc", name),
        ):
            with pytest.raises(ValidationError) as caught:
                await call()
            assert caught.value.status_code is None
            assert "letters, digits" in str(caught.value)
        with pytest.raises(ValidationError):
            await anext(client.watch_service(name))
    assert capture.requests == []


def test_transport_and_http_client_are_exclusive() -> None:
    with pytest.raises(TypeError):
        ServiceDiscoveryClient(
            "http://x",
            "s",
            transport=httpx.MockTransport(lambda r: httpx.Response(200)),
            http_client=httpx.AsyncClient(),
        )


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("127.0.0.1:46017", "send 'http://127.0.0.1:46017'"),
        ("service-discovery:3004", "send 'http://service-discovery:3004'"),
        ("ftp://x", "speaks HTTP"),
        ("http://", "host"),
        ("http://a:3004,", "extra comma"),
        ("http://a:3004,b:3004", "send 'http://b:3004'"),
        ("http://a:port", "host"),
        ("http://a:3004/?x=1", "query"),
    ],
)
def test_a_url_that_cannot_work_is_refused_at_construction(url: str, hint: str) -> None:
    """These were accepted, and then every call failed."""
    with pytest.raises(ConfigurationError) as caught:
        ServiceDiscoveryClient(url, "s")
    assert hint in str(caught.value)
    # One except catches it with the SDK's other errors, another as a bad value.
    assert isinstance(caught.value, ServiceDiscoveryError)
    assert isinstance(caught.value, ValueError)


def test_a_bad_url_from_the_environment_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_DISCOVERY_URL", "registry:3004")
    with pytest.raises(ConfigurationError, match=r"send .http://registry:3004."):
        ServiceDiscoveryClient(service_discovery_secret="s")


def test_a_comma_separated_list_names_several_registries() -> None:
    env = {"SERVICE_DISCOVERY_URL": " http://a:3004/ , https://b:3004"}
    settings = ClientSettings.resolve(environ=env)
    assert settings.urls == ("http://a:3004", "https://b:3004")
    assert settings.url == "http://a:3004"


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        (
            {"host": "10.0.0.5:8080"},
            "host",
            "address with a port: send host='10.0.0.5' and port=8080",
        ),
        ({"host": "http://10.0.0.5"}, "host", "is a URL, not a host: send host='10.0.0.5'"),
        ({"host": "https://api.internal:8443/x"}, "host", "send host='api.internal' and port=8443"),
        ({"host": "[::1]:8080"}, "host", "send host='::1' and port=8080"),
        ({"port": 70000}, "port", "less than or equal to 65535"),
        ({"port": "8080x"}, "port", "integer"),
        ({"service_name": "a/b"}, "service_name", "letters, digits"),
        ({"instance_id": "-1"}, "instance_id", "starting with a letter or digit"),
    ],
)
def test_registration_mistakes_raise_the_sdks_error_with_what_to_send(
    fields: dict[str, object], field: str, says: str
) -> None:
    """Built directly, the model raised pydantic's error and took hosts as they came."""
    data: dict[str, object] = {"service_name": "s", "instance_id": "i", "host": "h", "port": 1}
    data.update(fields)
    with pytest.raises(ValidationError) as caught:
        ServiceRegistrationRequest(**data)  # type: ignore[arg-type]
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.status_code is None
    assert [d.field for d in error.details] == [field]
    assert says in error.details[0].message
    assert says in str(error)


@pytest.mark.parametrize("host", ["10.0.0.5", "::1", "[::1]", "fe80::1", "api.internal", "h"])
def test_plain_hosts_are_accepted(host: str) -> None:
    ServiceRegistrationRequest(service_name="s", instance_id="i", host=host, port=1)
