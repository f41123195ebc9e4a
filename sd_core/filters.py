"""Filters on the list endpoints: `?meta.<key>=<value>`, `?tag=<tag>` and `?status=<status>`.

What operators of Consul (`?filter=`, `?tag=`) and Eureka reach for first:
"the instances of this service in zone a", "everything tagged primary",
"everything unhealthy". Metadata and tag filters all have to match (a
narrowing, as Consul's tags are); status filters are alternatives
(`status=healthy&status=unknown`).

A filtered body is cached like an unfiltered one, once per index and filter,
but a client controls the filters, so what they may cost is bounded by
bytes, not by count: one registry-wide `FilterCache` holds at most
`filter_cache_bytes` of filtered bodies and of their keys (a key is the
client's query, which can be most of a 16 KiB head), least recently read
first out, and a read may name at most `max_filter_pairs` metadata pairs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from pydantic import TypeAdapter, ValidationError

from .errors import query_error
from .instance import Instance
from .models import MAX_TAGS, Tag
from .status import Status

META_PREFIX = "meta."
#: What a cached filtered body costs beyond its bytes and its key's text: the
#: entries in two dicts, the key's tuples and status set, the body's header
#: (tracemalloc and `sys.getsizeof` on CPython 3.11: about 550, rounded up).
ENTRY_OVERHEAD = 600
#: What each metadata pair of a key costs beyond its text: a tuple, two strings.
PAIR_OVERHEAD = 170
#: What each tag of a key costs beyond its text: a string's header and its tuple slot.
TAG_OVERHEAD = 60
_STATUSES = {status.value: status for status in Status}
_TAG = TypeAdapter[str](Tag)


def has_tags(instance_tags: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    """Whether an instance carries every tag in `wanted` (Consul's `?tag=`: a narrowing).

    One predicate for every API that filters by tag (ours and the Consul-style
    one), so they cannot disagree. Tags are few (at most 64): a scan beats a set.
    """
    return all(tag in instance_tags for tag in wanted)


class InstanceFilter(NamedTuple):
    """Which instances a read shows; hashable, so it keys the cache of filtered bodies."""

    metadata: tuple[tuple[str, str], ...]  # sorted, each must match
    statuses: frozenset[Status]  # any may match; empty means any status
    tags: tuple[str, ...] = ()  # sorted, each must be carried

    def matches(self, instance: Instance) -> bool:
        if self.statuses and instance.status not in self.statuses:
            return False
        if self.tags and not has_tags(instance.tags, self.tags):
            return False
        metadata = instance.metadata
        return all(metadata.get(key) == value for key, value in self.metadata)


def read_filter(pairs: Iterable[tuple[str, str]], max_pairs: int) -> InstanceFilter | None:
    """The filter a query's (key, value) pairs ask for; None when they ask for none.

    Other parameters are left alone (`index`, `wait`, and unknown ones, which
    reads have always ignored). A status outside the three, `meta.` with no
    key, more than `max_pairs` distinct metadata pairs, a tag that could not
    be registered, or more distinct tags than an instance can carry is a 422.
    """
    metadata: set[tuple[str, str]] = set()
    statuses: set[Status] = set()
    tags: set[str] = set()
    for key, value in pairs:
        if key == "status":
            status = _STATUSES.get(value)
            if status is None:
                raise query_error("status", "must be healthy, unhealthy or unknown")
            statuses.add(status)
        elif key == "tag":
            tags.add(_read_tag(value))
        elif key.startswith(META_PREFIX):
            name = key[len(META_PREFIX) :]
            if not name:
                raise query_error("meta", "needs a metadata key: meta.<key>=<value>")
            metadata.add((name, value))
    if len(metadata) > max_pairs:
        raise query_error("meta", f"at most {max_pairs} meta.<key>=<value> pairs in one read")
    if len(tags) > MAX_TAGS:
        raise query_error("tag", f"at most {MAX_TAGS} tags in one read (an instance has no more)")
    if not metadata and not statuses and not tags:
        return None
    return InstanceFilter(tuple(sorted(metadata)), frozenset(statuses), tuple(sorted(tags)))


def _read_tag(value: str) -> str:
    """A `?tag=` value, held to the rules of a registered tag: one that no instance
    can carry is a client's mistake, said as such rather than an empty answer."""
    try:
        return _TAG.validate_python(value)
    except ValidationError as error:
        message = error.errors()[0]["msg"].removeprefix("Value error, ")
        raise query_error("tag", message) from None


def entry_cost(key: InstanceFilter, body: bytes) -> int:
    """The bytes a cached filtered body is counted at: its body, its key, their overheads."""
    text = sum(len(name) + len(value) + PAIR_OVERHEAD for name, value in key.metadata)
    text += sum(len(tag) + TAG_OVERHEAD for tag in key.tags)
    return len(body) + text + ENTRY_OVERHEAD


_Entry = tuple["FilteredBodies", str, InstanceFilter]


class FilterCache:
    """The registry-wide budget of filtered bodies: every scope's and view's together.

    Counting over all views is what bounds a client: with a budget per view, a
    client naming many services would get one budget per service.
    """

    __slots__ = ("_order", "max_bytes", "used")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        # Least recently read first; values are what each entry is counted at.
        self._order: OrderedDict[_Entry, int] = OrderedDict()

    def touch(self, entry: _Entry) -> None:
        self._order.move_to_end(entry)

    def admit(self, entry: _Entry, cost: int) -> None:
        """Count a new entry in; evict the least recently read until the budget holds."""
        self._order[entry] = cost
        self.used += cost
        while self.used > self.max_bytes:
            (owner, view, key), evicted = self._order.popitem(last=False)
            self.used -= evicted
            owner.evict(view, key)

    def release(self, entry: _Entry) -> None:
        cost = self._order.pop(entry, None)
        if cost is not None:
            self.used -= cost

    def __len__(self) -> int:
        return len(self._order)


class FilteredBodies:
    """Filtered bodies of one scope (a service, or the global one), by view then filter.

    Emptied on the same occasions as the unfiltered cache beside it (see
    `Views`), so a body still found here is current. Counted against the
    registry's `FilterCache`, which is handed over with the first body kept.
    """

    __slots__ = ("_cache", "_views")

    def __init__(self) -> None:
        self._views: dict[str, dict[InstanceFilter, bytes]] = {}
        self._cache: FilterCache | None = None

    def get(self, view: str, key: InstanceFilter) -> bytes | None:
        bodies = self._views.get(view)
        if bodies is None:
            return None
        body = bodies.get(key)
        if body is not None and self._cache is not None:
            self._cache.touch((self, view, key))
        return body

    def put(self, view: str, key: InstanceFilter, body: bytes, cache: FilterCache) -> None:
        """Keep `body`, unless it alone is over the budget (it is then rendered per read)."""
        cost = entry_cost(key, body)
        if cost > cache.max_bytes:
            return
        self._cache = cache
        bodies = self._views.setdefault(view, {})
        if key in bodies:
            cache.release((self, view, key))
        bodies[key] = body
        cache.admit((self, view, key), cost)

    def evict(self, view: str, key: InstanceFilter) -> None:
        """The budget pushed this entry out (the cache has already uncounted it)."""
        bodies = self._views.get(view)
        if bodies is not None:
            bodies.pop(key, None)
            if not bodies:
                del self._views[view]

    def forget(self, *views: str) -> None:
        for view in views:
            bodies = self._views.pop(view, None)
            if bodies and self._cache is not None:
                for key in bodies:
                    self._cache.release((self, view, key))

    def clear(self) -> None:
        if self._views:
            self.forget(*list(self._views))

    def __len__(self) -> int:
        return sum(len(bodies) for bodies in self._views.values())
