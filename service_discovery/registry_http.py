"""The HTTP exchange with the registry: one request in, a typed answer or an exception out.

Everything that knows about paths, headers, the error body and the
``X-Discovery-Index`` header lives here, so the client above it deals only in
registrations, instance lists and :mod:`~service_discovery.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
import pydantic

from .config import ClientSettings
from .errors import RegistryUnavailableError, error_from_response
from .models import ServiceInstance, ServiceInstanceList

__all__ = ["INDEX_HEADER", "RegistryHTTP"]

INDEX_HEADER = "X-Discovery-Index"
_USER_AGENT = "service-discovery-python/0.1.0"
_INSTANCE_LIST = pydantic.TypeAdapter(list[ServiceInstance])


class RegistryHTTP:
    """Sends requests to one registry with its token and maps its answers.

    ``http_client`` is used as given (and not closed by :meth:`aclose`);
    without one, a client is created from ``transport`` and ``timeout``.
    """

    def __init__(
        self,
        settings: ClientSettings,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float | httpx.Timeout = 10.0,
    ) -> None:
        self._settings = settings
        self._active = 0  # index in settings.urls of the URL tried first
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            transport=transport, timeout=timeout, headers={"User-Agent": _USER_AGENT}
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._settings.secret is not None:
            headers["Authorization"] = f"Bearer {self._settings.secret}"
        return headers

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client (watch streams use it directly)."""
        return self._http

    @property
    def url(self) -> str:
        """The registry URL requests go to first (the last one that answered)."""
        return self._settings.urls[self._active]

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        http_timeout: float | httpx.Timeout | None = None,
        allow_status: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """Send one request; return the 2xx response or raise the matching error.

        Any httpx request error (connection, timeout, protocol) becomes
        :class:`RegistryUnavailableError` with the httpx error as its cause.

        With several registry URLs, a request that could not be served by one
        (a request error, ``503 store_unavailable``, ``503 shutting_down``) is
        sent to the next, and the one that answered is tried first from then
        on. When every URL failed, the last failure is raised.
        """
        urls = self._settings.urls
        last: RegistryUnavailableError | None = None
        for step in range(len(urls)):
            position = (self._active + step) % len(urls)
            try:
                response = await self._send_once(
                    urls[position], method, path, json, params, http_timeout, allow_status
                )
            except RegistryUnavailableError as exc:
                if not _try_next_url(exc):
                    raise
                last = exc
                continue
            self._active = position
            return response
        assert last is not None
        raise last

    async def _send_once(
        self,
        base_url: str,
        method: str,
        path: str,
        json: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        http_timeout: float | httpx.Timeout | None,
        allow_status: frozenset[int],
    ) -> httpx.Response:
        extra: dict[str, Any] = {}
        if http_timeout is not None:
            extra["timeout"] = http_timeout
        try:
            response = await self._http.request(
                method,
                base_url + path,
                json=json,
                params=params,
                headers=self.headers(),
                **extra,
            )
        except httpx.RequestError as exc:
            reason = str(exc) or type(exc).__name__
            raise RegistryUnavailableError(
                f"Cannot reach the service registry at {base_url}: {reason}"
            ) from exc
        if response.is_success or response.status_code in allow_status:
            return response
        raise error_from_response(
            response.status_code,
            json_or_none(response),
            fallback_message=(
                f"{method} {path} answered {response.status_code} {response.reason_phrase}"
            ),
        )

    async def fetch_instances(
        self,
        service_name: str,
        healthy_only: bool,
        *,
        params: Mapping[str, str] | None = None,
        http_timeout: float | httpx.Timeout | None = None,
    ) -> ServiceInstanceList:
        """A service's instances; an unknown service is an empty list either way.

        An answer that is not an instance list counts as the registry being
        unavailable (it is most likely a proxy's page), so the cache's stale
        fallback applies to it.
        """
        suffix = "/healthy" if healthy_only else ""
        response = await self.request(
            "GET",
            f"/v1/discovery/services/{path_segment(service_name)}{suffix}",
            params=params,
            http_timeout=http_timeout,
            allow_status=frozenset() if healthy_only else frozenset({404}),
        )
        index = index_of(response)
        body = json_or_none(response)
        if response.status_code == 404:
            code = body.get("error") if isinstance(body, dict) else None
            if code != "service_not_found":
                raise error_from_response(404, body, fallback_message="not found")
            return ServiceInstanceList(discovery_index=index)
        field = "healthy_instances" if healthy_only else "instances"
        raw = body.get(field) if isinstance(body, dict) else None
        try:
            instances = _INSTANCE_LIST.validate_python(raw)
        except pydantic.ValidationError as exc:
            raise RegistryUnavailableError(
                f"The registry's answer for {service_name!r} is not an instance list: {exc}",
                status_code=response.status_code,
            ) from exc
        return ServiceInstanceList(instances, discovery_index=index)

    async def fetch_all_services(self) -> dict[str, ServiceInstanceList]:
        """Every service's instances (``GET /v1/discovery/services``)."""
        response = await self.request("GET", "/v1/discovery/services")
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


_FAILOVER_CODES = frozenset({"store_unavailable", "shutting_down"})


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
