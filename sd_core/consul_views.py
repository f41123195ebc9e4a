"""Consul's read bodies, rendered once per change and cached beside our own.

Bodies go into the same caches as our own views (`Views`: a service's cache,
the global one, the byte-bounded cache of filtered bodies), under views of
their own (`consul.*`), so they are dropped on exactly the same changes and a
Consul read of an unchanged service costs what our own read costs. A read
with `?passing` or `?tag=` is a filtered body: the client picks the tags, so
it is counted against `SERVICE_DISCOVERY_FILTER_CACHE_BYTES` like our own
filters.

Consul's dialect is five modules beside `http_api.py`, not a folder of its
own: `HttpApi` routes and authorises these reads like its own, so the two are
one floor (a folder would import the core and be imported by it). The others:
`consul_checks` (status to Consul checks), `consul_shapes` (one instance's
JSON), `consul_query` (Consul's query parameters), `consul_routes` (paths,
the 405 of Consul's writes, `/v1/agent/self`).
"""

from __future__ import annotations

from collections.abc import Callable

from .body import Body
from .consul_checks import STATES, WARNING, passing
from .consul_query import ConsulQuery
from .consul_shapes import catalog_entry, checks_json, health_entry
from .filters import InstanceFilter, has_tags
from .instance import Instance
from .render import encode
from .service import Service
from .status import Status
from .views import Views

HEALTH = "consul.health"
CATALOG = "consul.catalog"
SERVICES = "consul.services"
STATE = "consul.state."
#: Instance -> its encoded entry, for one datacenter.
_Entry = Callable[[Instance, str], bytes]


def _filter_key(query: ConsulQuery) -> InstanceFilter:
    """The cache key of a filtered Consul body (only ever used under `consul.*` views).

    The filter cache counts the tags' bytes like any client-chosen filter;
    `passing` is told apart by a status set.
    """
    statuses = frozenset({Status.HEALTHY}) if query.passing else frozenset()
    return InstanceFilter((), statuses, query.tags)  # already sorted and distinct


class ConsulViews:
    """The Consul bodies of a registry's `Views`, for one datacenter."""

    __slots__ = ("datacenter", "views")

    def __init__(self, views: Views, datacenter: str) -> None:
        self.views = views
        self.datacenter = datacenter

    def body(self, view: str, name: str | None, query: ConsulQuery) -> Body:
        """The body of `view`: HEALTH or CATALOG of service `name`, SERVICES, or
        STATE + a state (one of `checks.STATES`)."""
        if view == SERVICES:
            return self.catalog_services()
        if view.startswith(STATE):
            return self.health_state(view[len(STATE) :])
        assert name is not None  # HEALTH and CATALOG are a service's
        return self.service(name, query, view)

    def service(self, name: str, query: ConsulQuery, view: str) -> Body:
        """`/v1/health/service/<name>` (`view` HEALTH: every instance, or the passing ones,
        with its checks) or `/v1/catalog/service/<name>` (CATALOG: every instance)."""
        if view == HEALTH:
            return self._service_list(name, query, HEALTH, health_entry, query.passing)
        return self._service_list(name, query, CATALOG, catalog_entry, False)

    def catalog_services(self) -> Body:
        """`/v1/catalog/services`: each service's name and the union of its tags."""
        cache = self.views.cache_of(None)
        assert cache is not None  # the global cache always exists
        body = cache.get(SERVICES)
        if body is None:
            services = self.views.services
            listed: dict[str, list[str]] = {}
            for name in sorted(services):
                tags: dict[str, None] = {}
                for instance in services[name].sorted_instances():
                    tags.update(dict.fromkeys(instance.tags))
                listed[name] = list(tags)
            body = cache[SERVICES] = encode(listed)
        return body

    def health_state(self, state: str) -> Body:
        """`/v1/health/state/<state>`: every check in that state (`any`: every check)."""
        assert state in STATES
        if state == WARNING:  # no check of ours is ever in it: no walk of the fleet
            return b"[]"
        cache = self.views.cache_of(None)
        assert cache is not None
        view = STATE + state
        body = cache.get(view)
        if body is None:
            wanted = None if state == "any" else state
            services = self.views.services
            checks = [
                check
                for name in sorted(services)
                for instance in services[name].sorted_instances()
                for check in checks_json(instance, wanted)
            ]
            body = cache[view] = b"[" + b",".join(checks) + b"]"
        return body

    def _service_list(
        self, name: str, query: ConsulQuery, view: str, entry: _Entry, only_passing: bool
    ) -> Body:
        service = self.views.services.get(name)
        if service is None or query.no_node:
            return b"[]"
        tags = query.tags
        if not tags and not only_passing:
            body = service.cache.get(view)
            if body is None:
                body = service.cache[view] = self._render(service, entry, tags, False)
            return body
        key = _filter_key(query)
        body = service.filtered.get(view, key)
        if body is None:
            body = self._render(service, entry, tags, only_passing)
            service.filtered.put(view, key, body, self.views.filter_cache)
        return body

    def _render(
        self, service: Service, entry: _Entry, tags: tuple[str, ...], only_passing: bool
    ) -> bytes:
        datacenter = self.datacenter
        return (
            b"["
            + b",".join(
                entry(instance, datacenter)
                for instance in service.sorted_instances()
                if (not only_passing or passing(instance)) and has_tags(instance.tags, tags)
            )
            + b"]"
        )
