"""Exceptions raised by the SDK.

Every failure the registry reports arrives as a subclass of
:class:`ServiceDiscoveryError` carrying the registry's stable ``error`` code,
its human ``message`` and the HTTP status, so callers can tell a wrong token
from a bad port from a registry that is down, instead of getting a bare
``False``. The class tells you who has to act:

* :class:`AuthenticationError` / :class:`PermissionDeniedError`: the
  configuration (token) is wrong; retrying will not help.
* :class:`BadRequestError` / :class:`ValidationError`: the request is wrong;
  fix the code or the data.
* :class:`NotFoundError`: the instance or service is unknown to the registry
  (for a heartbeat: register again).
* :class:`RegistryUnavailableError`: the registry cannot answer right now
  (network error, 5xx, draining, full); retrying later may help.
* :class:`ConfigurationError`: the client was built with settings that can
  never work (a registry URL without ``http://``); raised at construction.

The errors of a wrong argument (:class:`ValidationError`,
:class:`ConfigurationError`) are also ``ValueError`` instances, as Python code
expects of a bad value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "FieldError",
    "NoHealthyInstancesError",
    "NotFoundError",
    "NotSupportedError",
    "PermissionDeniedError",
    "RegistryFullError",
    "RegistryUnavailableError",
    "ServiceDiscoveryError",
    "ValidationError",
]


@dataclass(frozen=True, slots=True)
class FieldError:
    """One entry of a 422 ``details`` list: which field, and what is wrong with it."""

    field: str
    message: str


class ServiceDiscoveryError(Exception):
    """Base of every error the SDK raises on purpose.

    ``code`` is the registry's machine-readable ``error`` value (e.g.
    ``instance_not_found``), ``None`` when the failure happened before the
    registry answered. ``status_code`` is the HTTP status, ``None`` likewise.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code

    @property
    def error(self) -> str | None:
        """Alias of :attr:`code`, named like the field of the registry's error body."""
        return self.code

    def __str__(self) -> str:
        prefix = " ".join(str(part) for part in (self.status_code, self.code) if part is not None)
        return f"{prefix}: {self.message}" if prefix else self.message


class AuthenticationError(ServiceDiscoveryError):
    """The registry rejected the token (401): missing, malformed or wrong secret."""


class PermissionDeniedError(AuthenticationError):
    """The token is valid but may not do this (403), e.g. a read-only token on a write.

    A subclass of :class:`AuthenticationError` so one ``except`` catches every
    credential problem.
    """


class BadRequestError(ServiceDiscoveryError):
    """The registry refused the request itself (400, 405, 413, 415, other 4xx)."""


class ValidationError(BadRequestError, ValueError):
    """Fields failed validation (422, or the SDK's own check before sending).

    ``details`` lists each offending field, as the registry's body does. The
    SDK's own checks (a request model built with a bad port, a service name
    the registry would refuse) raise it with ``status_code`` ``None``: nothing
    was sent.
    """

    def __init__(
        self,
        message: str,
        *,
        details: list[FieldError] | None = None,
        code: str | None = "validation_error",
        status_code: int | None = 422,
    ) -> None:
        super().__init__(message, code=code, status_code=status_code)
        self.details: list[FieldError] = list(details or [])

    def __str__(self) -> str:
        base = super().__str__()
        if not self.details:
            return base
        fields = "; ".join(f"{d.field}: {d.message}" for d in self.details)
        return f"{base} ({fields})"


class ConfigurationError(ServiceDiscoveryError, ValueError):
    """The client's settings can never work (e.g. a registry URL without a scheme).

    Raised by the constructor, so a misconfigured service fails at start-up
    with a message saying what to send instead, not on every later call.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code="configuration_error")


class NotFoundError(ServiceDiscoveryError):
    """The instance, service or path is unknown (404).

    For a heartbeat this is the registry saying it forgot us (it restarted, or
    our TTL expired): the heartbeat loop answers it by registering again.
    """


class NotSupportedError(NotFoundError):
    """The registry does not serve this route (``404 not_found``): it is older than the SDK.

    A subclass of :class:`NotFoundError`, which older code already catches.
    Raised by the calls of features a registry gained later (maintenance), so
    the caller can tell "this registry cannot do that" from "unknown instance".
    """


class RegistryUnavailableError(ServiceDiscoveryError):
    """The registry could not be reached or could not serve the request.

    Raised for connection errors and timeouts (``status_code`` is ``None`` and
    the httpx exception is the ``__cause__``), 5xx answers and
    ``503 shutting_down``. These are the failures worth retrying and the ones
    the discovery cache answers from its last good copy.
    """


class RegistryFullError(RegistryUnavailableError):
    """``503 registry_full``: the registry's instance cap is reached."""


class NoHealthyInstancesError(ServiceDiscoveryError):
    """:meth:`ServiceDiscoveryClient.pick` found no healthy instance to choose from."""

    def __init__(self, service_name: str, *, excluded: int = 0) -> None:
        others = f" besides the {excluded} excluded" if excluded else ""
        super().__init__(
            f"No healthy instance of service {service_name!r} is registered{others}",
            code="no_healthy_instances",
        )
        self.service_name = service_name
        self.excluded = excluded


def _details_from_body(raw: Any) -> list[FieldError]:
    if not isinstance(raw, list):
        return []
    details: list[FieldError] = []
    for item in raw:
        if isinstance(item, dict):
            details.append(FieldError(str(item.get("field", "")), str(item.get("message", ""))))
    return details


def error_from_response(
    status_code: int, body: Any, *, fallback_message: str
) -> ServiceDiscoveryError:
    """Build the exception for a non-2xx answer from the registry.

    ``body`` is the decoded JSON body (or anything else when the answer was not
    the registry's JSON, e.g. a proxy's HTML 502); ``fallback_message`` is used
    when the body carries no ``message``.
    """
    code: str | None = None
    message = fallback_message
    details: list[FieldError] = []
    if isinstance(body, dict):
        raw_code = body.get("error")
        code = raw_code if isinstance(raw_code, str) else None
        raw_message = body.get("message")
        if isinstance(raw_message, str) and raw_message:
            message = raw_message
        details = _details_from_body(body.get("details"))

    if status_code == 401:
        return AuthenticationError(message, code=code, status_code=status_code)
    if status_code == 403:
        return PermissionDeniedError(message, code=code, status_code=status_code)
    if status_code == 404:
        return NotFoundError(message, code=code, status_code=status_code)
    if status_code == 422:
        return ValidationError(message, details=details, code=code, status_code=status_code)
    if status_code == 503 and code == "registry_full":
        return RegistryFullError(message, code=code, status_code=status_code)
    if status_code >= 500 or status_code == 429:
        return RegistryUnavailableError(message, code=code, status_code=status_code)
    if 400 <= status_code < 500:
        return BadRequestError(message, code=code, status_code=status_code)
    return ServiceDiscoveryError(message, code=code, status_code=status_code)
