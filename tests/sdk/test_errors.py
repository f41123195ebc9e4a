"""Every registry failure maps to a specific exception carrying the registry's code."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from service_discovery import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RegistryFullError,
    RegistryUnavailableError,
    ServiceDiscoveryClient,
    ServiceDiscoveryError,
    ServiceRegistrationRequest,
    ValidationError,
)
from service_discovery.errors import FieldError, error_from_response

from .fakes import READ_TOKEN, FakeRegistry, error


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "invalid_json", BadRequestError),
        (401, "unauthorized", AuthenticationError),
        (403, "forbidden", PermissionDeniedError),
        (404, "instance_not_found", NotFoundError),
        (405, "method_not_allowed", BadRequestError),
        (413, "payload_too_large", BadRequestError),
        (415, "unsupported_media_type", BadRequestError),
        (422, "validation_error", ValidationError),
        (500, "internal_error", RegistryUnavailableError),
        (503, "shutting_down", RegistryUnavailableError),
        (503, "registry_full", RegistryFullError),
    ],
)
def test_status_and_code_map_to_exception(
    status: int, code: str, expected: type[ServiceDiscoveryError]
) -> None:
    exc = error_from_response(status, {"error": code, "message": "why"}, fallback_message="x")
    assert type(exc) is expected
    assert (exc.status_code, exc.code, exc.error, exc.message) == (status, code, code, "why")
    assert str(exc) == f"{status} {code}: why"


def test_validation_error_carries_details() -> None:
    body = {
        "error": "validation_error",
        "message": "Request validation failed",
        "details": [{"field": "port", "message": "too big"}, "junk"],
    }
    exc = error_from_response(422, body, fallback_message="x")
    assert isinstance(exc, ValidationError)
    assert exc.details == [FieldError("port", "too big")]
    assert "port: too big" in str(exc)


def test_a_body_that_is_not_the_registrys_falls_back_to_the_status() -> None:
    exc = error_from_response(
        502, "<html>bad gateway</html>", fallback_message="GET / answered 502"
    )
    assert isinstance(exc, RegistryUnavailableError)
    assert exc.code is None
    assert exc.message == "GET / answered 502"


async def test_wrong_secret_raises_authentication_error(
    make_client: Callable[..., ServiceDiscoveryClient], request_a: ServiceRegistrationRequest
) -> None:
    async with make_client(service_discovery_secret="wrong") as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.register_service(request_a)
    assert caught.value.code == "unauthorized"
    assert caught.value.status_code == 401


async def test_read_token_on_write_is_permission_denied(
    make_client: Callable[..., ServiceDiscoveryClient], request_a: ServiceRegistrationRequest
) -> None:
    async with make_client(service_discovery_secret=READ_TOKEN) as client:
        with pytest.raises(PermissionDeniedError) as caught:
            await client.register_service(request_a)
        assert isinstance(caught.value, AuthenticationError)
        # The same token may read.
        assert await client.discover_services("my-service") == []


async def test_registry_validation_error_is_carried_through(
    make_client: Callable[..., ServiceDiscoveryClient], registry: FakeRegistry
) -> None:
    registry.canned.append(
        error(
            422,
            "validation_error",
            "Request validation failed",
            details=[{"field": "host", "message": "not a hostname"}],
        )
    )
    async with make_client() as client:
        with pytest.raises(ValidationError) as caught:
            await client.register_service(
                service_name="svc", instance_id="i", host="bad_host", port=1
            )
    assert caught.value.details == [FieldError("host", "not a hostname")]
    assert caught.value.status_code == 422


async def test_keyword_registration_is_validated_before_sending(
    make_client: Callable[..., ServiceDiscoveryClient], registry: FakeRegistry
) -> None:
    async with make_client() as client:
        with pytest.raises(ValidationError) as caught:
            await client.register_service(service_name="svc", instance_id="i", host="h", port=70000)
    assert [d.field for d in caught.value.details] == ["port"]
    assert caught.value.status_code is None
    assert registry.log == []


async def test_network_error_is_registry_unavailable_with_cause(
    make_client: Callable[..., ServiceDiscoveryClient],
    registry: FakeRegistry,
    request_a: ServiceRegistrationRequest,
) -> None:
    registry.down = True
    async with make_client() as client:
        with pytest.raises(RegistryUnavailableError) as caught:
            await client.register_service(request_a)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.status_code is None
    assert "registry.test" in str(caught.value)


async def test_non_json_5xx_is_registry_unavailable(
    make_client: Callable[..., ServiceDiscoveryClient],
    registry: FakeRegistry,
    request_a: ServiceRegistrationRequest,
) -> None:
    registry.canned.append(httpx.Response(502, text="<html>Bad Gateway</html>"))
    async with make_client() as client:
        with pytest.raises(RegistryUnavailableError) as caught:
            await client.register_service(request_a)
    assert caught.value.status_code == 502
    assert caught.value.code is None


async def test_unregister_unknown_instance_is_not_found(
    make_client: Callable[..., ServiceDiscoveryClient],
) -> None:
    async with make_client() as client:
        with pytest.raises(NotFoundError) as caught:
            await client.unregister_service("nope", "nope-1")
    assert caught.value.code == "instance_not_found"
