"""Request and response shapes, as pydantic models.

The same models validate requests in the core and generate `/openapi.json`,
so the published schema cannot drift from what the registry accepts. Types are
strict: `"8080"` is not a port; a registry that silently converts input hides
client bugs until they bite elsewhere.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "HeartbeatRequest",
    "RegisterRequest",
]


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# C0 and C1 control characters (C1 includes NEL, a line break to str.splitlines).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BAD_PATH_CHAR = re.compile(r"[\s\x00-\x1f\x7f-\x9f#]")

MAX_METADATA_ENTRIES = 64
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 1024
MAX_HEALTH_ENDPOINT = 2048
# Consul's consumers route by tags (Traefik `traefik.*`, Fabio `urlprefix-`); the
# Prometheus label joins them with commas, so a comma cannot be part of one.
MAX_TAGS = 64
MAX_TAG_BYTES = 256


def metadata_bytes(metadata: dict[str, str]) -> int:
    """What an instance's metadata weighs against `max_metadata_bytes`: its keys and
    values in UTF-8, the text every view repeats."""
    return sum(len(key.encode()) + len(value.encode()) for key, value in metadata.items())


def _misplaced_port_or_url(value: str) -> str | None:
    """What to send instead when a host is really a URL or `host:port` (a common slip)."""
    scheme, separator, rest = value.partition("://")
    if separator:
        bare = rest.split("/", 1)[0]
        if not bare.startswith("[") and bare.count(":") == 1:
            bare = bare.split(":")[0]
        return (
            f"is a URL ({scheme}://...); send only the host ({bare!r}), "
            "with the port in 'port' and the path in 'health_endpoint'"
        )
    name, _, port = value.rpartition(":")
    if port.isdigit() and name and ":" not in name:
        return f"is an address with a port; send host {name!r} and port {port} separately"
    return None


def _check_host(value: str) -> str:
    if value.startswith("[") and value.endswith("]"):
        try:
            ipaddress.IPv6Address(value[1:-1])
        except ValueError:
            raise ValueError("bracketed host must be an IPv6 address") from None
        return value
    if ":" in value:
        if "%" in value:
            raise ValueError("scoped IPv6 addresses (with %zone) are not supported")
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise ValueError(_misplaced_port_or_url(value) or "not a valid IPv6 address") from None
        return value
    if len(value) > 253 or not value:
        raise ValueError("hostname must be 1-253 characters")
    labels = value[:-1].split(".") if value.endswith(".") else value.split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError("must be an RFC 1123 hostname, an IPv4 address or an IPv6 address")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError("not a valid IPv4 address") from None
    return value


def _check_health_endpoint(value: str) -> str:
    if not value.startswith("/") or value.startswith("//"):
        raise ValueError("must be a path starting with a single '/'")
    if _BAD_PATH_CHAR.search(value):
        raise ValueError("must not contain whitespace, control characters or '#'")
    return value


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


ServiceName = Annotated[str, Field(pattern=NAME_PATTERN, description="1-128 of [A-Za-z0-9._-]")]
# Patterns for the published schema only (the validators above are the
# authority); close enough that schema-driven fuzzers generate valid values.
_NO_CONTROL = "[^\\u0000-\\u001f\\u007f-\\u009f]"
_LABEL = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_SCHEMA_PATTERN = (
    f"^(\\[[0-9A-Fa-f:.]{{2,45}}\\]|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*|{_LABEL}(\\.{_LABEL})*\\.?)$"
)
HEALTH_ENDPOINT_SCHEMA_PATTERN = (
    "^/([^/\\s#\\u0000-\\u001f\\u007f-\\u009f][^\\s#\\u0000-\\u001f\\u007f-\\u009f]*)?$"
)

Host = Annotated[
    str,
    Field(min_length=1, max_length=253, json_schema_extra={"pattern": HOST_SCHEMA_PATTERN}),
    AfterValidator(_check_host),
]
Port = Annotated[int, Field(ge=1, le=65535)]
HealthEndpoint = Annotated[
    str,
    Field(
        max_length=MAX_HEALTH_ENDPOINT,
        json_schema_extra={"pattern": HEALTH_ENDPOINT_SCHEMA_PATTERN},
    ),
    AfterValidator(_check_health_endpoint),
]
MetadataKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_METADATA_KEY,
        json_schema_extra={"pattern": f"^{_NO_CONTROL}+$"},
    ),
    AfterValidator(_no_control),
]
MetadataValue = Annotated[
    str,
    Field(max_length=MAX_METADATA_VALUE, json_schema_extra={"pattern": f"^{_NO_CONTROL}*$"}),
    AfterValidator(_no_control),
]


def _check_tag(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if len(value.encode()) > MAX_TAG_BYTES:
        raise ValueError(f"must be at most {MAX_TAG_BYTES} bytes in UTF-8")
    if "," in value:
        raise ValueError("must not contain a comma (the tags label joins tags with commas)")
    return _no_control(value)


Tag = Annotated[
    str,
    Field(min_length=1, json_schema_extra={"pattern": "^[^,\\u0000-\\u001f\\u007f-\\u009f]+$"}),
    AfterValidator(_check_tag),
]


def _unique_tags(tags: tuple[str, ...]) -> tuple[str, ...]:
    """Tags are a set to every consumer; keep the first of each, in the order given."""
    return tuple(dict.fromkeys(tags))


# Not strict as a container: snapshots and store records validate parsed JSON (a list).
Tags = Annotated[
    tuple[Tag, ...], Field(max_length=MAX_TAGS, strict=False), AfterValidator(_unique_tags)
]

# Per-entry rules on the key and value types, so a 422 names the entry
# (`metadata.version`), not just the whole map.
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=MAX_METADATA_ENTRIES)]
Load = Annotated[float, Field(ge=0.0, le=1.0)]
Status = Literal["healthy", "unhealthy", "unknown"]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


MAX_MAINTENANCE_REASON = 256

CheckTypeName = Literal["http", "tcp", "ttl"]


class CheckSpec(_Strict):
    """How the registry checks an instance's health (see `sd_core.checks`)."""

    type: CheckTypeName = Field(
        default="http",
        description="http: GET health_endpoint; tcp: a TCP connect; ttl: heartbeats report it",
    )


class RegisterRequest(_Strict):
    """Body of `POST /v1/discovery/register`; also the whole description of an instance."""

    service_name: ServiceName
    instance_id: ServiceName
    host: Host
    port: Port
    health_endpoint: HealthEndpoint = "/health"
    metadata: Metadata = Field(default_factory=dict)
    tags: Tags = Field(
        default=(),
        description="Labels consumers route by (Consul's tags): at most 64, each at most "
        "256 bytes, no commas; duplicates are dropped",
    )
    load_percentage: Load | None = None
    check: CheckSpec = Field(default_factory=CheckSpec)


class HeartbeatRequest(_Strict):
    """Body of `POST /v1/discovery/heartbeat`."""

    service_name: ServiceName
    instance_id: ServiceName
    load_percentage: Load | None = None
    status: Literal["healthy", "unhealthy"] | None = Field(
        default=None, description="Only for instances with a ttl check: the status they report"
    )


MaintenanceReason = Annotated[
    str,
    Field(max_length=MAX_MAINTENANCE_REASON, json_schema_extra={"pattern": f"^{_NO_CONTROL}*$"}),
    AfterValidator(_no_control),
]


class MaintenanceRequest(_Strict):
    """Body of `PUT /v1/discovery/maintenance/{service_name}/{instance_id}` (optional)."""

    reason: MaintenanceReason | None = None


class MaintenanceView(BaseModel):
    """An instance in maintenance: why (null when not given) and since when."""

    reason: str | None
    since: str


class InstanceView(BaseModel):
    """How every read endpoint renders one instance (for the schema)."""

    service_name: str
    instance_id: str
    host: str
    port: int
    health_endpoint: str
    status: Status
    last_health_check: str | None
    last_heartbeat: str
    load_percentage: float
    metadata: dict[str, str]
    tags: list[str] = Field(
        default_factory=list,
        description="Present only on a tagged instance: its tags, in the order registered",
    )
    registered_at: str
    check: CheckSpec
    maintenance: MaintenanceView | None


class SuccessResponse(BaseModel):
    success: Literal[True]
    message: str


class RegisterResponse(SuccessResponse):
    """What a registration answers: also the TTL, so a client can check that its
    heartbeat interval fits (`HttpApi.register_ok` writes it)."""

    ttl_seconds: float = Field(
        description="SERVICE_REGISTRATION_TTL_SECONDS: heartbeat well within it, or expire"
    )


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    success: Literal[False]
    error: str
    message: str
    details: list[ErrorDetail] | None = None


class ServicesResponse(BaseModel):
    services: dict[str, list[InstanceView]]


class ServiceResponse(BaseModel):
    service_name: str
    instances: list[InstanceView]


class HealthyResponse(BaseModel):
    service_name: str
    healthy_instances: list[InstanceView]


class TargetGroup(BaseModel):
    """One Prometheus HTTP SD target group."""

    targets: list[str]
    labels: dict[str, str]


class HealthResponse(BaseModel):
    status: str
    service: str
    load_percentage: float
    frontend: str
    version: str
    uptime_seconds: float
    instances: int
    services: int
    self_preservation: bool
    self_preservation_reason: str | None
