"""Building a service's own ``/health`` answer: named checks, uptime and load.

The registry probes each instance's health endpoint and believes what it says,
so that answer should reflect what the service depends on (its database, the
APIs it calls), not merely that the process is alive. :class:`HealthChecker`
runs named checks concurrently, each with a timeout, and folds them into a
:class:`~service_discovery.HealthCheckResult`: one failed check makes the whole
answer ``unhealthy`` and its entry says why.

A check is any callable taking no arguments, sync or async. It passes unless it
returns ``False``, raises, or runs past its timeout. Sync callables run in a
worker thread so a slow one cannot stall the event loop (and its timeout still
works; the thread is abandoned, not killed).

The default timeout (:data:`DEFAULT_CHECK_TIMEOUT`, 2 s) sits well under the
registry's probe timeout (5 s): a hanging dependency must turn into a quick
``unhealthy`` answer that says why, not into a probe that times out and says
nothing. A check added with ``critical=False`` is reported in the body but
does not make the instance unhealthy (a cache, an optional dependency).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread
import httpx

from .models import CheckStatus, CustomCheckResult, HealthCheckResult, HealthStatus
from .system_load import estimate_load_async

__all__ = [
    "HealthChecker",
    "database_probe",
]

logger = logging.getLogger("service_discovery.health")

CheckFn = Callable[[], Any]
"""A health check: sync or async, no arguments; fails by returning False or raising."""

LoadFn = Callable[[], float | Awaitable[float]]
"""A load source: sync or async, no arguments, a number in 0..1 (clamped)."""

DEFAULT_CHECK_TIMEOUT = 2.0
"""Seconds each check may take; well under the registry's 5 s probe timeout."""


@dataclass(frozen=True, slots=True)
class _Check:
    run: CheckFn
    timeout: float
    critical: bool


def _checked_url(url: str) -> str:
    """Refuse at setup a URL a GET can never reach, rather than fail every probe later."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from None
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise ValueError(
            f"{url!r} is not an http:// or https:// URL with a host; "
            "send e.g. 'https://payment.example.com/health'"
        )
    return url


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


async def _call(fn: Callable[[], Any]) -> Any:
    """Call ``fn`` without blocking the loop: await async ones, thread the rest.

    A sync callable may return an awaitable (``lambda: client.ping()``): it is
    created in the worker thread and awaited here, on the event loop.
    """
    if _is_async_callable(fn):
        result = fn()
    else:
        # Boxed, because trio refuses a thread function whose result is a coroutine.
        (result,) = await anyio.to_thread.run_sync(lambda: (fn(),), abandon_on_cancel=True)
    if inspect.isawaitable(result):
        result = await result
    return result


def database_probe(db_client: Any) -> CheckFn:
    """The check ``setup_service_health_checks(db_client=...)`` runs, chosen by type.

    In this order:

    1. a MongoDB client (pymongo, its async client, motor):
       ``db_client.admin.command("ping")``;
    2. anything with a ``ping()`` method (redis, many drivers): ``ping()``, and a
       ``False`` result fails;
    3. anything with ``execute()`` (asyncpg, aiosqlite, ``databases``, DB-API
       connections): ``execute("SELECT 1")``;
    4. a callable: called as the check itself.

    Methods are looked up on the type, so clients that answer any attribute
    (MongoDB's ``client.<database>``) are not mistaken for having ``ping``.
    Anything else is a ``TypeError`` at setup time, not a failing check later:
    pass your own check instead. As for every check, a sync method runs in a
    worker thread (so a client bound to one thread, such as ``sqlite3`` with
    its default ``check_same_thread``, needs a custom check) and an async one on
    the event loop.
    """
    cls = type(db_client)
    package = cls.__module__.partition(".")[0]
    if package == "motor" or (package == "pymongo" and cls.__name__.startswith("Async")):

        async def mongo_ping() -> None:
            await db_client.admin.command("ping")

        return mongo_ping
    if package == "pymongo":
        return lambda: db_client.admin.command("ping")
    if callable(getattr(cls, "ping", None)):
        return db_client.ping  # type: ignore[no-any-return]
    if callable(getattr(cls, "execute", None)):
        return functools.partial(db_client.execute, "SELECT 1")
    if callable(db_client):
        return db_client  # type: ignore[no-any-return]
    raise TypeError(
        f"cannot health-check a {cls.__qualname__}: it has no ping() or execute() "
        "method; pass a custom check instead"
    )


class HealthChecker:
    """Runs a service's health checks and builds its ``/health`` body.

    ``load_percentage`` replaces the default load estimate (see
    :mod:`service_discovery.system_load`) with a callable of your own, sync or
    async, returning 0..1. ``check_timeout`` is the default per-check timeout
    (2 s: under the registry's probe timeout, so a hanging dependency reports
    itself instead of timing the whole probe out).
    ``transport`` is used by the HTTP checks of external services (for tests).
    ``clock`` (monotonic seconds) and ``now`` (wall-clock UTC) are injectable.
    """

    def __init__(
        self,
        service_name: str,
        *,
        load_percentage: LoadFn | None = None,
        check_timeout: float = DEFAULT_CHECK_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if check_timeout <= 0:
            raise ValueError("check_timeout must be positive")
        self.service_name = service_name
        self.check_timeout = check_timeout
        self._load: LoadFn = load_percentage or estimate_load_async
        self._transport = transport
        self._clock = clock
        self._now = now or (lambda: datetime.now(UTC))
        self._started = clock()
        self._checks: dict[str, _Check] = {}

    @property
    def uptime_seconds(self) -> float:
        """Seconds since this checker was created (roughly, since the service started)."""
        return max(0.0, self._clock() - self._started)

    @property
    def check_names(self) -> list[str]:
        """Names of the registered checks, in the order they run and are reported."""
        return list(self._checks)

    def add_check(
        self,
        name: str,
        check: CheckFn,
        *,
        timeout: float | None = None,
        critical: bool = True,
    ) -> None:
        """Register a named check; ``timeout`` defaults to the checker's ``check_timeout``.

        A failing ``critical=False`` check is reported in ``custom_checks`` (and
        logged) but leaves the instance healthy.
        """
        if not name:
            raise ValueError("a check needs a name")
        if name in self._checks:
            raise ValueError(f"a health check named {name!r} already exists")
        if not callable(check):
            raise TypeError(f"check {name!r} is not callable")
        limit = self.check_timeout if timeout is None else timeout
        if limit <= 0:
            raise ValueError("a check timeout must be positive")
        self._checks[name] = _Check(check, limit, critical)

    def check(
        self, name: str | None = None, *, timeout: float | None = None, critical: bool = True
    ) -> Callable[[CheckFn], CheckFn]:
        """Decorator form of :meth:`add_check`; the name defaults to the function's."""

        def register(fn: CheckFn) -> CheckFn:
            check_name = name or str(getattr(fn, "__name__", repr(fn)))
            self.add_check(check_name, fn, timeout=timeout, critical=critical)
            return fn

        return register

    def add_database_check(
        self,
        db_client: Any,
        *,
        name: str = "database",
        timeout: float | None = None,
        critical: bool = True,
    ) -> None:
        """Check a database client with :func:`database_probe`."""
        self.add_check(name, database_probe(db_client), timeout=timeout, critical=critical)

    def add_http_check(
        self, name: str, url: str, *, timeout: float | None = None, critical: bool = True
    ) -> None:
        """Check that an HTTP dependency answers: a GET to ``url``.

        Passes on any answer below 500 (a 404 or 401 from its root still proves
        the dependency is up); fails on 5xx, timeouts and connection errors.
        Give the dependency's own health URL to test more than reachability.
        Redirects are not followed. A ``url`` that is not ``http(s)://host...``
        raises ``ValueError`` here, at setup.
        """
        _checked_url(url)
        limit = self.check_timeout if timeout is None else timeout

        async def probe() -> None:
            async with httpx.AsyncClient(transport=self._transport, timeout=limit) as http:
                response = await http.get(url)
            if response.status_code >= 500:
                raise RuntimeError(f"GET {url} answered {response.status_code}")

        self.add_check(name, probe, timeout=limit, critical=critical)

    async def run(self) -> HealthCheckResult:
        """Run every check concurrently and build the result. Never raises."""
        outcomes: dict[str, CustomCheckResult] = {}

        async def run_one(name: str, check: _Check) -> None:
            outcomes[name] = await self._run_check(name, check)

        load = 0.0

        async def measure_load() -> None:
            nonlocal load
            load = await self._measure_load()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(measure_load)
            for name, check in self._checks.items():
                tasks.start_soon(run_one, name, check)

        custom_checks = {name: outcomes[name] for name in self._checks}
        failed = any(r.status is CheckStatus.FAIL and r.critical for r in custom_checks.values())
        return HealthCheckResult(
            status=HealthStatus.UNHEALTHY if failed else HealthStatus.HEALTHY,
            service=self.service_name,
            timestamp=self._now(),
            uptime_seconds=round(self.uptime_seconds, 3),
            load_percentage=load,
            custom_checks=custom_checks,
        )

    async def _run_check(self, name: str, check: _Check) -> CustomCheckResult:
        started = self._clock()
        limit = check.timeout
        message: str | None = None
        passed = False
        try:
            with anyio.fail_after(limit):
                result = await _call(check.run)
            passed = result is not False
            if not passed:
                message = "check returned False"
        except TimeoutError:
            message = f"timed out after {limit:g} s"
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not passed:
            kind = "" if check.critical else " (not critical: the instance stays healthy)"
            logger.warning("Health check %r failed%s: %s", name, kind, message)
        return CustomCheckResult(
            status=CheckStatus.PASS if passed else CheckStatus.FAIL,
            message=message,
            duration_ms=round((self._clock() - started) * 1000, 3),
            critical=check.critical,
        )

    async def _measure_load(self) -> float:
        try:
            with anyio.fail_after(self.check_timeout):
                value = float(await _call(self._load))
        except Exception as exc:
            logger.warning("Could not measure load, reporting 0.0: %s", exc)
            return 0.0
        if value != value:
            return 0.0
        return min(1.0, max(0.0, value))


def checks_from_mapping(checker: HealthChecker, checks: Mapping[str, CheckFn] | None) -> None:
    """Add every ``name -> check`` of a mapping (helper for the setup functions)."""
    for name, check in (checks or {}).items():
        checker.add_check(name, check)
