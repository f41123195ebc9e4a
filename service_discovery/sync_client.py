"""The registry client for code that is not async: Flask, Django, scripts, cron jobs.

:class:`SyncServiceDiscoveryClient` is the synchronous twin of
:class:`~service_discovery.ServiceDiscoveryClient`: the same settings, models,
errors, cache, failover and heartbeat rules, because it runs the same
:class:`~service_discovery.client_core.ClientCore` steps. Only the I/O
differs: ``httpx.Client`` for requests, ``time.sleep`` for waits, and a
daemon thread for the heartbeat loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any, Self, TypeVar, Unpack

import httpx

from .client_core import ClientFacade, IOArguments, Name, Stay
from .exchange import USER_AGENT, Effect, Send, Stepper, Steps
from .filters import DiscoveryFilter, QueryFilters, TagFilter
from .models import (
    InstanceStatus,
    ServiceInstance,
    ServiceInstanceList,
    ServiceRegistrationRequest,
)
from .sigterm import Terminated, sigterm_leaves_block

__all__ = [
    "SyncServiceDiscoveryClient",
]

logger = logging.getLogger("service_discovery.client")

T = TypeVar("T")
SyncSleepFn = Callable[[float], Any]
_JOIN_TIMEOUT = 15.0  # a heartbeat request in flight finishes within the HTTP timeout


class _Stopped(BaseException):
    """Ends the heartbeat thread's steps; a BaseException so the steps cannot catch it."""


class SyncServiceDiscoveryClient(ClientFacade[httpx.BaseTransport, httpx.Client, "SyncSleepFn"]):
    """Talks to one registry on behalf of one service instance, without async.

    Takes the arguments of :class:`~service_discovery.ServiceDiscoveryClient`
    (``transport`` is an ``httpx.BaseTransport``, ``http_client`` an
    ``httpx.Client``, ``sleep`` a plain function) and offers the same calls,
    minus watching. The heartbeat runs in a daemon thread
    (:meth:`start_heartbeat` / :meth:`stop_heartbeat`, or ``with
    client.registered(...)``). One client may be shared by the threads of a
    web server.
    """

    def _open_io(self, io: IOArguments[httpx.BaseTransport, httpx.Client, SyncSleepFn]) -> None:
        self._owns_http = io.http_client is None
        self._http = io.http_client or httpx.Client(
            transport=io.transport, timeout=io.settings.timeout, headers={"User-Agent": USER_AGENT}
        )
        self._sleep: SyncSleepFn = io.sleep or time.sleep
        self._custom_sleep = io.sleep is not None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- I/O: the only thing this class adds to the shared core -----------------

    def _run(self, steps: Steps[T], *, stop: threading.Event | None = None) -> T:
        stepper: Stepper[T] = Stepper(steps)
        while (effect := stepper.effect()) is not None:
            try:
                stepper.settle(self._perform(effect, stop))
            except Exception as exc:
                stepper.fail(exc)
        return stepper.value  # type: ignore[no-any-return]

    def _perform(self, effect: Effect, stop: threading.Event | None) -> httpx.Response | None:
        if isinstance(effect, Send):
            return self._http.request(effect.method, effect.url, **effect.options())
        if stop is None:
            self._sleep(effect.seconds)
        elif self._custom_sleep:
            self._sleep(effect.seconds)  # a test's fake clock; then look at the flag
            if stop.is_set():
                raise _Stopped
        elif stop.wait(effect.seconds):  # a real wait that stop_heartbeat() cuts short
            raise _Stopped
        return None

    # -- configuration and lifecycle --------------------------------------------

    def close(self) -> None:
        """Stop the heartbeat thread (if any) and close the HTTP client we own.

        Does not unregister (call :meth:`unregister_service` first, or use
        :meth:`registered`).
        """
        self.stop_heartbeat()
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writes ----------------------------------------------------------------

    def register_service(
        self, request: ServiceRegistrationRequest | None = None, **fields: Any
    ) -> bool:
        """Register (or re-register) this instance: a request or its fields, as the async client."""
        return self._run(self._core.register(request, **fields))

    def send_heartbeat(
        self, load_percentage: float | None = None, *, status: InstanceStatus | str | None = None
    ) -> bool:
        """Send one heartbeat (``status`` only for a ``check="ttl"`` instance)."""
        return self._run(self._core.heartbeat(load_percentage, status))

    def report_status(self, status: InstanceStatus | str) -> bool:
        """Report a TTL-checked instance's health now and on every later heartbeat."""
        return self._run(self._core.report_status(status))

    def unregister_service(
        self, service_name: str | None = None, instance_id: str | None = None
    ) -> bool:
        """Remove an instance (by default the registered one); 404 raises ``NotFoundError``."""
        return self._run(self._core.unregister(service_name, instance_id))

    def set_maintenance(
        self, service_name: Name = None, instance_id: Name = None, *, reason: str = "maintenance"
    ) -> bool:
        """Put an instance (by default the registered one) in maintenance."""
        return self._run(self._core.maintenance(service_name, instance_id, reason))

    def clear_maintenance(
        self, service_name: str | None = None, instance_id: str | None = None
    ) -> bool:
        """End an instance's maintenance (a no-op when it is not in maintenance)."""
        return self._run(self._core.maintenance(service_name, instance_id, None))

    # -- heartbeats ------------------------------------------------------------

    def start_heartbeat(self, interval_seconds: float | None = None) -> None:
        """Heartbeat from a daemon thread until :meth:`stop_heartbeat` (or :meth:`close`).

        The loop is the async client's: registers first when the registration
        failed, registers again at once on a 404, backs off on errors, fits
        the interval to the registry's TTL and never raises.
        """
        if self.heartbeat_running:
            raise RuntimeError("the heartbeat thread is already running")
        steps = self._core.heartbeat_loop(interval_seconds)
        stop = self._stop = threading.Event()

        def run() -> None:
            with suppress(_Stopped):
                self._run(steps, stop=stop)

        self._thread = threading.Thread(target=run, name="service-discovery-heartbeat", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        """Stop the heartbeat thread and wait for it (no-op if none runs)."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(_JOIN_TIMEOUT)

    @property
    def heartbeat_running(self) -> bool:
        """True while the heartbeat thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def registered(
        self,
        request: ServiceRegistrationRequest | None = None,
        *,
        handle_sigterm: bool = True,
        **options: Any,
    ) -> AbstractContextManager[SyncServiceDiscoveryClient]:
        """``with client.registered(request, interval_seconds=None, drain_seconds=0):``.

        Registers (failures raise before the block), heartbeats from a thread
        during the block, and on exit stops the heartbeat, then (with
        ``drain_seconds``) keeps the instance in maintenance for that long,
        then unregisters (failures are logged, never raised). Takes a request
        or its fields, as the async client's ``registered``.

        SIGTERM (how Docker, Kubernetes and systemd stop a service) leaves the
        block too, on the main thread while SIGTERM has its default action:
        the block unregisters, then the process dies by SIGTERM as it would
        have (see :mod:`~service_discovery.sigterm`). ``handle_sigterm=False``
        leaves SIGTERM alone.
        """
        return self._registered(self._core.stay(request, options), handle_sigterm)

    @contextmanager
    def _registered(self, stay: Stay, handle_sigterm: bool) -> Iterator[SyncServiceDiscoveryClient]:
        if self.heartbeat_running:
            raise RuntimeError("a heartbeat thread is already running on this client")
        with sigterm_leaves_block(handle_sigterm) as leaving:
            try:
                self.register_service(stay.request)
            except Terminated:  # stopped while registering: the registry may have it
                leaving()
                self._run(self._core.leave(stay.request, 0.0))
                raise
            try:
                self.start_heartbeat(stay.interval_seconds)
                yield self
            finally:
                leaving()
                self.stop_heartbeat()
                self._run(self._core.leave(stay.request, stay.drain_seconds))

    # -- reads -----------------------------------------------------------------

    def discover_services(
        self, service_name: str, healthy_only: bool = True, **filters: Unpack[QueryFilters]
    ) -> ServiceInstanceList:
        """A service's instances, with the async client's cache, filters and stale fallback."""
        return self._run(self._core.discover(service_name, healthy_only, **filters))

    def get_all_services(self, *, tags: TagFilter = None) -> dict[str, ServiceInstanceList]:
        """Every registered instance of every service (not cached); with ``tags``,
        only the instances carrying every one, and only services that have some."""
        params = DiscoveryFilter.of(None, None, tags).params()
        return self._run(self._core.calls.fetch_all_services(params))

    def pick(
        self, service_name: str, *, exclude: Iterable[str | ServiceInstance] = ()
    ) -> ServiceInstance:
        """One healthy instance by the power of two choices (see the async client's ``pick``)."""
        instances = self.discover_services(service_name, healthy_only=True)
        return self._core.choose(service_name, instances, exclude)
