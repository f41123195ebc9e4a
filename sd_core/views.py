"""The read endpoints' bodies, rendered once per change and cached until then.

Kept apart from the state machine because it decides nothing: it turns the
current services into bytes, and forgets bytes when told what changed. A
cache is emptied whenever anything its bodies show changes, so a body still
found in one is current; `HttpApi`'s fast path relies on that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .instance import Instance
from .render import encode, instance_json, join_instances, join_target_groups, target_group_json
from .service import Service
from .status import Status


class Views:
    """Bodies by view: per service (`instances`, `healthy`, `targets`) and global."""

    __slots__ = ("_global", "_services", "wall_offset")

    def __init__(self, services: Mapping[str, Service], wall_offset: float) -> None:
        """`services` is the registry's own mapping, read live."""
        self._services = services
        self.wall_offset = wall_offset
        self._global: dict[str, bytes] = {}

    # ------------------------------------------------------ invalidation

    def index_raised(self, service: Service) -> None:
        """Forget everything that shows `service`: its index is in every header."""
        service.cache.clear()
        self._global.clear()

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
            self._global.clear()
            return
        if cache:
            cache.pop("instances", None)
            cache.pop("healthy", None)
        self._global.pop("services", None)

    def cache_of(self, scope: str | None) -> dict[str, bytes] | None:
        """The cache of rendered bodies for a service (None: the global one). Read-only."""
        if scope is None:
            return self._global
        service = self._services.get(scope)
        return service.cache if service is not None else None

    # ------------------------------------------------------------ bodies

    def service_instances(self, name: str) -> bytes | None:
        """`{"service_name", "instances"}` or None when the service is unknown."""
        service = self._services.get(name)
        if service is None:
            return None
        body = service.cache.get("instances")
        if body is None:
            body = (
                b'{"service_name":'
                + encode(name)
                + b',"instances":'
                + join_instances(service.sorted_instances(), self.wall_offset)
                + b"}"
            )
            service.cache["instances"] = body
        return body

    def healthy_instances(self, name: str) -> bytes:
        service = self._services.get(name)
        if service is None:
            return b'{"service_name":' + encode(name) + b',"healthy_instances":[]}'
        body = service.cache.get("healthy")
        if body is None:
            healthy = [i for i in service.sorted_instances() if i.status == Status.HEALTHY]
            body = (
                b'{"service_name":'
                + encode(name)
                + b',"healthy_instances":'
                + join_instances(healthy, self.wall_offset)
                + b"}"
            )
            service.cache["healthy"] = body
        return body

    def service_targets(self, name: str) -> bytes:
        service = self._services.get(name)
        if service is None:
            return b"[]"
        body = service.cache.get("targets")
        if body is None:
            body = join_target_groups(service.sorted_instances())
            service.cache["targets"] = body
        return body

    def all_services(self) -> bytes:
        body = self._global.get("services")
        if body is None:
            # One join over every fragment: no per-service copies of tens of
            # MiB in between (they would stay in the allocator once freed).
            body = b"".join(_all_services_pieces(self._services, self.wall_offset))
            self._global["services"] = body
        return body

    def all_targets(self) -> bytes:
        body = self._global.get("targets")
        if body is None:
            services = self._services
            groups = (
                target_group_json(instance)
                for name in sorted(services)
                for instance in services[name].sorted_instances()
            )
            body = b"[" + b",".join(groups) + b"]"
            self._global["targets"] = body
        return body


def _all_services_pieces(services: Mapping[str, Service], offset: float) -> Iterator[bytes]:
    yield b'{"services":{'
    for number, name in enumerate(sorted(services)):
        yield (b',"' if number else b'"') + encode(name)[1:] + b":["
        for position, instance in enumerate(services[name].sorted_instances()):
            if position:
                yield b","
            yield instance_json(instance, offset)
        yield b"]"
    yield b"}}"
