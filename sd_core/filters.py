"""Filters on the list endpoints: `?meta.<key>=<value>` and `?status=<status>`.

What operators of Consul (`?filter=`, `?tag=`) and Eureka reach for first:
"the instances of this service in zone a", "everything unhealthy". Metadata
filters all have to match (a narrowing, like Consul's tags); status filters
are alternatives (`status=healthy&status=unknown`).

A filtered body is cached like an unfiltered one, once per index and filter,
but a client controls the filters, so each view keeps at most
`FILTERS_KEPT` of them (least recently used goes first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from .errors import query_error
from .instance import Instance
from .status import Status

META_PREFIX = "meta."
FILTERS_KEPT = 256
_STATUSES = {status.value: status for status in Status}


class InstanceFilter(NamedTuple):
    """Which instances a read shows; hashable, so it keys the cache of filtered bodies."""

    metadata: tuple[tuple[str, str], ...]  # sorted, each must match
    statuses: frozenset[Status]  # any may match; empty means any status

    def matches(self, instance: Instance) -> bool:
        if self.statuses and instance.status not in self.statuses:
            return False
        metadata = instance.metadata
        return all(metadata.get(key) == value for key, value in self.metadata)


def read_filter(pairs: Iterable[tuple[str, str]]) -> InstanceFilter | None:
    """The filter a query's (key, value) pairs ask for; None when they ask for none.

    Other parameters are left alone (`index`, `wait`, and unknown ones, which
    reads have always ignored). A status outside the three, or `meta.` with
    no key, is a 422.
    """
    metadata: set[tuple[str, str]] = set()
    statuses: set[Status] = set()
    for key, value in pairs:
        if key == "status":
            status = _STATUSES.get(value)
            if status is None:
                raise query_error("status", "must be healthy, unhealthy or unknown")
            statuses.add(status)
        elif key.startswith(META_PREFIX):
            name = key[len(META_PREFIX) :]
            if not name:
                raise query_error("meta", "needs a metadata key: meta.<key>=<value>")
            metadata.add((name, value))
    if not metadata and not statuses:
        return None
    return InstanceFilter(tuple(sorted(metadata)), frozenset(statuses))


class FilteredBodies:
    """Filtered bodies of one scope (a service, or the global one), by view then filter.

    Emptied on the same occasions as the unfiltered cache beside it (see
    `Views`), so a body still found here is current.
    """

    __slots__ = ("_views",)

    def __init__(self) -> None:
        self._views: dict[str, OrderedDict[InstanceFilter, bytes]] = {}

    def get(self, view: str, key: InstanceFilter) -> bytes | None:
        bodies = self._views.get(view)
        if bodies is None:
            return None
        body = bodies.get(key)
        if body is not None:
            bodies.move_to_end(key)
        return body

    def put(self, view: str, key: InstanceFilter, body: bytes) -> None:
        bodies = self._views.setdefault(view, OrderedDict())
        bodies[key] = body
        if len(bodies) > FILTERS_KEPT:
            bodies.popitem(last=False)

    def forget(self, *views: str) -> None:
        for view in views:
            self._views.pop(view, None)

    def clear(self) -> None:
        self._views.clear()

    def __len__(self) -> int:
        return sum(len(bodies) for bodies in self._views.values())
