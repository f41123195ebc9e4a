"""The read endpoints' bodies, rendered once per change and cached until then.

Kept apart from the state machine because it decides nothing: it turns the
current services into bytes, and forgets bytes when told what changed. A
cache is emptied whenever anything its bodies show changes, so a body still
found in one is current; `HttpApi`'s fast path relies on that. Filtered
bodies (`filters`) sit in caches of their own beside them, emptied on the
same occasions.

The global bodies and a service's `healthy` body show what the service's
`instances` and `targets` bodies already hold: unfiltered, they are built as
`body.Pieces`, views of those (rendered and cached first if missing), rather
than copies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import cast

from .body import Body, PiecesBuilder
from .filters import FilterCache, FilteredBodies, InstanceFilter
from .instance import Instance
from .render import (
    Fragment,
    encode,
    instance_json,
    instances_body,
    join_instances,
    target_group_json,
    targets_body,
)
from .service import Service
from .status import Status


class Views:
    """Bodies by view: per service (`instances`, `healthy`, `targets`) and global."""

    __slots__ = ("_global", "_global_filtered", "_services", "filter_cache", "wall_offset")

    def __init__(
        self,
        services: Mapping[str, Service],
        wall_offset: float,
        filter_cache_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        """`services` is the registry's own mapping, read live; `filter_cache_bytes`
        bounds the filtered bodies kept over every view (`filters.FilterCache`)."""
        self._services = services
        self.wall_offset = wall_offset
        self._global: dict[str, Body] = {}
        self._global_filtered = FilteredBodies()
        self.filter_cache = FilterCache(filter_cache_bytes)

    # ------------------------------------------------------ invalidation

    def index_raised(self, service: Service) -> None:
        """Forget everything that shows `service`: its index is in every header."""
        service.cache.clear()
        service.filtered.clear()
        self._global.clear()
        self._global_filtered.clear()

    def instance_changed(
        self, service: Service, instance: Instance, *, targets: bool, registration: bool = False
    ) -> None:
        """Forget what shows a changed instance; `targets`: its Prometheus labels changed.

        Target groups show no timestamps, so a heartbeat or a probe that
        changes neither status nor load leaves `/prometheus` cached.
        `registration`: it registered again, so metadata may have changed too.
        """
        instance.forget_rendered(targets=targets, registration=registration)
        cache = service.cache
        if targets:
            cache.clear()
            service.filtered.clear()
            self._global.clear()
            self._global_filtered.clear()
            return
        if cache:
            cache.pop("instances", None)
            cache.pop("healthy", None)
        service.filtered.forget("instances", "healthy")
        self._global.pop("services", None)
        self._global_filtered.forget("services")

    def cache_of(self, scope: str | None) -> dict[str, Body] | None:
        """The cache of rendered bodies for a service (None: the global one). Read-only."""
        if scope is None:
            return self._global
        service = self._services.get(scope)
        return service.cache if service is not None else None

    @property
    def services(self) -> Mapping[str, Service]:
        """The registry's services, read live (for renderings of other dialects). Read-only."""
        return self._services

    # ------------------------------------------------------------ bodies

    def service_instances(self, name: str, only: InstanceFilter | None = None) -> bytes | None:
        """`{"service_name", "instances"}` or None when the service is unknown."""
        service = self._services.get(name)
        if service is None:
            return None
        # Always `bytes`: this body is what the others are views of.
        return cast("bytes", self._cached(
            service.cache,
            service.filtered,
            "instances",
            only,
            lambda: instances_body(
                _instances_prefix(name),
                _matching(service.sorted_instances(), only),
                b"}",
                self.wall_offset,
                share=only is None,
            ),
        ))  # fmt: skip

    def healthy_instances(self, name: str, only: InstanceFilter | None = None) -> Body:
        """Healthy instances not in maintenance: the ones to send traffic to."""
        service = self._services.get(name)
        if service is None:
            return b'{"service_name":' + encode(name) + b',"healthy_instances":[]}'
        if only is None:
            return self._cached(
                service.cache, service.filtered, "healthy", None, lambda: self._healthy(service)
            )
        return self._cached(
            service.cache,
            service.filtered,
            "healthy",
            only,
            lambda: (
                b'{"service_name":'
                + encode(name)
                + b',"healthy_instances":'
                + join_instances(
                    (i for i in _matching(service.sorted_instances(), only) if _serving(i)),
                    self.wall_offset,
                )
                + b"}"
            ),
        )

    def _healthy(self, service: Service) -> Body:
        """The serving instances as runs of the service's `instances` body: each run of
        neighbours in it (the commas between them included) one slice."""
        name = service.name
        body = self.service_instances(name)
        assert body is not None
        built = PiecesBuilder()
        built.copy(b'{"service_name":' + encode(name) + b',"healthy_instances":[')
        position = len(_instances_prefix(name)) + 1  # the first fragment, after the `[`
        runs: list[tuple[int, int]] = []
        start = -1
        for instance in service.sorted_instances():
            size = len(instance_json(instance, self.wall_offset))
            if not _serving(instance):
                if start >= 0:
                    runs.append((start, position - 1))  # up to the comma before this one
                    start = -1
            elif start < 0:
                start = position
            position += size + 1
        if start >= 0:
            runs.append((start, position - 1))
        for run, (start, end) in enumerate(runs):
            if run:
                built.copy(b",")
            built.slice(body, start, end)
        built.copy(b"]}")
        return built.build()

    def service_targets(self, name: str, only: InstanceFilter | None = None) -> bytes:
        service = self._services.get(name)
        if service is None:
            return b"[]"
        return cast("bytes", self._cached(  # always `bytes`, as a service's instances body
            service.cache,
            service.filtered,
            "targets",
            only,
            lambda: targets_body(_matching(service.sorted_instances(), only), share=only is None),
        ))  # fmt: skip

    def all_services(self, only: InstanceFilter | None = None) -> Body:
        """Every service; filtered, only the services with an instance that matches."""
        services = self._services
        if only is None:
            return self._cached(self._global, self._global_filtered, "services", None, self._every)

        def render() -> bytes:
            groups = (
                (name, _matching(services[name].sorted_instances(), only))
                for name in sorted(services)
            )
            # One join over every fragment: no per-service copies of tens of
            # MiB in between (they would stay in the allocator once freed).
            return b"".join(_all_services_pieces(groups, self.wall_offset, only is not None))

        return self._cached(self._global, self._global_filtered, "services", only, render)

    def _every(self) -> Body:
        """Every service's instances array, a slice of its own cached `instances` body."""
        built = PiecesBuilder()
        built.copy(b'{"services":{')
        for position, name in enumerate(sorted(self._services)):
            body = self.service_instances(name)
            assert body is not None
            built.copy((b'"' if position == 0 else b',"') + encode(name)[1:] + b":")
            built.slice(body, len(_instances_prefix(name)), len(body) - 1)
        built.copy(b"}}")
        return built.build()

    def all_targets(self, only: InstanceFilter | None = None) -> Body:
        services = self._services
        if only is None:
            return self._cached(
                self._global, self._global_filtered, "targets", None, self._every_target
            )

        def render() -> bytes:
            groups = (
                target_group_json(instance)
                for name in sorted(services)
                for instance in _matching(services[name].sorted_instances(), only)
            )
            return b"[" + b",".join(groups) + b"]"

        return self._cached(self._global, self._global_filtered, "targets", only, render)

    def _every_target(self) -> Body:
        """Every service's target groups, a slice of its own cached `targets` body."""
        built = PiecesBuilder()
        built.copy(b"[")
        first = True
        for name in sorted(self._services):
            body = self.service_targets(name)
            if len(body) > 2:  # not `[]`
                if not first:
                    built.copy(b",")
                built.slice(body, 1, len(body) - 1)
                first = False
        built.copy(b"]")
        return built.build()

    def _cached(
        self,
        cache: dict[str, Body],
        filtered: FilteredBodies,
        view: str,
        only: InstanceFilter | None,
        render: Callable[[], Body],
    ) -> Body:
        """The cached body of `view` (under `only`, when filtered), rendered when missing."""
        if only is None:
            body = cache.get(view)
            if body is None:
                body = cache[view] = render()
            return body
        kept = filtered.get(view, only)
        if kept is None:
            rendered = render()
            assert isinstance(rendered, bytes)  # a filtered body shares nothing: it may go first
            kept = rendered
            filtered.put(view, only, kept, self.filter_cache)
        return kept


def _instances_prefix(name: str) -> bytes:
    """What a service's `instances` body holds before its array."""
    return b'{"service_name":' + encode(name) + b',"instances":'


def _serving(instance: Instance) -> bool:
    return instance.status == Status.HEALTHY and instance.maintenance is None


def _matching(instances: list[Instance], only: InstanceFilter | None) -> list[Instance]:
    return instances if only is None else [i for i in instances if only.matches(i)]


def _all_services_pieces(
    groups: Iterable[tuple[str, list[Instance]]], offset: float, skip_empty: bool
) -> Iterator[Fragment]:
    yield b'{"services":{'
    first = True
    for name, instances in groups:
        if skip_empty and not instances:
            continue
        yield (b'"' if first else b',"') + encode(name)[1:] + b":["
        first = False
        for position, instance in enumerate(instances):
            if position:
                yield b","
            yield instance_json(instance, offset)
        yield b"]"
    yield b"}}"
