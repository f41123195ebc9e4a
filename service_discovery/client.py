"""The registry client services use: register, heartbeat, discover, watch, pick.

One :class:`ServiceDiscoveryClient` per process (or per registered instance).
It runs on asyncio and on trio: HTTP goes through ``httpx.AsyncClient`` and
waiting through anyio, both of which work on either loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack, overload

import anyio
import httpx

from .client_core import ClientFacade, IOArguments, Stay
from .errors import NoHealthyInstancesError
from .filters import DiscoveryFilter, QueryFilters, TagFilter
from .heartbeat import BackgroundHeartbeat, SleepFn, TaskStarter
from .models import (
    InstanceStatus,
    RegistrationFields,
    ServiceInstance,
    ServiceInstanceList,
    ServiceRegistrationRequest,
    check_name,
)
from .registry_http import RegistryHTTP
from .watch import Retrying, StreamUnsupported, http_connect, watch_instances, watch_stream

__all__ = [
    "ServiceDiscoveryClient",
]

logger = logging.getLogger("service_discovery.client")

_UNREGISTER_TIMEOUT = 5.0

T = TypeVar("T")


class ServiceDiscoveryClient(ClientFacade[httpx.AsyncBaseTransport, httpx.AsyncClient, SleepFn]):
    """Talks to one registry on behalf of one service instance.

    Arguments left out are read from the environment: ``SERVICE_DISCOVERY_URL``
    (default ``http://service-discovery:3004``), ``SERVICE_DISCOVERY_SECRET``,
    ``SERVICE_HEARTBEAT_INTERVAL`` (seconds, default 60). The URL must be
    ``http://`` or ``https://`` (anything else raises
    :class:`~service_discovery.ConfigurationError` here, not on every call);
    a comma-separated list names several registries, tried in turn when one
    cannot be reached or answers ``503 store_unavailable``/``shutting_down``.

    For tests, ``transport`` plugs in any ``httpx.AsyncBaseTransport`` (e.g.
    ``httpx.ASGITransport(app)`` or an in-process registry), ``http_client`` a
    whole ``httpx.AsyncClient`` (which the caller then owns and closes);
    ``sleep``, ``clock`` and ``rng`` replace the waiting, the monotonic clock
    and the randomness of the heartbeat loop, the watch loop and the cache, so
    a fake clock can drive them.

    The remaining options (``heartbeat_interval``, ``timeout``,
    ``attempt_timeout``, ``connect_timeout``, ``cache``, ``cache_ttl``,
    ``max_stale``, ``backoff``, ``clock``, ``rng``) are
    :class:`~service_discovery.client_core.CoreOptions`, shared with the
    synchronous client. With several URLs, a node gets ``connect_timeout``
    (1 s) to accept and ``attempt_timeout`` (2 s) to answer before the next
    one is tried; the last URL tried gets ``timeout`` (10 s), see
    :func:`~service_discovery.exchange.attempt_timeout`. ``cache`` (on by
    default) keeps each :meth:`discover_services` answer for
    ``cache_ttl`` seconds and serves the last good answer, marked ``stale``,
    while the registry is unreachable (for at most ``max_stale`` seconds;
    ``None`` means no limit).
    """

    def _open_io(
        self, io: IOArguments[httpx.AsyncBaseTransport, httpx.AsyncClient, SleepFn]
    ) -> None:
        self._registry = RegistryHTTP(
            self._core.settings,
            http_client=io.http_client,
            transport=io.transport,
            sleep=io.sleep,
        )
        # Watches use the registry's stream until it answers 404 (an older registry).
        self._stream_watches = True
        core = self._core
        self._retrying = Retrying(self._registry.sleep, core.clock, core.backoff, core.rng)
        self._heartbeat: BackgroundHeartbeat | None = None

    # -- lifecycle -------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the background heartbeat (if any) and close the HTTP client we own.

        Does not unregister: call :meth:`unregister_service` first if you want
        the instance gone at once rather than at its TTL.
        """
        await self.stop_heartbeat_loop()
        await self._registry.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- writes ----------------------------------------------------------------

    @overload
    async def register_service(self, request: ServiceRegistrationRequest) -> bool: ...

    @overload
    async def register_service(self, **fields: Unpack[RegistrationFields]) -> bool: ...

    async def register_service(
        self, request: ServiceRegistrationRequest | None = None, **fields: Any
    ) -> bool:
        """Register (or re-register) this instance.

        Takes a :class:`ServiceRegistrationRequest` or its fields as keyword
        arguments. Returns ``True`` (older code tests the result); every failure
        raises a :class:`ServiceDiscoveryError` subclass saying why.

        The request is remembered: heartbeats refer to it and the heartbeat loop
        replays it when the registry has forgotten the instance. It is also
        remembered when the registry was unreachable
        (:class:`RegistryUnavailableError`), so a service that starts before its
        registry can catch that error and start the heartbeat loop, which
        registers as soon as the registry answers.

        A warning in the registry's answer (it will not probe this address) is
        logged at WARNING; a ``ttl_seconds`` in it adjusts the heartbeat
        period when the configured one is too long for that TTL.
        """
        return await self._registry.run(self._core.register(request, **fields))

    async def send_heartbeat(
        self,
        load_percentage: float | None = None,
        *,
        status: InstanceStatus | str | None = None,
    ) -> bool:
        """Send one heartbeat for the registered instance (optionally with its load).

        ``status`` (``healthy``/``unhealthy``) is for an instance registered
        with ``check="ttl"``: it reports the instance's own verdict for this
        heartbeat only (see :meth:`report_status` to keep reporting it).
        Raises :class:`NotFoundError` when the registry does not know the
        instance (register again), and ``RuntimeError`` if nothing was
        registered through this client.
        """
        return await self._registry.run(self._core.heartbeat(load_percentage, status))

    async def report_status(self, status: InstanceStatus | str) -> bool:
        """Report a TTL-checked instance's own health: now, and on every later heartbeat.

        Only for an instance registered with ``check="ttl"`` (else ``ValueError``);
        ``status`` is ``"healthy"`` or ``"unhealthy"``. The heartbeat loop keeps
        sending the last reported status until another one is reported.
        """
        return await self._registry.run(self._core.report_status(status))

    async def unregister_service(
        self, service_name: str | None = None, instance_id: str | None = None
    ) -> bool:
        """Remove an instance (by default the one registered through this client).

        Raises :class:`NotFoundError` if the registry does not know it.
        """
        return await self._registry.run(self._core.unregister(service_name, instance_id))

    async def set_maintenance(
        self,
        service_name: str | None = None,
        instance_id: str | None = None,
        *,
        reason: str = "maintenance",
    ) -> bool:
        """Put an instance (by default the registered one) in maintenance.

        Healthy-only reads leave it out until :meth:`clear_maintenance`; it
        stays registered and keeps heartbeating. Repeating it is a no-op.
        Raises :class:`NotFoundError` for an unknown instance and
        :class:`NotSupportedError` when the registry is too old to know
        maintenance.
        """
        return await self._registry.run(self._core.maintenance(service_name, instance_id, reason))

    async def clear_maintenance(
        self, service_name: str | None = None, instance_id: str | None = None
    ) -> bool:
        """End an instance's maintenance (a no-op when it is not in maintenance)."""
        return await self._registry.run(self._core.maintenance(service_name, instance_id, None))

    # -- heartbeats ------------------------------------------------------------

    async def run_heartbeat_loop(self, interval_seconds: float | None = None) -> None:
        """Heartbeat forever, for those who run their own tasks; ends only when cancelled.

        Needs a prior :meth:`register_service` (which may have failed with
        :class:`RegistryUnavailableError`: the loop then registers first, retried
        with backoff). Sleeps ``interval_seconds`` (default: the client's
        heartbeat interval, shortened to a third of the registry's TTL when it
        is more than half of it) between heartbeats, registers again at once on
        a 404, backs off on errors and never raises.
        """
        await self._registry.run(self._core.heartbeat_loop(interval_seconds))

    async def start_heartbeat_loop(
        self,
        interval_seconds: float | None = None,
        *,
        task_group: TaskStarter | None = None,
    ) -> None:
        """Start :meth:`run_heartbeat_loop` in the background and return at once.

        On asyncio the loop becomes a task of the running loop. On trio (which
        has no unowned background tasks) pass ``task_group=`` a nursery or an
        anyio task group, which works on asyncio too; or use :meth:`registered`.
        Stop it with :meth:`stop_heartbeat_loop`.
        """
        if self._heartbeat is not None and self._heartbeat.running:
            raise RuntimeError("the heartbeat loop is already running")
        self._core.require_registration("start_heartbeat_loop")
        interval = self._core.interval(interval_seconds)
        if task_group is None and not _on_asyncio():
            raise RuntimeError(
                "start_heartbeat_loop() without task_group= needs asyncio; on trio pass "
                "task_group=<nursery>, or use `async with client.registered(...)`"
            )

        async def run() -> None:
            await self.run_heartbeat_loop(interval)

        heartbeat = BackgroundHeartbeat(run)
        if task_group is None:
            heartbeat.start_asyncio_task()
        else:
            heartbeat.start_in(task_group)
        self._heartbeat = heartbeat

    async def stop_heartbeat_loop(self) -> None:
        """Stop the loop started by :meth:`start_heartbeat_loop` (no-op if none runs)."""
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            await heartbeat.stop()

    @property
    def heartbeat_running(self) -> bool:
        """True while a loop started by :meth:`start_heartbeat_loop` runs."""
        return self._heartbeat is not None and self._heartbeat.running

    @overload
    def registered(
        self,
        request: ServiceRegistrationRequest,
        *,
        interval_seconds: float | None = None,
        drain_seconds: float = 0.0,
    ) -> AbstractAsyncContextManager[ServiceDiscoveryClient]: ...

    @overload
    def registered(
        self,
        *,
        interval_seconds: float | None = None,
        drain_seconds: float = 0.0,
        **fields: Unpack[RegistrationFields],
    ) -> AbstractAsyncContextManager[ServiceDiscoveryClient]: ...

    def registered(
        self, request: ServiceRegistrationRequest | None = None, **options: Any
    ) -> AbstractAsyncContextManager[ServiceDiscoveryClient]:
        """``async with client.registered(request):`` registers, heartbeats, unregisters.

        Registers first (a failure raises before the body runs), heartbeats in a
        task group for the duration of the block, and on exit (normal, by
        exception or by cancellation) stops the heartbeat and unregisters,
        shielded from the cancellation and bounded by a 5 s timeout. An
        exception from the body comes out as itself, not wrapped in an
        exception group.

        With ``drain_seconds``, the exit first puts the instance in maintenance
        and waits that long (so watchers and load balancers move away), then
        unregisters; a registry without maintenance is unregistered at once.
        """
        return self._registered(self._core.stay(request, options))

    @asynccontextmanager
    async def _registered(self, stay: Stay) -> AsyncIterator[ServiceDiscoveryClient]:
        if self.heartbeat_running:
            raise RuntimeError("a heartbeat loop is already running on this client")
        await self.register_service(stay.request)
        body_error: BaseException | None = None
        heartbeat = BackgroundHeartbeat(
            functools.partial(self.run_heartbeat_loop, stay.interval_seconds)
        )
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(heartbeat.run)
                self._heartbeat = heartbeat  # so heartbeat_running is True inside the block
                try:
                    yield self
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    tasks.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The heartbeat task never raises, so a group holds only the body's
            # exception: give the caller that exception, as a plain `with` would.
            if body_error is not None and list(group.exceptions) == [body_error]:
                raise body_error from body_error.__cause__
            raise
        finally:
            if self._heartbeat is heartbeat:
                self._heartbeat = None
            # Shielded from the cancellation that may be ending the block: the
            # drain's wait, plus a bounded time for each request.
            drain = stay.drain_seconds
            bound = drain + 2 * _UNREGISTER_TIMEOUT if drain else _UNREGISTER_TIMEOUT
            with anyio.CancelScope(shield=True), anyio.move_on_after(bound):
                await self._registry.run(self._core.leave(stay.request, drain))

    # -- reads -----------------------------------------------------------------

    async def discover_services(
        self, service_name: str, healthy_only: bool = True, **filters: Unpack[QueryFilters]
    ) -> ServiceInstanceList:
        """The instances of a service (only the healthy ones by default).

        An unknown service is an empty list. With the cache on, an answer is
        reused for ``cache_ttl`` seconds, and while the registry is unreachable
        the last good answer comes back with ``stale=True`` (and a warning in
        the log); without one, :class:`RegistryUnavailableError` is raised. An
        empty answer is not cached. A name the registry would refuse raises
        :class:`~service_discovery.ValidationError` before anything is sent.

        ``metadata={"version": "1.0.0"}`` keeps only instances whose metadata
        has every pair given; ``tags=["web", "eu"]`` only those that carry
        every tag given; ``status="unhealthy"`` (or several) only those in one
        of the statuses. They are sent to the registry
        (``?meta.version=1.0.0&tag=web&tag=eu&status=unhealthy``) and checked
        again here, so an older registry that ignores them gives the same
        answer. Each filter is cached on its own.
        """
        return await self._registry.run(self._core.discover(service_name, healthy_only, **filters))

    async def get_all_services(self, *, tags: TagFilter = None) -> dict[str, ServiceInstanceList]:
        """Every registered instance of every service (not cached); with ``tags``,
        only the instances carrying every one, and only services that have some."""
        params = DiscoveryFilter.of(None, None, tags).params()
        return await self._registry.run(self._core.calls.fetch_all_services(params))

    async def pick(
        self, service_name: str, *, exclude: Iterable[str | ServiceInstance] = ()
    ) -> ServiceInstance:
        """One healthy instance, chosen by the power of two choices on reported load.

        Uses :meth:`discover_services` (so the cache and its stale fallback
        apply). ``exclude`` (instance ids or instances) leaves out instances a
        caller already failed to reach. Raises :class:`NoHealthyInstancesError`
        when none is left.
        """
        instances = await self.discover_services(service_name, healthy_only=True)
        return self._core.choose(service_name, instances, exclude)

    async def call_with_failover(
        self,
        service_name: str,
        call: Callable[[ServiceInstance], Awaitable[T]],
        *,
        attempts: int = 3,
        retry_on: tuple[type[Exception], ...] = (httpx.TransportError,),
    ) -> T:
        """``await call(instance)`` on a picked instance; on failure, on another one.

        A call that raises one of ``retry_on`` (by default httpx's connection
        errors and timeouts) is tried again on an instance not tried yet, up to
        ``attempts`` calls in all. This is what rides over an instance that
        died since the registry last said so, or a stale list served while the
        registry is down. When every attempt failed, or no untried instance is
        left, the last call's exception is raised; with no instance at all,
        :class:`NoHealthyInstancesError`. Other exceptions pass through at once.
        Only retry calls that are safe to repeat.
        """
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        tried: list[ServiceInstance] = []
        last_error: Exception | None = None
        for _ in range(attempts):
            try:
                instance = await self.pick(service_name, exclude=tried)
            except NoHealthyInstancesError:
                if last_error is None:
                    raise
                break
            try:
                return await call(instance)
            except retry_on as exc:
                logger.info(
                    "Call to %s:%s at %s failed (%s); trying another instance",
                    service_name,
                    instance.instance_id,
                    instance.address,
                    exc,
                )
                tried.append(instance)
                last_error = exc
        assert last_error is not None
        raise last_error

    async def watch_service(
        self,
        service_name: str,
        *,
        healthy_only: bool = True,
        wait_seconds: float = 60.0,
    ) -> AsyncGenerator[ServiceInstanceList, None]:
        """Yield the service's instance list now and every time it changes.

        Built on the registry's blocking queries (``?index=&wait=``): each
        request is held until the service's ``X-Discovery-Index`` passes the
        last one seen, so changes arrive at once without polling. An index that
        goes backwards (the registry restarted) starts again from 0. Network
        errors and 5xx are retried with backoff (logged quietly); any other
        error (a wrong token, a path the registry does not serve) is raised.
        Each answer also refreshes the :meth:`discover_services` cache.

        Use it with ``async for``; to stop early from outside a loop, ``aclose()``
        the generator.
        """
        blocking_read = self._core.blocking_read(service_name, healthy_only, wait_seconds)

        async def fetch(index: int) -> ServiceInstanceList:
            return await self._registry.run(blocking_read(index))

        if self._stream_watches:
            try:
                async for _, instances in self._stream_services([service_name], healthy_only):
                    yield instances
            except StreamUnsupported:
                self._stream_watches = False  # an older registry: blocking queries
            else:
                return
        async for instances in watch_instances(
            fetch,
            what=f"service {service_name!r}",
            wait_seconds=wait_seconds,
            retrying=self._retrying,
        ):
            yield instances

    async def watch_services(
        self, service_names: Iterable[str], *, healthy_only: bool = True
    ) -> AsyncGenerator[tuple[str, ServiceInstanceList], None]:
        """Yield ``(service name, instances)`` for each service now, then on every change.

        Over the registry's watch stream (``GET /v1/discovery/watch``, one
        connection for every service); after a disconnect it resumes where it
        left off (``Last-Event-ID``), with jittered backoff, missing no change.
        Against a registry without the stream it falls back to blocking
        queries on the global index (``GET /v1/discovery/services?index=``),
        reading each named service again after any change and yielding those
        whose index moved: one held request for all the services, at the cost
        of a read per named service whenever any service changes.
        """
        names = list(service_names)
        for name in names:
            check_name(name)
        if self._stream_watches:
            try:
                async for pair in self._stream_services(names, healthy_only):
                    yield pair
            except StreamUnsupported:
                self._stream_watches = False  # an older registry: blocking queries
            else:
                return
        async for pair in self._poll_services(names, healthy_only):
            yield pair

    async def _stream_services(
        self, names: list[str], healthy_only: bool
    ) -> AsyncGenerator[tuple[str, ServiceInstanceList], None]:
        """The watch stream; raises StreamUnsupported at once where the registry has none."""
        async for name, index, raw in watch_stream(
            http_connect(self._registry, names),
            what=f"services {names!r}",
            retrying=self._retrying,
        ):
            instances = ServiceInstanceList(
                (
                    ServiceInstance.model_validate(item)
                    for item in raw
                    if not healthy_only or item.get("status") == "healthy"
                ),
                discovery_index=index,
            )
            self._core.remember(name, healthy_only, instances)
            yield name, instances

    async def _poll_services(
        self, names: list[str], healthy_only: bool, wait_seconds: float = 60.0
    ) -> AsyncGenerator[tuple[str, ServiceInstanceList], None]:
        """Blocking queries on the global index, then a read of each named service.

        A round is retried whole after an error, at the same global index, so
        a change seen by the blocking query is never lost to a failed read.
        """
        catalog = self._core.blocking_catalog(wait_seconds)

        async def fetch(index: int) -> ServicesRound:
            changed_at = await self._registry.run(catalog(index))
            services = [
                (name, await self._registry.run(self._core.fetch_instances(name, healthy_only)))
                for name in names
            ]
            return ServicesRound(changed_at, services)

        last: dict[str, int | None] = {}
        async for round_ in watch_instances(
            fetch,
            what=f"services {names!r}",
            wait_seconds=wait_seconds,
            retrying=self._retrying,
        ):
            for name, instances in round_.services:
                if name in last and last[name] == instances.discovery_index:
                    continue
                last[name] = instances.discovery_index
                self._core.remember(name, healthy_only, instances)
                yield name, instances


@dataclass(frozen=True, slots=True)
class ServicesRound:
    """One round of the blocking fallback: the global index, then each named service."""

    discovery_index: int | None
    services: list[tuple[str, ServiceInstanceList]]


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
