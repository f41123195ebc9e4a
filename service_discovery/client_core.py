"""What a client does, without doing any I/O: the logic both clients share.

:class:`ClientCore` holds a client's state (the registration, what the
registry said about it, the discovery cache, the indexes seen) and expresses
every operation as :mod:`~service_discovery.exchange` steps. The
asynchronous client runs those steps on ``httpx.AsyncClient`` and anyio, the
synchronous one on ``httpx.Client`` and a thread; neither holds any logic of
its own beyond that, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar, Unpack

from .backoff import Backoff
from .balancing import power_of_two_choices
from .cache import DiscoveryCache
from .config import DEFAULT_TIMEOUT, ClientSettings
from .errors import (
    BadRequestError,
    NoHealthyInstancesError,
    NotFoundError,
    NotSupportedError,
    RegistryUnavailableError,
)
from .exchange import RegistryCalls, Sleep, Steps, json_or_none, path_segment
from .filters import NO_FILTER, DiscoveryFilter, QueryFilters
from .heartbeat import heartbeat_steps
from .models import (
    CheckType,
    InstanceStatus,
    ServiceInstance,
    ServiceInstanceList,
    ServiceRegistrationRequest,
    check_name,
    registration_from_arguments,
)

__all__ = ["ClientCore", "ClientFacade", "ClockFn", "CoreOptions", "IOArguments", "Name", "Stay"]

logger = logging.getLogger("service_discovery.client")

ClockFn = Callable[[], float]
Name = str | None
"""A service name or instance id; ``None`` means the registered instance's."""
TransportT = TypeVar("TransportT")
HttpT = TypeVar("HttpT")
SleepT = TypeVar("SleepT")

_PROBE_REFUSED = "health checks refused"
DRAIN_REASON = "draining before unregistering"


class CoreOptions(TypedDict, total=False):
    """The constructor options both clients share (everything but their I/O)."""

    heartbeat_interval: float | None
    timeout: float
    attempt_timeout: float | None
    connect_timeout: float | None
    cache: bool
    cache_ttl: float
    max_stale: float | None
    backoff: Backoff | None
    clock: ClockFn | None
    rng: random.Random | None


@dataclass(frozen=True, slots=True)
class Stay:
    """What a ``registered(...)`` block was asked for, checked before anything is sent."""

    request: ServiceRegistrationRequest
    interval_seconds: float | None
    drain_seconds: float


class ClientCore:
    """The state and the steps of one client; see the module docstring."""

    def __init__(
        self,
        url: str | None,
        secret: str | None,
        *,
        heartbeat_interval: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        attempt_timeout: float | None = None,
        connect_timeout: float | None = None,
        cache: bool = True,
        cache_ttl: float = 5.0,
        max_stale: float | None = None,
        backoff: Backoff | None = None,
        clock: ClockFn | None = None,
        rng: random.Random | None = None,
    ) -> None:
        settings = ClientSettings.resolve(
            url,
            secret,
            heartbeat_interval,
            timeout=timeout,
            attempt_timeout=attempt_timeout,
            connect_timeout=connect_timeout,
        )
        self.settings = settings
        if settings.secret is None:
            logger.warning(
                "No registry secret given (argument or SERVICE_DISCOVERY_SECRET): "
                "requests will be rejected with 401"
            )
        self.calls = RegistryCalls(settings)
        self.cache = DiscoveryCache(cache_ttl, max_stale) if cache else None
        self.backoff = backoff or Backoff()
        self.clock: ClockFn = clock or time.monotonic
        self.rng = rng or random.Random()
        self.registration: ServiceRegistrationRequest | None = None
        self._stale_warned: set[Any] = set()
        # Registration state: whether the registry has accepted us (at all,
        # and right now), the TTL it told us, and the indexes seen per service
        # (an index going back means the registry restarted).
        self._ever_registered = False
        self.registered_now = False
        self._reregistering = False
        self._ttl: float | None = None
        self._ttl_warned: set[tuple[float, float]] = set()
        self._seen_index: dict[str, int] = {}
        self._reported_status: InstanceStatus | None = None

    # -- writes ----------------------------------------------------------------

    def register(self, request: ServiceRegistrationRequest | None, **fields: Any) -> Steps[bool]:
        """Register and remember a request, or one made of ``fields`` (also when unreachable)."""
        request = registration_from_arguments(request, fields)
        try:
            response = yield from self.calls.request(
                "POST", "/v1/discovery/register", json=request.to_payload()
            )
        except RegistryUnavailableError:
            self.registration = request
            self.registered_now = False
            raise
        if self.registration != request:
            self._reported_status = None  # a status belongs to the instance it was sent for
        self.registration = request
        self._ever_registered = self.registered_now = True
        self._read_registration_answer(request, json_or_none(response))
        self.invalidate(request.service_name)
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

    def heartbeat(
        self,
        load_percentage: float | None = None,
        status: InstanceStatus | str | None = None,
    ) -> Steps[bool]:
        """One heartbeat; carries the last reported status of a TTL-checked instance."""
        request = self.require_registration("send_heartbeat")
        payload: dict[str, Any] = {
            "service_name": request.service_name,
            "instance_id": request.instance_id,
        }
        if load_percentage is not None:
            payload["load_percentage"] = load_percentage
        reported = self._ttl_status(request, status) if status is not None else None
        reported = reported or self._reported_status
        if reported is not None:
            payload["status"] = reported.value
        yield from self.calls.request("POST", "/v1/discovery/heartbeat", json=payload)
        return True

    def report_status(self, status: InstanceStatus | str) -> Steps[bool]:
        """Send a heartbeat with ``status`` now, and on every later heartbeat."""
        request = self.require_registration("report_status")
        self._reported_status = self._ttl_status(request, status)
        return (yield from self.heartbeat())

    @staticmethod
    def _ttl_status(
        request: ServiceRegistrationRequest, status: InstanceStatus | str
    ) -> InstanceStatus:
        if request.check_type is not CheckType.TTL:
            raise ValueError(
                f"{request.service_name}:{request.instance_id} is checked by "
                f"{request.check_type.value!r}: only an instance registered with "
                "check='ttl' reports its own status"
            )
        value = InstanceStatus(status)
        if value is InstanceStatus.UNKNOWN:
            raise ValueError("report 'healthy' or 'unhealthy'")
        return value

    def unregister(self, service_name: str | None, instance_id: str | None) -> Steps[bool]:
        """Remove an instance (by default the registered one); 404 raises NotFoundError."""
        service_name, instance_id = self._instance(service_name, instance_id, "unregister_service")
        own = self.registration
        if own is not None and (own.service_name, own.instance_id) == (service_name, instance_id):
            self.registered_now = False  # do not re-register it after a registry restart
        yield from self.calls.request(
            "DELETE", _instance_path("unregister", service_name, instance_id)
        )
        self.invalidate(service_name)
        return True

    def maintenance(
        self, service_name: str | None, instance_id: str | None, reason: str | None
    ) -> Steps[bool]:
        """Put an instance in maintenance (``reason`` given) or end it (``None``).

        A registry that does not serve the route raises :class:`NotSupportedError`.
        """
        what = "set_maintenance" if reason is not None else "clear_maintenance"
        service_name, instance_id = self._instance(service_name, instance_id, what)
        path = _instance_path("maintenance", service_name, instance_id)
        try:
            if reason is None:
                yield from self.calls.request("DELETE", path)
            else:
                yield from self.calls.request("PUT", path, json={"reason": reason})
        except (NotFoundError, BadRequestError) as exc:
            if exc.code == "instance_not_found" or exc.status_code not in (404, 405):
                raise
            raise NotSupportedError(
                f"The registry at {self.calls.url} has no maintenance route (it is older "
                f"than this SDK): {exc.message}",
                code=exc.code,
                status_code=exc.status_code,
            ) from exc
        self.invalidate(service_name)
        return True

    def _instance(
        self, service_name: str | None, instance_id: str | None, what: str
    ) -> tuple[str, str]:
        if service_name is None or instance_id is None:
            request = self.require_registration(what)
            service_name = service_name or request.service_name
            instance_id = instance_id or request.instance_id
        return check_name(service_name, "service_name"), check_name(instance_id, "instance_id")

    def stay(self, request: ServiceRegistrationRequest | None, options: dict[str, Any]) -> Stay:
        """Check ``registered()``'s arguments: a request or its fields, and two options."""
        interval_seconds = options.pop("interval_seconds", None)
        drain_seconds = float(options.pop("drain_seconds", 0.0))
        if drain_seconds < 0:
            raise ValueError("drain_seconds must not be negative")
        self.interval(interval_seconds)  # a bad interval raises before registering
        request = registration_from_arguments(request, options)
        return Stay(request, interval_seconds, drain_seconds)

    def require_registration(self, what: str) -> ServiceRegistrationRequest:
        if self.registration is None:
            raise RuntimeError(f"{what}() needs an instance: call register_service() first")
        return self.registration

    def leave(self, request: ServiceRegistrationRequest, drain_seconds: float) -> Steps[None]:
        """The end of ``registered()``: drain (maintenance, then wait), then unregister.

        Never raises: an instance that cannot be unregistered expires at its TTL.
        """
        if drain_seconds > 0:
            yield from self._drain(request, drain_seconds)
        try:
            yield from self.unregister(request.service_name, request.instance_id)
        except NotFoundError:
            pass
        except Exception as exc:
            logger.warning(
                "Could not unregister %s:%s (it will expire at its TTL): %s",
                request.service_name,
                request.instance_id,
                exc,
            )

    def _drain(self, request: ServiceRegistrationRequest, seconds: float) -> Steps[None]:
        name = f"{request.service_name}:{request.instance_id}"
        try:
            yield from self.maintenance(request.service_name, request.instance_id, DRAIN_REASON)
        except NotSupportedError:
            logger.info(
                "The registry has no maintenance route (an older registry): unregistering "
                "%s without draining",
                name,
            )
            return
        except Exception as exc:
            logger.warning("Could not put %s in maintenance (%s); unregistering now", name, exc)
            return
        logger.info("%s is in maintenance; unregistering in %g s", name, seconds)
        yield Sleep(seconds)

    # -- heartbeats ------------------------------------------------------------

    def heartbeat_loop(self, interval_seconds: float | None) -> Steps[None]:
        """The heartbeat loop's steps (see :func:`~service_discovery.heartbeat.heartbeat_steps`)."""
        self.require_registration("the heartbeat loop")
        interval = self.interval(interval_seconds)
        return heartbeat_steps(
            self.heartbeat,
            self._register_from_loop,
            interval=functools.partial(self._heartbeat_period, interval),
            registered=self.registered_now,
            clock=self.clock,
            backoff=self.backoff,
            rng=self.rng,
        )

    def _register_from_loop(self) -> Steps[None]:
        request = self.require_registration("the heartbeat loop")
        first = not self._ever_registered
        yield from self.register(request)
        if first:
            logger.info(
                "Registered %s:%s (first registration; the registry was not reachable before)",
                request.service_name,
                request.instance_id,
            )
        else:
            logger.info("Registered %s:%s again", request.service_name, request.instance_id)

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

    def interval(self, interval_seconds: float | None) -> float:
        interval = (
            self.settings.heartbeat_interval if interval_seconds is None else interval_seconds
        )
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be positive, got {interval}")
        return float(interval)

    # -- reads -----------------------------------------------------------------

    def discover(
        self,
        service_name: str,
        healthy_only: bool,
        **filters: Unpack[QueryFilters],
    ) -> Steps[ServiceInstanceList]:
        """A service's instances through the cache, with the stale-if-error fallback."""
        check_name(service_name)
        query = DiscoveryFilter.of(
            filters.get("metadata"), filters.get("status"), filters.get("tags")
        )
        if self.cache is None:
            return (yield from self.fetch_instances(service_name, healthy_only, query))
        key = (service_name, healthy_only, query)
        cached = self.cache.fresh(key, self.clock())
        if cached is not None:
            return cached
        try:
            instances = yield from self.fetch_instances(service_name, healthy_only, query)
        except RegistryUnavailableError as exc:
            stale = self.cache.fallback(key, self.clock())
            if stale is None:
                raise
            self._warn_stale(key, service_name, stale, exc)
            return stale
        self.cache.store(key, instances, self.clock())
        self._stale_warned.discard(key)
        return instances

    def fetch_instances(
        self,
        service_name: str,
        healthy_only: bool,
        query: DiscoveryFilter = NO_FILTER,
        *,
        params: Iterable[tuple[str, str]] = (),
        read_timeout: float | None = None,
    ) -> Steps[ServiceInstanceList]:
        """One uncached read; notices a registry restart from the index going back."""
        instances = yield from self.calls.fetch_instances(
            service_name,
            healthy_only,
            params=[*query.params(), *params],
            read_timeout=read_timeout,
        )
        yield from self._note_index(service_name, instances)
        return query.apply(instances)

    def blocking_read(
        self, service_name: str, healthy_only: bool, wait_seconds: float
    ) -> Callable[[int], Steps[ServiceInstanceList]]:
        """One blocking query per index, for a watch; each answer refreshes the cache."""
        check_name(service_name)
        read_timeout, wait_param = _blocking(wait_seconds)

        def read(index: int) -> Steps[ServiceInstanceList]:
            instances = yield from self.fetch_instances(
                service_name,
                healthy_only,
                params=[("index", str(index)), ("wait", wait_param)],
                read_timeout=read_timeout,
            )
            self.remember(service_name, healthy_only, instances)
            return instances

        return read

    def blocking_catalog(self, wait_seconds: float) -> Callable[[int], Steps[int | None]]:
        """One blocking query on the global index per call: returns when any service changed."""
        read_timeout, wait_param = _blocking(wait_seconds)

        def read(index: int) -> Steps[int | None]:
            return (
                yield from self.calls.catalog_index(
                    params=[("index", str(index)), ("wait", wait_param)], read_timeout=read_timeout
                )
            )

        return read

    def remember(
        self, service_name: str, healthy_only: bool, instances: ServiceInstanceList
    ) -> None:
        """Store an unfiltered answer got elsewhere (a watch) in the cache."""
        if self.cache is not None:
            self.cache.store((service_name, healthy_only, NO_FILTER), instances, self.clock())

    def _warn_stale(
        self, key: Any, service_name: str, stale: ServiceInstanceList, exc: Exception
    ) -> None:
        # Once per outage and query, not once per call: callers may discover
        # on every request they serve.
        level = logging.DEBUG if key in self._stale_warned else logging.WARNING
        self._stale_warned.add(key)
        logger.log(
            level,
            "Registry unreachable (%s); serving the last known instances of %r, %.1f s old",
            exc,
            service_name,
            stale.age_seconds,
        )

    def _note_index(self, service_name: str, instances: ServiceInstanceList) -> Steps[None]:
        index = instances.discovery_index
        if index is None:
            return
        last = self._seen_index.get(service_name)
        self._seen_index[service_name] = index
        if last is not None and index < last:
            yield from self._register_after_restart(service_name, last, index)

    def _register_after_restart(self, service_name: str, old: int, new: int) -> Steps[None]:
        """A read saw an index go back: the registry restarted and forgot us; register now."""
        request = self.registration
        logger.info(
            "Discovery index of %r went back from %d to %d: the registry restarted",
            service_name,
            old,
            new,
        )
        if request is None or not self.registered_now or self._reregistering:
            return
        self._reregistering = True
        try:
            yield from self.register(request)
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

    def choose(
        self,
        service_name: str,
        instances: ServiceInstanceList,
        exclude: Iterable[str | ServiceInstance],
    ) -> ServiceInstance:
        """``pick``'s choice among ``instances``: power of two choices, healthy, not excluded."""
        excluded = {i.instance_id if isinstance(i, ServiceInstance) else i for i in exclude}
        candidates = [i for i in instances if i.is_healthy and i.instance_id not in excluded]
        chosen = power_of_two_choices(candidates, self.rng)
        if chosen is None:
            raise NoHealthyInstancesError(service_name, excluded=len(excluded))
        return chosen

    def invalidate(self, service_name: str | None = None) -> None:
        if self.cache is not None:
            self.cache.invalidate(service_name)


@dataclass(frozen=True, slots=True)
class IOArguments(Generic[TransportT, HttpT, SleepT]):
    """The constructor arguments only a client's own I/O uses."""

    settings: ClientSettings
    transport: TransportT | None
    http_client: HttpT | None
    sleep: SleepT | None


class ClientFacade(ABC, Generic[TransportT, HttpT, SleepT]):
    """The constructor, and what both clients expose of their :class:`ClientCore`.

    Generic in the I/O each client brings (its httpx transport, its httpx
    client, its sleep function), which :meth:`_open_io` takes in.
    """

    def __init__(
        self,
        service_discovery_url: str | None = None,
        service_discovery_secret: str | None = None,
        *,
        transport: TransportT | None = None,
        http_client: HttpT | None = None,
        sleep: SleepT | None = None,
        **options: Unpack[CoreOptions],
    ) -> None:
        if transport is not None and http_client is not None:
            raise TypeError("pass either transport= or http_client=, not both")
        self._core = ClientCore(service_discovery_url, service_discovery_secret, **options)
        self._open_io(IOArguments(self._core.settings, transport, http_client, sleep))

    @abstractmethod
    def _open_io(self, io: IOArguments[TransportT, HttpT, SleepT]) -> None:
        """Each client builds its own I/O (async or blocking) from these arguments."""

    @property
    def url(self) -> str:
        """The registry's base URL, without a trailing slash (the one tried first)."""
        return self._core.calls.url

    @property
    def urls(self) -> tuple[str, ...]:
        """Every configured registry URL, in the order of the setting."""
        return self._core.settings.urls

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats when no interval is passed to the loop."""
        return self._core.settings.heartbeat_interval

    @property
    def registration(self) -> ServiceRegistrationRequest | None:
        """The last registration sent, which heartbeats refer to and 404s replay."""
        return self._core.registration

    def invalidate_cache(self, service_name: str | None = None) -> None:
        """Drop cached answers for one service, or all of them."""
        self._core.invalidate(service_name)


def _instance_path(route: str, service_name: str, instance_id: str) -> str:
    return f"/v1/discovery/{route}/{path_segment(service_name)}/{path_segment(instance_id)}"


def _blocking(wait_seconds: float) -> tuple[float, str]:
    """(read timeout, ``wait`` parameter) of a blocking query held up to `wait_seconds`."""
    if wait_seconds <= 0:
        raise ValueError("wait_seconds must be positive")
    # Generous read timeout, never the short per-attempt one: the registry
    # holds the request up to `wait` plus a jitter of at most wait/16.
    return wait_seconds * 1.1 + 10.0, f"{max(1, round(wait_seconds * 1000))}ms"
