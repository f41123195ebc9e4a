"""Errors split by who is at fault, each carrying what the HTTP layer needs.

`RequestError` is the client's fault: it has a stable machine code and a status
hint, so both frontends answer with the one error body and never invent their
own. `DriverError` is the driver's fault (time going backwards, an impossible
transition): a bug in our code, never something a request can cause.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "DriverError",
    "FieldProblem",
    "RequestError",
]


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One failed field of a 422, named by its dotted path."""

    field: str
    message: str


class RequestError(Exception):
    """A request the registry refuses. Raising it guarantees nothing changed."""

    def __init__(
        self,
        code: str,
        status: int,
        message: str,
        *,
        details: tuple[FieldProblem, ...] = (),
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.details = details
        self.headers = headers


def query_error(field: str, message: str) -> RequestError:
    """A 422 for one bad query parameter: the one body every query parser raises."""
    return RequestError(
        "validation_error",
        422,
        f"Invalid query parameter: {field}",
        details=(FieldProblem(field, message),),
    )


def not_registered(service_name: str, instance_id: str) -> RequestError:
    return RequestError(
        "instance_not_found", 404, f"Instance {service_name}:{instance_id} is not registered"
    )


def registry_full(limit: int) -> RequestError:
    return RequestError(
        "registry_full", 503, f"The registry holds its maximum of {limit} instances"
    )


class DriverError(RuntimeError):
    """The code driving the core broke one of its rules; a bug, not bad input."""


class ConfigError(ValueError):
    """A configuration value is unusable; `name` is the setting to fix."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def status_not_reported() -> RequestError:
    """A heartbeat's `status` from an instance the registry probes: refused (422)."""
    return RequestError(
        "validation_error",
        422,
        "Invalid fields: status",
        details=(FieldProblem("status", "only instances with a ttl check report one"),),
    )
