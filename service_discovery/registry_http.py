"""The asynchronous I/O of the registry exchange: its effects on ``httpx.AsyncClient``.

What to send and what an answer means is decided in
:mod:`~service_discovery.exchange`; this module only performs the effects,
with ``httpx.AsyncClient`` and an anyio-compatible sleep, so it runs on asyncio
and on trio. The synchronous client performs the same effects itself
(:class:`~service_discovery.SyncServiceDiscoveryClient`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import anyio
import httpx

from .config import ClientSettings
from .exchange import (
    INDEX_HEADER,
    USER_AGENT,
    Effect,
    RegistryCalls,
    Send,
    Stepper,
    Steps,
    json_or_none,
    path_segment,
)
from .heartbeat import SleepFn

__all__ = ["INDEX_HEADER", "RegistryHTTP", "json_or_none", "path_segment"]

T = TypeVar("T")


class RegistryHTTP:
    """Performs the exchange's effects on ``httpx.AsyncClient``.

    ``http_client`` is used as given (and not closed by :meth:`aclose`);
    without one, a client is created from ``transport``. Every request
    carries its own timeouts (see :func:`~service_discovery.exchange.attempt_timeout`),
    so a given client's timeout is not used.
    """

    def __init__(
        self,
        settings: ClientSettings,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: SleepFn | None = None,
    ) -> None:
        self.settings = settings
        self.calls = RegistryCalls(settings)
        self.sleep: SleepFn = sleep or anyio.sleep
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            transport=transport, timeout=settings.timeout, headers={"User-Agent": USER_AGENT}
        )
        # Watch streams get connections of their own (see `stream_http`), unless the
        # caller chose the client or its transport: then theirs is used for everything.
        self._streams_apart = http_client is None and transport is None
        self._stream_http: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        """The registry URL requests go to first (the last one that answered)."""
        return self.calls.url

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
        if self._stream_http is not None:
            await self._stream_http.aclose()

    async def run(self, steps: Steps[T]) -> T:
        """Perform every effect of ``steps`` and return what they return."""
        stepper: Stepper[T] = Stepper(steps)
        while (effect := stepper.effect()) is not None:
            try:
                stepper.settle(await self._perform(effect))
            except Exception as exc:
                stepper.fail(exc)
        return stepper.value  # type: ignore[no-any-return]

    async def _perform(self, effect: Effect) -> httpx.Response | None:
        if isinstance(effect, Send):
            return await self._http.request(effect.method, effect.url, **effect.options())
        await self.sleep(effect.seconds)
        return None

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client of every request but watch streams."""
        return self._http

    @property
    def stream_http(self) -> httpx.AsyncClient:
        """The HTTP client watch streams are opened with: each on a new connection.

        Why: an open stream holds its connection for as long as it lasts, so
        streams taken from the request pool would each take one of its
        connections (httpx's limit is 100) from the requests; and the
        registry serves a stream opened on a connection of its own for a
        fraction of the memory of one sent on a used connection (its
        docs/frontends.md, "Watch streams below hypercorn"). A client or
        transport given by the caller is used for streams too.
        """
        if not self._streams_apart:
            return self._http
        if self._stream_http is None:  # made on first use: most clients never watch
            self._stream_http = httpx.AsyncClient(
                timeout=self.settings.timeout,
                headers={"User-Agent": USER_AGENT},
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        return self._stream_http

    def headers(self) -> dict[str, str]:
        """The headers every request carries (the token), for watch streams."""
        return self.calls.headers()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        allow_status: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """One request (see :meth:`RegistryCalls.request`), for callers outside a client."""
        return await self.run(
            self.calls.request(method, path, json=json, allow_status=allow_status)
        )
