"""Filters of a discovery query: metadata and tags that must match, statuses that may.

One :class:`DiscoveryFilter` is three things at once: the query string sent
(``?meta.version=1.0.0&tag=web&status=healthy``), part of the cache key (a filtered
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

__all__ = ["DiscoveryFilter", "QueryFilters", "StatusFilter", "TagFilter"]

StatusFilter = str | InstanceStatus | Iterable[str | InstanceStatus] | None
"""``status=``: one status, several (any may match), or ``None`` for all."""

TagFilter = str | Iterable[str] | None
"""``tags=``: one tag, several (every one must be carried), or ``None`` for any."""


class QueryFilters(TypedDict, total=False):
    """The filter keywords of ``discover_services`` (on both clients)."""

    metadata: Mapping[str, str] | None
    status: StatusFilter
    tags: TagFilter


@dataclass(frozen=True, slots=True)
class DiscoveryFilter:
    """A normalised, hashable filter: sorted metadata pairs, statuses and tags."""

    metadata: tuple[tuple[str, str], ...] = ()
    statuses: tuple[InstanceStatus, ...] = ()
    tags: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, metadata: Mapping[str, str] | None, status: StatusFilter, tags: TagFilter = None
    ) -> DiscoveryFilter:
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
        return cls(pairs, statuses, _tags(tags))

    def params(self) -> list[tuple[str, str]]:
        """The query parameters (httpx URL-encodes them)."""
        return (
            [(f"meta.{key}", value) for key, value in self.metadata]
            + [("tag", tag) for tag in self.tags]
            + [("status", status.value) for status in self.statuses]
        )

    def matches(self, instance: ServiceInstance) -> bool:
        if self.statuses and instance.status not in self.statuses:
            return False
        if not all(tag in instance.tags for tag in self.tags):
            return False
        return all(instance.metadata.get(key) == value for key, value in self.metadata)

    def apply(self, instances: ServiceInstanceList) -> ServiceInstanceList:
        """The answer with only the matching instances (the same list when no filter is set)."""
        if not self.metadata and not self.statuses and not self.tags:
            return instances
        kept = [i for i in instances if self.matches(i)]
        return ServiceInstanceList(
            kept,
            stale=instances.stale,
            discovery_index=instances.discovery_index,
            age_seconds=instances.age_seconds,
        )


NO_FILTER = DiscoveryFilter()


def _tags(tags: TagFilter) -> tuple[str, ...]:
    """The tags a filter asks for, sorted and distinct (the order asked in does not matter)."""
    wanted = [tags] if isinstance(tags, str) else list(tags or ())
    for tag in wanted:
        if not isinstance(tag, str) or not tag or "," in tag:
            raise ValidationError(
                f"tag filter {tag!r}: each tag must be a non-empty string without commas",
                details=[FieldError("tags", "non-empty strings without commas")],
                status_code=None,
            )
    return tuple(sorted(set(wanted)))
