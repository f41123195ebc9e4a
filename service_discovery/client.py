"""The registry client services use: register, heartbeat, discover, watch, pick.

One :class:`ServiceDiscoveryClient` per process (or per registered instance).
It runs on asyncio and on trio: HTTP goes through ``httpx.AsyncClient`` and
waiting through anyio, both of which work on either loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Self, TypeVar, overload

import anyio
import httpx

from .backoff import Backoff
from .balancing import power_of_two_choices
from .cache import DiscoveryCache
from .config import ClientSettings
from .errors import NoHealthyInstancesError, NotFoundError, RegistryUnavailableError
from .heartbeat import BackgroundHeartbeat, ClockFn, SleepFn, TaskStarter, heartbeat_forever
from .models import (
    ServiceInstance,
    ServiceInstanceList,
    ServiceRegistrationRequest,
    check_name,
    registration_from_arguments,
)
from .registry_http import RegistryHTTP, json_or_none, path_segment
from .watch import StreamUnsupported, http_connect, watch_instances, watch_stream

__all__ = ["ServiceDiscoveryClient"]

logger = logging.getLogger("service_discovery.client")

_UNREGISTER_TIMEOUT = 5.0
_PROBE_REFUSED = "health checks refused"

T = TypeVar("T")


class ServiceDiscoveryClient:
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

    ``cache`` (on by default) keeps each :meth:`discover_services` answer for
    ``cache_ttl`` seconds and serves the last good answer, marked ``stale``,
    while the registry is unreachable (for at most ``max_stale`` seconds;
    ``None`` means no limit).
    """

    def __init__(
        self,
        service_discovery_url: str | None = None,
        service_discovery_secret: str | None = None,
        *,
        heartbeat_interval: float | None = None,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        cache: bool = True,
        cache_ttl: float = 5.0,
        max_stale: float | None = None,
        backoff: Backoff | None = None,
        sleep: SleepFn | None = None,
        clock: ClockFn | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if transport is not None and http_client is not None:
            raise TypeError("pass either transport= or http_client=, not both")
        self._settings = ClientSettings.resolve(
            service_discovery_url, service_discovery_secret, heartbeat_interval
        )
        if self._settings.secret is None:
            logger.warning(
                "No registry secret given (argument or SERVICE_DISCOVERY_SECRET): "
                "requests will be rejected with 401"
            )
        self._registry = RegistryHTTP(
            self._settings, http_client=http_client, transport=transport, timeout=timeout
        )
        self._cache = DiscoveryCache(cache_ttl, max_stale) if cache else None
        self._backoff = backoff or Backoff()
        self._sleep: SleepFn = sleep or anyio.sleep
        self._clock: ClockFn = clock or time.monotonic
        self._rng = rng or random.Random()
        # Watches use the registry's stream until it answers 404 (an older registry).
        self._stream_watches = True
        self._registration: ServiceRegistrationRequest | None = None
        self._heartbeat: BackgroundHeartbeat | None = None
        self._stale_warned: set[tuple[str, bool]] = set()
        # Registration state: whether the registry has accepted us (at all,
        # and right now), the TTL it told us, and the indexes seen per service
        # (an index going back means the registry restarted).
        self._ever_registered = False
        self._registered_now = False
        self._reregistering = False
        self._ttl: float | None = None
        self._ttl_warned: set[tuple[float, float]] = set()
        self._seen_index: dict[str, int] = {}

    # -- configuration ---------------------------------------------------------

    @property
    def url(self) -> str:
        """The registry's base URL, without a trailing slash (the one tried first)."""
        return self._registry.url

    @property
    def urls(self) -> tuple[str, ...]:
        """Every configured registry URL, in the order of the setting."""
        return self._settings.urls

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats when no interval is passed to the loop."""
        return self._settings.heartbeat_interval

    @property
    def registration(self) -> ServiceRegistrationRequest | None:
        """The last registration sent, which heartbeats refer to and 404s replay."""
        return self._registration

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
    async def register_service(
        self,
        *,
        service_name: str,
        instance_id: str,
        host: str,
        port: int,
        health_endpoint: str = "/health",
        metadata: Mapping[str, str] | None = None,
        load_percentage: float | None = None,
    ) -> bool: ...

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
        request = registration_from_arguments(request, fields)
        try:
            response = await self._registry.request(
                "POST", "/v1/discovery/register", json=request.to_payload()
            )
        except RegistryUnavailableError:
            self._registration = request
            self._registered_now = False
            raise
        self._registration = request
        self._ever_registered = self._registered_now = True
        self._read_registration_answer(request, json_or_none(response))
        if self._cache is not None:
            self._cache.invalidate(request.service_name)
        return True

    def _read_registration_answer(self, request: ServiceRegistrationRequest, body: Any) -> None:
        if not isinstance(body, dict):
            return
        ttl = body.get("ttl_seconds")
        if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl > 0:
            self._ttl = float(ttl)
        warnings = body.get("warnings")
        notes = [w for w in warnings if isinstance(w, str)] if isinstance(warnings, list) else []
        message = body.get("message")
        if not notes and isinstance(message, str) and _PROBE_REFUSED in message:
            notes = [message]
        for note in notes:
            logger.warning(
                "The registry accepted %s:%s with a warning: %s",
                request.service_name,
                request.instance_id,
                note,
            )

    async def send_heartbeat(self, load_percentage: float | None = None) -> bool:
        """Send one heartbeat for the registered instance (optionally with its load).

        Raises :class:`NotFoundError` when the registry does not know the
        instance (register again), and ``RuntimeError`` if nothing was
        registered through this client.
        """
        request = self._require_registration("send_heartbeat")
        payload: dict[str, Any] = {
            "service_name": request.service_name,
            "instance_id": request.instance_id,
        }
        if load_percentage is not None:
            payload["load_percentage"] = load_percentage
        await self._registry.request("POST", "/v1/discovery/heartbeat", json=payload)
        return True

    async def unregister_service(
        self, service_name: str | None = None, instance_id: str | None = None
    ) -> bool:
        """Remove an instance (by default the one registered through this client).

        Raises :class:`NotFoundError` if the registry does not know it.
        """
        own = self._registration
        if service_name is None or instance_id is None:
            request = self._require_registration("unregister_service")
            service_name = service_name or request.service_name
            instance_id = instance_id or request.instance_id
        check_name(service_name, "service_name")
        check_name(instance_id, "instance_id")
        if own is not None and (own.service_name, own.instance_id) == (service_name, instance_id):
            self._registered_now = False  # do not re-register it after a registry restart
        path = f"/v1/discovery/unregister/{path_segment(service_name)}/{path_segment(instance_id)}"
        await self._registry.request("DELETE", path)
        if self._cache is not None:
            self._cache.invalidate(service_name)
        return True

    def _require_registration(self, what: str) -> ServiceRegistrationRequest:
        if self._registration is None:
            raise RuntimeError(f"{what}() needs an instance: call register_service() first")
        return self._registration

    async def _register_from_loop(self) -> None:
        request = self._require_registration("the heartbeat loop")
        first = not self._ever_registered
        await self.register_service(request)
        if first:
            logger.info(
                "Registered %s:%s (first registration; the registry was not reachable before)",
                request.service_name,
                request.instance_id,
            )
        else:
            logger.info("Registered %s:%s again", request.service_name, request.instance_id)

    async def _register_after_restart(self, service_name: str, old: int, new: int) -> None:
        """A read saw an index go back: the registry restarted and forgot us; register now."""
        request = self._registration
        logger.info(
            "Discovery index of %r went back from %d to %d: the registry restarted",
            service_name,
            old,
            new,
        )
        if request is None or not self._registered_now or self._reregistering:
            return
        self._reregistering = True
        try:
            await self.register_service(request)
        except Exception as exc:
            logger.warning(
                "Could not register %s:%s after the registry restarted (the heartbeat "
                "loop will): %s",
                request.service_name,
                request.instance_id,
                exc,
            )
        else:
            logger.info(
                "Registered %s:%s again after the registry restarted",
                request.service_name,
                request.instance_id,
            )
        finally:
            self._reregistering = False

    async def _note_index(self, service_name: str, instances: ServiceInstanceList) -> None:
        index = instances.discovery_index
        if index is None:
            return
        last = self._seen_index.get(service_name)
        self._seen_index[service_name] = index
        if last is not None and index < last:
            await self._register_after_restart(service_name, last, index)

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
        self._require_registration("run_heartbeat_loop")
        interval = self._interval(interval_seconds)
        await heartbeat_forever(
            self.send_heartbeat,
            self._register_from_loop,
            interval=functools.partial(self._heartbeat_period, interval),
            registered=self._registered_now,
            sleep=self._sleep,
            clock=self._clock,
            backoff=self._backoff,
            rng=self._rng,
        )

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
        self._require_registration("start_heartbeat_loop")
        interval = self._interval(interval_seconds)
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

    def _heartbeat_period(self, interval: float) -> float:
        """``interval``, or a third of the registry's TTL when ``interval`` exceeds half of it.

        With a period above TTL/2, one lost heartbeat lets the instance expire;
        TTL/3 leaves room for two. Warned about once per (interval, TTL).
        """
        ttl = self._ttl
        if ttl is None or interval <= ttl / 2:
            return interval
        period = ttl / 3
        if (interval, ttl) not in self._ttl_warned:
            self._ttl_warned.add((interval, ttl))
            logger.warning(
                "Heartbeat interval %g s is more than half the registry's TTL (%g s): one "
                "lost heartbeat would expire this instance; sending one every %g s instead",
                interval,
                ttl,
                period,
            )
        return period

    def _interval(self, interval_seconds: float | None) -> float:
        interval = (
            self._settings.heartbeat_interval if interval_seconds is None else interval_seconds
        )
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be positive, got {interval}")
        return float(interval)

    @overload
    def registered(
        self,
        request: ServiceRegistrationRequest,
        *,
        interval_seconds: float | None = None,
    ) -> AbstractAsyncContextManager[ServiceDiscoveryClient]: ...

    @overload
    def registered(
        self,
        *,
        interval_seconds: float | None = None,
        service_name: str,
        instance_id: str,
        host: str,
        port: int,
        health_endpoint: str = "/health",
        metadata: Mapping[str, str] | None = None,
        load_percentage: float | None = None,
    ) -> AbstractAsyncContextManager[ServiceDiscoveryClient]: ...

    def registered(
        self,
        request: ServiceRegistrationRequest | None = None,
        *,
        interval_seconds: float | None = None,
        **fields: Any,
    ) -> AbstractAsyncContextManager[ServiceDiscoveryClient]:
        """``async with client.registered(request):`` registers, heartbeats, unregisters.

        Registers first (a failure raises before the body runs), heartbeats in a
        task group for the duration of the block, and on exit (normal, by
        exception or by cancellation) stops the heartbeat and unregisters,
        shielded from the cancellation and bounded by a 5 s timeout. An
        exception from the body comes out as itself, not wrapped in an
        exception group.
        """
        return self._registered(registration_from_arguments(request, fields), interval_seconds)

    @asynccontextmanager
    async def _registered(
        self, request: ServiceRegistrationRequest, interval_seconds: float | None
    ) -> AsyncIterator[ServiceDiscoveryClient]:
        interval = self._interval(interval_seconds)
        if self.heartbeat_running:
            raise RuntimeError("a heartbeat loop is already running on this client")
        await self.register_service(request)
        body_error: BaseException | None = None
        heartbeat = BackgroundHeartbeat(functools.partial(self.run_heartbeat_loop, interval))
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
            await self._unregister_quietly(request)

    async def _unregister_quietly(self, request: ServiceRegistrationRequest) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_UNREGISTER_TIMEOUT):
            try:
                await self.unregister_service(request.service_name, request.instance_id)
            except NotFoundError:
                pass
            except Exception as exc:
                logger.warning(
                    "Could not unregister %s:%s (it will expire at its TTL): %s",
                    request.service_name,
                    request.instance_id,
                    exc,
                )

    # -- reads -----------------------------------------------------------------

    async def discover_services(
        self, service_name: str, healthy_only: bool = True
    ) -> ServiceInstanceList:
        """The instances of a service (only the healthy ones by default).

        An unknown service is an empty list. With the cache on, an answer is
        reused for ``cache_ttl`` seconds, and while the registry is unreachable
        the last good answer comes back with ``stale=True`` (and a warning in
        the log); without one, :class:`RegistryUnavailableError` is raised. An
        empty answer is not cached. A name the registry would refuse raises
        :class:`~service_discovery.ValidationError` before anything is sent.
        """
        check_name(service_name)
        key = (service_name, healthy_only)
        if self._cache is None:
            return await self._fetch_instances(service_name, healthy_only)
        cached = self._cache.fresh(key, self._clock())
        if cached is not None:
            return cached
        try:
            instances = await self._fetch_instances(service_name, healthy_only)
        except RegistryUnavailableError as exc:
            stale = self._cache.fallback(key, self._clock())
            if stale is None:
                raise
            self._warn_stale(key, stale, exc)
            return stale
        self._cache.store(key, instances, self._clock())
        self._stale_warned.discard(key)
        return instances

    async def _fetch_instances(
        self,
        service_name: str,
        healthy_only: bool,
        *,
        params: Mapping[str, str] | None = None,
        http_timeout: float | httpx.Timeout | None = None,
    ) -> ServiceInstanceList:
        instances = await self._registry.fetch_instances(
            service_name, healthy_only, params=params, http_timeout=http_timeout
        )
        await self._note_index(service_name, instances)
        return instances

    def _warn_stale(
        self, key: tuple[str, bool], stale: ServiceInstanceList, exc: Exception
    ) -> None:
        # Once per outage and query, not once per call: callers may discover
        # on every request they serve.
        level = logging.DEBUG if key in self._stale_warned else logging.WARNING
        self._stale_warned.add(key)
        logger.log(
            level,
            "Registry unreachable (%s); serving the last known instances of %r, %.1f s old",
            exc,
            key[0],
            stale.age_seconds,
        )

    async def get_all_services(self) -> dict[str, ServiceInstanceList]:
        """Every registered instance of every service (not cached)."""
        return await self._registry.fetch_all_services()

    async def pick(
        self, service_name: str, *, exclude: Iterable[str | ServiceInstance] = ()
    ) -> ServiceInstance:
        """One healthy instance, chosen by the power of two choices on reported load.

        Uses :meth:`discover_services` (so the cache and its stale fallback
        apply). ``exclude`` (instance ids or instances) leaves out instances a
        caller already failed to reach. Raises :class:`NoHealthyInstancesError`
        when none is left.
        """
        excluded = {i.instance_id if isinstance(i, ServiceInstance) else i for i in exclude}
        instances = await self.discover_services(service_name, healthy_only=True)
        candidates = [i for i in instances if i.is_healthy and i.instance_id not in excluded]
        chosen = power_of_two_choices(candidates, self._rng)
        if chosen is None:
            raise NoHealthyInstancesError(service_name, excluded=len(excluded))
        return chosen

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

    def invalidate_cache(self, service_name: str | None = None) -> None:
        """Drop cached answers for one service, or all of them."""
        if self._cache is not None:
            self._cache.invalidate(service_name)

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
        check_name(service_name)
        if wait_seconds <= 0:
            raise ValueError("wait_seconds must be positive")
        # Generous read timeout: the registry holds the request up to `wait`
        # plus a jitter of at most wait/16.
        read_timeout = httpx.Timeout(10.0, read=wait_seconds * 1.1 + 10.0)
        wait_param = f"{max(1, round(wait_seconds * 1000))}ms"

        async def fetch(index: int) -> ServiceInstanceList:
            instances = await self._fetch_instances(
                service_name,
                healthy_only,
                params={"index": str(index), "wait": wait_param},
                http_timeout=read_timeout,
            )
            if self._cache is not None:
                self._cache.store((service_name, healthy_only), instances, self._clock())
            return instances

        if self._stream_watches:
            try:
                async for _, instances in self.watch_services(
                    [service_name], healthy_only=healthy_only
                ):
                    yield instances
            except StreamUnsupported:
                self._stream_watches = False  # an older registry: blocking queries
            else:
                return
        async for instances in watch_instances(
            fetch,
            what=f"service {service_name!r}",
            wait_seconds=wait_seconds,
            sleep=self._sleep,
            clock=self._clock,
            backoff=self._backoff,
            rng=self._rng,
        ):
            yield instances

    async def watch_services(
        self, service_names: Iterable[str], *, healthy_only: bool = True
    ) -> AsyncGenerator[tuple[str, ServiceInstanceList], None]:
        """Yield ``(service name, instances)`` for each service now, then on every change.

        Over the registry's watch stream (``GET /v1/discovery/watch``, one
        connection for every service); after a disconnect it resumes where it
        left off (``Last-Event-ID``), with jittered backoff, missing no change.
        Raises :class:`~service_discovery.watch.StreamUnsupported` against a
        registry without the stream (:meth:`watch_service` falls back to
        blocking queries there).
        """
        names = list(service_names)
        for name in names:
            check_name(name)
        async for name, index, raw in watch_stream(
            http_connect(self._registry, names),
            what=f"services {names!r}",
            sleep=self._sleep,
            clock=self._clock,
            backoff=self._backoff,
            rng=self._rng,
        ):
            instances = ServiceInstanceList(
                (
                    ServiceInstance.model_validate(item)
                    for item in raw
                    if not healthy_only or item.get("status") == "healthy"
                ),
                discovery_index=index,
            )
            if self._cache is not None:
                self._cache.store((name, healthy_only), instances, self._clock())
            yield name, instances


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
