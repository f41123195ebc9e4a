"""The read endpoints' bodies, rendered once per change and cached until then.

Kept apart from the state machine because it decides nothing: it turns the
current services into bytes, and forgets bytes when told what changed. A
cache is emptied whenever anything its bodies show changes, so a body still
found in one is current; `HttpApi`'s fast path relies on that. Filtered
bodies (`filters`) sit in caches of their own beside them, emptied on the
same occasions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

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
        self._global: dict[str, bytes] = {}
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

    def cache_of(self, scope: str | None) -> dict[str, bytes] | None:
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
        return self._cached(
            service.cache,
            service.filtered,
            "instances",
            only,
            lambda: instances_body(
                b'{"service_name":' + encode(name) + b',"instances":',
                _matching(service.sorted_instances(), only),
                b"}",
                self.wall_offset,
                share=only is None,
            ),
        )

    def healthy_instances(self, name: str, only: InstanceFilter | None = None) -> bytes:
        """Healthy instances not in maintenance: the ones to send traffic to."""
        service = self._services.get(name)
        if service is None:
            return b'{"service_name":' + encode(name) + b',"healthy_instances":[]}'
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

    def service_targets(self, name: str, only: InstanceFilter | None = None) -> bytes:
        service = self._services.get(name)
        if service is None:
            return b"[]"
        return self._cached(
            service.cache,
            service.filtered,
            "targets",
            only,
            lambda: targets_body(_matching(service.sorted_instances(), only), share=only is None),
        )

    def all_services(self, only: InstanceFilter | None = None) -> bytes:
        """Every service; filtered, only the services with an instance that matches."""
        services = self._services

        def render() -> bytes:
            groups = (
                (name, _matching(services[name].sorted_instances(), only))
                for name in sorted(services)
            )
            # One join over every fragment: no per-service copies of tens of
            # MiB in between (they would stay in the allocator once freed).
            return b"".join(_all_services_pieces(groups, self.wall_offset, only is not None))

        return self._cached(self._global, self._global_filtered, "services", only, render)

    def all_targets(self, only: InstanceFilter | None = None) -> bytes:
        services = self._services

        def render() -> bytes:
            groups = (
                target_group_json(instance)
                for name in sorted(services)
                for instance in _matching(services[name].sorted_instances(), only)
            )
            return b"[" + b",".join(groups) + b"]"

        return self._cached(self._global, self._global_filtered, "targets", only, render)

    def _cached(
        self,
        cache: dict[str, bytes],
        filtered: FilteredBodies,
        view: str,
        only: InstanceFilter | None,
        render: Callable[[], bytes],
    ) -> bytes:
        """The cached body of `view` (under `only`, when filtered), rendered when missing."""
        if only is None:
            body = cache.get(view)
            if body is None:
                body = cache[view] = render()
            return body
        body = filtered.get(view, only)
        if body is None:
            body = render()
            filtered.put(view, only, body, self.filter_cache)
        return body


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
