"""Typed shapes of what the SDK sends and receives.

The instance model mirrors the registry's instance JSON (docs/api.md) so code
that discovers a service works with attributes and types, not dict lookups.
Unknown fields the registry may add later are ignored, so an older SDK keeps
working against a newer registry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NotRequired, TypedDict
from urllib.parse import urlsplit

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from .errors import FieldError, ValidationError

__all__ = [
    "CheckStatus",
    "CheckType",
    "CustomCheckResult",
    "HealthCheck",
    "HealthCheckResult",
    "HealthStatus",
    "InstanceStatus",
    "Maintenance",
    "ServiceInstance",
    "ServiceInstanceList",
    "ServiceRegistrationRequest",
]

NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""The registry's rule for service names and instance ids (its ``NAME_PATTERN``)."""

_NAME_HELP = (
    "1-128 characters of letters, digits, '.', '_' and '-', starting with a letter or digit"
)
_HOST_WITH_PORT = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]+):(?P<port>[0-9]+)")


def check_name(value: str, field: str = "service_name") -> str:
    """Refuse a service name or instance id the registry would refuse, before sending.

    Checked in the SDK because a name like ``a/b`` would otherwise become a
    different path (or a 404 that reads like an unknown service).
    """
    if not isinstance(value, str) or not NAME_RULE.fullmatch(value):
        raise ValidationError(
            f"{field} {value!r} is not a valid name: {_NAME_HELP}",
            details=[FieldError(field, _NAME_HELP)],
            status_code=None,
        )
    return value


def _host_mistake(host: str) -> str | None:
    """What is wrong with a host that is really a URL or ``host:port``, or ``None``.

    The registry's 422 would only say "not a valid hostname"; the usual cause
    is pasting an address, so say so and say what to send.
    """
    if "://" in host:
        parts = urlsplit(host)
        try:
            port = parts.port
        except ValueError:
            port = None
        hint = f"host={parts.hostname!r}" if parts.hostname else "the host name alone"
        if port is not None:
            hint += f" and port={port}"
        return f"{host!r} is a URL, not a host: send {hint}"
    match = _HOST_WITH_PORT.fullmatch(host)
    if match is not None:
        return (
            f"{host!r} is an address with a port: send host={match['host'].strip('[]')!r} "
            f"and port={int(match['port'])}"
        )
    if "/" in host or any(c.isspace() for c in host):
        return f"{host!r} is not a host name or IP address (no paths or spaces)"
    return None


def _sdk_error(exc: pydantic.ValidationError, what: str) -> ValidationError:
    details = [
        FieldError(".".join(str(part) for part in err["loc"]) or "request", _message_of(err))
        for err in exc.errors()
    ]
    return ValidationError(
        f"Invalid {what}: " + ", ".join(d.field for d in details),
        details=details,
        status_code=None,
    )


def _message_of(err: Any) -> str:
    # A ValueError raised by our own validators arrives as "Value error, <text>".
    return str(err["msg"]).removeprefix("Value error, ")


def _iso_z(value: datetime) -> str:
    """Render a timestamp the way the registry does: UTC, microseconds, ``Z``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CheckType(StrEnum):
    """How the registry decides an instance's health.

    ``http`` (the default when a registration names no check) probes
    ``health_endpoint``; ``tcp`` only opens a connection to the port; ``ttl``
    never probes: the instance reports its own status on its heartbeats.
    """

    HTTP = "http"
    TCP = "tcp"
    TTL = "ttl"


class HealthCheck(BaseModel):
    """The ``check`` of a registration, and of an instance as the registry shows it.

    Fields a newer registry adds to a check are kept (and sent back as they came).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    type: CheckType

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        # check="tcp" is the short form of check={"type": "tcp"}.
        return {"type": value} if isinstance(value, str) else value


class Maintenance(BaseModel):
    """Why and since when an instance is in maintenance (left out of healthy reads)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    reason: str = ""
    since: datetime | None = None

    @field_serializer("since")
    def _serialize_timestamp(self, value: datetime | None) -> str | None:
        return None if value is None else _iso_z(value)


class ServiceRegistrationRequest(BaseModel):
    """What a service tells the registry about itself (``POST /v1/discovery/register``).

    Checked here, before anything is sent: types, the port range, the names
    (the registry's rule) and the usual host mistakes (a URL or ``host:port``
    where a bare host belongs), each with a message saying what to send. Any
    failure raises the SDK's :class:`~service_discovery.ValidationError` (a
    ``ValueError``), not pydantic's. The registry stays the authority on the
    rest (full host syntax, metadata limits); its 422 arrives as the same
    exception with the registry's details.
    """

    model_config = ConfigDict(extra="forbid")

    service_name: str = Field(min_length=1)
    instance_id: str = Field(min_length=1)
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    health_endpoint: str = "/health"
    metadata: dict[str, str] = Field(default_factory=dict)
    # What Consul-style consumers route by (Traefik's `traefik.*`, Fabio's `urlprefix-`).
    tags: tuple[str, ...] = ()
    load_percentage: float | None = Field(default=None, ge=0.0, le=1.0)
    check: HealthCheck | None = None

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise _sdk_error(exc, "registration") from exc

    @field_validator("service_name", "instance_id")
    @classmethod
    def _registry_name(cls, value: str) -> str:
        if not NAME_RULE.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid name: {_NAME_HELP}")
        return value

    @field_validator("host")
    @classmethod
    def _plain_host(cls, value: str) -> str:
        mistake = _host_mistake(value)
        if mistake is not None:
            raise ValueError(mistake)
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # iterating it would register one tag per character
            raise ValueError(f"a list of tags, not one string: tags=[{value!r}]")
        return value

    @field_validator("tags")
    @classmethod
    def _separate_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """The usual slip caught here: one string of comma-separated tags (the registry
        refuses commas; its other limits it reports itself)."""
        for tag in value:
            if not tag or "," in tag:
                raise ValueError(f"{tag!r}: each tag is one non-empty string without commas")
        return value

    @property
    def check_type(self) -> CheckType:
        """The registry's kind of check for this instance (``http`` when none is named)."""
        return CheckType.HTTP if self.check is None else self.check.type

    def to_payload(self) -> dict[str, Any]:
        """The JSON body to send; an unset ``load_percentage`` or ``check``, and no tags,
        are left out (so an untagged registration is what it was before tags)."""
        payload = self.model_dump(mode="json", exclude_none=True)
        if not self.tags:
            del payload["tags"]
        return payload


class InstanceStatus(StrEnum):
    """An instance's health as the registry's probes see it."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"  # registered, not yet probed enough to say


class ServiceInstance(BaseModel):
    """One registered instance, as rendered by the registry's read endpoints.

    Frozen, so the discovery cache can hand the same objects to every caller
    without one caller's change leaking into another's answer.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    service_name: str
    instance_id: str
    host: str
    port: int
    health_endpoint: str = "/health"
    status: InstanceStatus = InstanceStatus.UNKNOWN
    last_health_check: datetime | None = None
    last_heartbeat: datetime | None = None
    load_percentage: float = 0.0
    metadata: dict[str, str] = Field(default_factory=dict)
    # Only a tagged instance's JSON has them (and only newer registries'): empty otherwise.
    tags: tuple[str, ...] = ()
    registered_at: datetime | None = None
    # Newer registries only; absent (None) from an older one's answers.
    check: HealthCheck | None = None
    maintenance: Maintenance | None = None

    @field_serializer("last_health_check", "last_heartbeat", "registered_at")
    def _serialize_timestamp(self, value: datetime | None) -> str | None:
        return None if value is None else _iso_z(value)

    @property
    def is_healthy(self) -> bool:
        """True when the registry's last verdict on this instance is ``healthy``."""
        return self.status is InstanceStatus.HEALTHY

    @property
    def in_maintenance(self) -> bool:
        """True while the instance is in maintenance (see ``set_maintenance``)."""
        return self.maintenance is not None

    @property
    def address(self) -> str:
        """``host:port``, with an IPv6 host in brackets (usable in a URL)."""
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://host:port`` of this instance, ready for an HTTP client."""
        return f"http://{self.address}"


class ServiceInstanceList(list[ServiceInstance]):
    """The list :meth:`~service_discovery.ServiceDiscoveryClient.discover_services` returns.

    A plain list of :class:`ServiceInstance` (so existing code that iterates or
    indexes keeps working) that also says where it came from:

    * ``stale``: True when the registry could not be reached and this is the
      last good answer from the cache (check it if acting on an outdated list
      matters to you; a warning is logged too).
    * ``discovery_index``: the registry's ``X-Discovery-Index`` for the answer, if known.
    * ``age_seconds``: how long ago the registry produced this answer (0 for a
      fresh one).
    """

    stale: bool
    discovery_index: int | None
    age_seconds: float

    def __init__(
        self,
        instances: Iterable[ServiceInstance] = (),
        *,
        stale: bool = False,
        discovery_index: int | None = None,
        age_seconds: float = 0.0,
    ) -> None:
        super().__init__(instances)
        self.stale = stale
        self.discovery_index = discovery_index
        self.age_seconds = age_seconds

    def copy_with(self, *, stale: bool, age_seconds: float) -> ServiceInstanceList:
        """A new list (callers may mutate theirs) with the same instances and index."""
        return ServiceInstanceList(
            self, stale=stale, discovery_index=self.discovery_index, age_seconds=age_seconds
        )

    def __repr__(self) -> str:
        return (
            f"ServiceInstanceList({list.__repr__(self)}, stale={self.stale}, "
            f"discovery_index={self.discovery_index}, age_seconds={self.age_seconds:.3f})"
        )


class HealthStatus(StrEnum):
    """Overall verdict of a :class:`HealthCheckResult`.

    The registry's probe passes on ``healthy`` and fails on ``unhealthy``.
    """

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class CheckStatus(StrEnum):
    """Outcome of one named custom check."""

    PASS = "pass"
    FAIL = "fail"


class CustomCheckResult(BaseModel):
    """One entry of ``custom_checks``: did the check pass, why not, how long it took.

    ``critical`` is ``False`` for a check whose failure is reported but does not
    make the instance unhealthy.
    """

    status: CheckStatus
    message: str | None = None
    duration_ms: float = 0.0
    critical: bool = True


class HealthCheckResult(BaseModel):
    """The body a service's ``GET /health`` returns (the seed's shape).

    ``status`` is ``unhealthy`` as soon as one critical custom check fails; the failing
    check's entry in ``custom_checks`` says why. ``load_percentage`` (0..1) is
    read by the registry's probe and becomes the instance's reported load, which
    :meth:`~service_discovery.ServiceDiscoveryClient.pick` balances on.
    """

    status: HealthStatus
    service: str
    timestamp: datetime
    uptime_seconds: float
    load_percentage: float = Field(ge=0.0, le=1.0)
    custom_checks: dict[str, CustomCheckResult] = Field(default_factory=dict)

    @field_serializer("timestamp")
    def _serialize_timestamp(self, value: datetime) -> str:
        return _iso_z(value)

    @property
    def failed_checks(self) -> list[str]:
        """Names of the checks that failed (critical or not), in the order they were added."""
        return [name for name, r in self.custom_checks.items() if r.status is CheckStatus.FAIL]

    @property
    def http_status(self) -> int:
        """200 when healthy, 503 when not (what the HTTP integrations answer)."""
        return 200 if self.status is HealthStatus.HEALTHY else 503


class RegistrationFields(TypedDict):
    """A :class:`ServiceRegistrationRequest`'s fields as keyword arguments.

    Typed once here for every method that takes them (``register_service``,
    ``registered``); a field left out takes the request's default.
    """

    service_name: str
    instance_id: str
    host: str
    port: int
    health_endpoint: NotRequired[str]
    metadata: NotRequired[Mapping[str, str] | None]
    tags: NotRequired[Iterable[str] | None]
    load_percentage: NotRequired[float | None]
    check: NotRequired[HealthCheck | str | Mapping[str, Any] | None]


def registration_from_arguments(
    request: ServiceRegistrationRequest | None, fields: Mapping[str, Any]
) -> ServiceRegistrationRequest:
    """Accept either a request object or its fields, never both, never neither."""
    if request is not None:
        if fields:
            raise TypeError("pass a ServiceRegistrationRequest or keyword fields, not both")
        if not isinstance(request, ServiceRegistrationRequest):
            raise TypeError(f"expected a ServiceRegistrationRequest, got {type(request).__name__}")
        return request
    if not fields:
        raise TypeError("pass a ServiceRegistrationRequest or service_name=, instance_id=, ...")
    data = dict(fields)
    for optional in ("metadata", "tags"):
        if data.get(optional) is None:
            data.pop(optional, None)
    return ServiceRegistrationRequest(**data)
