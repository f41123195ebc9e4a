"""The registry exchange without I/O: what to send, and what an answer means.

Both clients (:class:`~service_discovery.ServiceDiscoveryClient` on
``httpx.AsyncClient`` and :class:`~service_discovery.SyncServiceDiscoveryClient`
on ``httpx.Client``) run the same logic, so the logic is written once here as
*steps*: generators that ``yield`` an effect (:class:`Send` one HTTP request,
or :class:`Sleep`) and receive its outcome (the ``httpx.Response``, or the
exception thrown back in). Each client only performs effects; a
:class:`Stepper` walks the generator for it. Steps compose with
``yield from``, so "register again when a read shows the registry restarted"
is one line inside a read, on both clients.

Everything that knows about paths, headers, the error body, failover between
registry URLs and the ``X-Discovery-Index`` header lives here.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from .config import ClientSettings
from .errors import RegistryUnavailableError, ServiceDiscoveryError, error_from_response
from .models import ServiceInstance, ServiceInstanceList

__all__ = [
    "INDEX_HEADER",
    "USER_AGENT",
    "Effect",
    "RegistryCalls",
    "Send",
    "Sleep",
    "Stepper",
    "Steps",
    "attempt_timeout",
    "index_of",
    "json_or_none",
    "path_segment",
]

T = TypeVar("T")

INDEX_HEADER = "X-Discovery-Index"
USER_AGENT = "service-discovery-python/0.1.0"
_INSTANCE_LIST = pydantic.TypeAdapter(list[ServiceInstance])
_FAILOVER_CODES = frozenset({"store_unavailable", "shutting_down"})

Params = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Send:
    """Send this request; the outcome is the ``httpx.Response`` (any status) or the error."""

    method: str
    url: str
    headers: Mapping[str, str]
    json: Mapping[str, Any] | None = None
    params: Params = ()
    timeout: float | httpx.Timeout | None = None  # None: the HTTP client's own

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client.request`` / ``AsyncClient.request``."""
        extra: dict[str, Any] = {"json": self.json, "headers": dict(self.headers)}
        if self.params:
            extra["params"] = list(self.params)
        if self.timeout is not None:
            extra["timeout"] = self.timeout
        return extra


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait this many seconds (on the client's clock, which tests replace); outcome ``None``."""

    seconds: float


Effect = Send | Sleep
Steps = Generator[Effect, Any, T]


@dataclass(slots=True)
class Stepper(Generic[T]):
    """Walks one :data:`Steps` generator for a client that performs its effects.

    ``effect()`` gives the next effect to perform, or ``None`` once the steps
    returned (their value is then in :attr:`value`); the client reports each
    outcome with :meth:`settle` (or :meth:`fail` for an exception, which is
    thrown into the steps, where it may be handled or come back out).
    """

    steps: Steps[T]
    value: Any = None
    _outcome: Any = None
    _error: BaseException | None = field(default=None)

    def effect(self) -> Effect | None:
        error, self._error = self._error, None
        try:
            if error is not None:
                return self.steps.throw(error)
            return self.steps.send(self._outcome)
        except StopIteration as stop:
            self.value = stop.value
            return None

    def settle(self, outcome: Any) -> None:
        self._outcome = outcome

    def fail(self, error: BaseException) -> None:
        self._error = error


class RegistryCalls:
    """Requests to the registry with its token, failover between URLs, answers mapped.

    Holds the only state of the exchange: which registry URL answered last
    (tried first next time).
    """

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._active = 0  # index in settings.urls of the URL tried first

    @property
    def url(self) -> str:
        """The registry URL requests go to first (the last one that answered)."""
        return self._settings.urls[self._active]

    def move_on(self) -> None:
        """A connection made outside :meth:`request` (a watch stream) failed: try the
        next URL first from now on, so a reconnect goes to another registry node."""
        self._active = (self._active + 1) % len(self._settings.urls)

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._settings.secret is not None:
            headers["Authorization"] = f"Bearer {self._settings.secret}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Params = (),
        read_timeout: float | None = None,
        allow_status: frozenset[int] = frozenset(),
    ) -> Steps[httpx.Response]:
        """Send one request; return the 2xx response or raise the matching error.

        Any httpx request error (connection, timeout, protocol) becomes
        :class:`RegistryUnavailableError` with the httpx error as its cause.

        With several registry URLs, a request that could not be served by one
        (a request error, ``503 store_unavailable``, ``503 shutting_down``) is
        sent to the next. While a next URL remains, each attempt is bounded by
        the settings' ``connect_timeout`` and ``attempt_timeout`` (see
        :func:`attempt_timeout`), so a hung node costs seconds, not the whole
        ``timeout``. The last node that answered anything, an error included,
        is tried first from then on: an answer proves that node alive, and a
        hung node must not be tried first again. When every URL failed, the
        last failure is raised. ``read_timeout`` is a blocking query's: it
        replaces the read timeout of every attempt.
        """
        urls = self._settings.urls
        last: RegistryUnavailableError | None = None
        for step in range(len(urls)):
            position = (self._active + step) % len(urls)
            timeout = attempt_timeout(self._settings, last=step == len(urls) - 1, read=read_timeout)
            send = Send(method, urls[position] + path, self.headers(), json, params, timeout)
            try:
                response = yield from _send_once(send, path, allow_status)
            except ServiceDiscoveryError as exc:
                if exc.status_code is not None:
                    self._active = position  # it answered (a 4xx, a 503): it is alive
                if not isinstance(exc, RegistryUnavailableError) or not _try_next_url(exc):
                    raise
                last = exc
                continue
            self._active = position
            return response
        assert last is not None
        raise last

    def catalog_index(
        self, *, params: Params = (), read_timeout: float | None = None
    ) -> Steps[int | None]:
        """The global index of ``GET /v1/discovery/services`` (it rises with any service's).

        Used only to block until something changed, against a registry without
        the watch stream; the body (every service) is not read.
        """
        response = yield from self.request(
            "GET", "/v1/discovery/services", params=params, read_timeout=read_timeout
        )
        return index_of(response)

    def fetch_instances(
        self,
        service_name: str,
        healthy_only: bool,
        *,
        params: Params = (),
        read_timeout: float | None = None,
    ) -> Steps[ServiceInstanceList]:
        """A service's instances; an unknown service is an empty list either way.

        An answer that is not an instance list counts as the registry being
        unavailable (it is most likely a proxy's page), so the cache's stale
        fallback applies to it.
        """
        suffix = "/healthy" if healthy_only else ""
        response = yield from self.request(
            "GET",
            f"/v1/discovery/services/{path_segment(service_name)}{suffix}",
            params=params,
            read_timeout=read_timeout,
            allow_status=frozenset() if healthy_only else frozenset({404}),
        )
        index = index_of(response)
        body = json_or_none(response)
        if response.status_code == 404:
            code = body.get("error") if isinstance(body, dict) else None
            if code != "service_not_found":
                raise error_from_response(404, body, fallback_message="not found")
            return ServiceInstanceList(discovery_index=index)
        field_name = "healthy_instances" if healthy_only else "instances"
        raw = body.get(field_name) if isinstance(body, dict) else None
        try:
            instances = _INSTANCE_LIST.validate_python(raw)
        except pydantic.ValidationError as exc:
            raise RegistryUnavailableError(
                f"The registry's answer for {service_name!r} is not an instance list: {exc}",
                status_code=response.status_code,
            ) from exc
        return ServiceInstanceList(instances, discovery_index=index)

    def fetch_all_services(self, params: Params = ()) -> Steps[dict[str, ServiceInstanceList]]:
        """Every service's instances (``GET /v1/discovery/services``), filtered by
        `params` (a filter's query: the registry leaves out services none match)."""
        response = yield from self.request("GET", "/v1/discovery/services", params=params)
        index = index_of(response)
        body = json_or_none(response)
        services = body.get("services") if isinstance(body, dict) else None
        if not isinstance(services, dict):
            raise RegistryUnavailableError("The registry's service map is malformed")
        try:
            return {
                name: ServiceInstanceList(
                    _INSTANCE_LIST.validate_python(items), discovery_index=index
                )
                for name, items in services.items()
            }
        except pydantic.ValidationError as exc:
            raise RegistryUnavailableError(
                f"The registry's service map is malformed: {exc}"
            ) from exc


def _send_once(send: Send, path: str, allow_status: frozenset[int]) -> Steps[httpx.Response]:
    try:
        response: httpx.Response = yield send
    except httpx.RequestError as exc:
        reason = str(exc) or type(exc).__name__
        base_url = send.url.removesuffix(path)
        raise RegistryUnavailableError(
            f"Cannot reach the service registry at {base_url}: {reason}"
        ) from exc
    if response.is_success or response.status_code in allow_status:
        return response
    raise error_from_response(
        response.status_code,
        json_or_none(response),
        fallback_message=(
            f"{send.method} {path} answered {response.status_code} {response.reason_phrase}"
        ),
    )


def attempt_timeout(
    settings: ClientSettings, *, last: bool, read: float | None = None
) -> httpx.Timeout:
    """The httpx timeout of one attempt on one registry URL.

    While another URL remains (``last`` False), a node gets
    ``connect_timeout`` to accept the connection and ``attempt_timeout`` for
    each write and read, so moving to the next URL takes at most about
    ``attempt_timeout``. The last URL tried (the only one, with a single
    URL) gets ``timeout``, as there is nowhere else to go. ``read`` (a
    blocking query or a watch stream, held by the registry on purpose)
    replaces the read timeout either way.
    """
    if last:
        return httpx.Timeout(settings.timeout, read=read or settings.timeout)
    return httpx.Timeout(
        settings.attempt_timeout,
        connect=settings.connect_timeout,
        read=read or settings.attempt_timeout,
        pool=settings.timeout,  # waiting for a free connection says nothing about the node
    )


def _try_next_url(error: RegistryUnavailableError) -> bool:
    """Whether another registry URL may serve what this one could not.

    Only failures that say nothing was done: no answer at all, or a 503 that
    names a node-local reason. Other 5xx and ``registry_full`` would answer
    the same from every node of a cluster.
    """
    if error.status_code is None:
        return True
    return error.status_code == 503 and error.code in _FAILOVER_CODES


def path_segment(value: str) -> str:
    """Quote a name for use as one URL path segment."""
    return quote(value, safe="")


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def index_of(response: httpx.Response) -> int | None:
    raw = response.headers.get(INDEX_HEADER)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None
