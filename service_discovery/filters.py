"""Filters of a discovery query: metadata that must match, statuses that may.

One :class:`DiscoveryFilter` is three things at once: the query string sent
(``?meta.version=1.0.0&status=healthy``), part of the cache key (a filtered
answer must never be served for an unfiltered question, or for another
filter), and a local check applied to every answer, so a registry too old to
know the filters (it ignores unknown query parameters) still gives the caller
only what was asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypedDict

from .errors import FieldError, ValidationError
from .models import InstanceStatus, ServiceInstance, ServiceInstanceList

__all__ = ["DiscoveryFilter", "QueryFilters", "StatusFilter"]

StatusFilter = str | InstanceStatus | Iterable[str | InstanceStatus] | None
"""``status=``: one status, several (any may match), or ``None`` for all."""


class QueryFilters(TypedDict, total=False):
    """The filter keywords of ``discover_services`` (on both clients)."""

    metadata: Mapping[str, str] | None
    status: StatusFilter


@dataclass(frozen=True, slots=True)
class DiscoveryFilter:
    """A normalised, hashable filter: sorted metadata pairs, sorted statuses."""

    metadata: tuple[tuple[str, str], ...] = ()
    statuses: tuple[InstanceStatus, ...] = ()

    @classmethod
    def of(cls, metadata: Mapping[str, str] | None, status: StatusFilter) -> DiscoveryFilter:
        """Check and normalise what a caller passed (bad values raise before sending)."""
        pairs = tuple(sorted((metadata or {}).items()))
        for key, value in pairs:
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise ValidationError(
                    f"metadata filter {key!r}={value!r}: keys and values must be strings "
                    "(keys not empty)",
                    details=[FieldError("metadata", "keys and values must be strings")],
                    status_code=None,
                )
        raw = [status] if isinstance(status, str) else list(status or ())
        try:
            statuses = tuple(sorted({InstanceStatus(s) for s in raw}))
        except ValueError as exc:
            allowed = ", ".join(s.value for s in InstanceStatus)
            raise ValidationError(
                f"status filter {status!r}: each status must be one of {allowed}",
                details=[FieldError("status", f"one of {allowed}")],
                status_code=None,
            ) from exc
        return cls(pairs, statuses)

    def params(self) -> list[tuple[str, str]]:
        """The query parameters (httpx URL-encodes them)."""
        return [(f"meta.{key}", value) for key, value in self.metadata] + [
            ("status", status.value) for status in self.statuses
        ]

    def matches(self, instance: ServiceInstance) -> bool:
        if self.statuses and instance.status not in self.statuses:
            return False
        return all(instance.metadata.get(key) == value for key, value in self.metadata)

    def apply(self, instances: ServiceInstanceList) -> ServiceInstanceList:
        """The answer with only the matching instances (the same list when no filter is set)."""
        if not self.metadata and not self.statuses:
            return instances
        kept = [i for i in instances if self.matches(i)]
        return ServiceInstanceList(
            kept,
            stale=instances.stale,
            discovery_index=instances.discovery_index,
            age_seconds=instances.age_seconds,
        )


NO_FILTER = DiscoveryFilter()
