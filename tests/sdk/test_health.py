"""HealthChecker: named checks, timeouts, load, and the database/HTTP probes."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.lowlevel
import trio.testing

from service_discovery import (
    CheckStatus,
    HealthChecker,
    HealthStatus,
    database_probe,
    estimate_load,
    estimate_load_async,
)
from service_discovery.system_load import memory_fraction

FIXED_NOW = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)


def make_checker(**kwargs: Any) -> HealthChecker:
    kwargs.setdefault("load_percentage", lambda: 0.25)
    kwargs.setdefault("now", lambda: FIXED_NOW)
    return HealthChecker("my-service", **kwargs)


async def test_no_checks_is_healthy_with_seed_fields() -> None:
    result = await make_checker().run()
    body = result.model_dump(mode="json")
    assert body == {
        "status": "healthy",
        "service": "my-service",
        "timestamp": "2024-01-15T10:30:00.000000Z",
        "uptime_seconds": body["uptime_seconds"],
        "load_percentage": 0.25,
        "custom_checks": {},
    }
    assert body["uptime_seconds"] >= 0
    assert result.http_status == 200


async def test_sync_and_async_checks_pass() -> None:
    checker = make_checker()
    checker.add_check("sync", lambda: True)
    checker.add_check("none", lambda: None)

    @checker.check()
    async def cache() -> bool:
        await trio.lowlevel.checkpoint()
        return True

    result = await checker.run()
    assert result.status is HealthStatus.HEALTHY
    assert list(result.custom_checks) == ["sync", "none", "cache"]
    assert all(
        r.status is CheckStatus.PASS and r.message is None for r in result.custom_checks.values()
    )


async def test_each_failure_is_named() -> None:
    checker = make_checker()
    checker.add_check("ok", lambda: True)
    checker.add_check("false", lambda: False)

    def boom() -> None:
        raise ConnectionError("db refused")

    checker.add_check("raises", boom)

    async def slow() -> None:
        await trio.sleep(10)

    checker.add_check("slow", slow, timeout=0.05)
    started = time.monotonic()
    result = await checker.run()
    assert time.monotonic() - started < 2
    assert result.status is HealthStatus.UNHEALTHY
    assert result.http_status == 503
    assert result.failed_checks == ["false", "raises", "slow"]
    checks = result.custom_checks
    assert checks["ok"].status is CheckStatus.PASS
    assert checks["false"].message == "check returned False"
    assert checks["raises"].message == "ConnectionError: db refused"
    assert checks["slow"].message == "timed out after 0.05 s"


async def test_sync_checks_do_not_block_the_loop() -> None:
    """A slow sync check runs in a thread; its timeout still applies."""
    release = threading.Event()
    checker = make_checker()
    checker.add_check("blocking", lambda: release.wait(5), timeout=0.1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        result = await checker.run()
        nursery.cancel_scope.cancel()
    release.set()
    assert result.custom_checks["blocking"].status is CheckStatus.FAIL
    assert ticks >= 3


async def test_checks_run_concurrently() -> None:
    checker = make_checker()
    for n in range(5):
        checker.add_check(f"c{n}", lambda: trio.sleep(0.1))  # noqa: ASYNC105 - awaited by the checker
    started = time.monotonic()
    result = await checker.run()
    assert time.monotonic() - started < 0.4
    assert result.status is HealthStatus.HEALTHY


def test_check_names_must_be_unique_and_callable() -> None:
    checker = make_checker()
    checker.add_check("a", lambda: True)
    with pytest.raises(ValueError, match="already exists"):
        checker.add_check("a", lambda: True)
    with pytest.raises(TypeError):
        checker.add_check("b", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        checker.add_check("c", lambda: True, timeout=0)
    assert checker.check_names == ["a"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [(lambda: 0.4, 0.4), (lambda: 7, 1.0), (lambda: -1, 0.0), (lambda: float("nan"), 0.0)],
)
async def test_load_callable_is_clamped(source: Any, expected: float) -> None:
    result = await make_checker(load_percentage=source).run()
    assert result.load_percentage == expected


async def test_async_load_callable_and_failing_one() -> None:
    async def load() -> float:
        return 0.6

    assert (await make_checker(load_percentage=load).run()).load_percentage == 0.6

    def broken() -> float:
        raise RuntimeError("no")

    result = await make_checker(load_percentage=broken).run()
    assert result.load_percentage == 0.0
    assert result.status is HealthStatus.HEALTHY


async def test_default_load_is_a_fraction() -> None:
    assert 0.0 <= estimate_load() <= 1.0
    assert 0.0 <= await estimate_load_async() <= 1.0
    result = await HealthChecker("svc").run()
    assert 0.0 <= result.load_percentage <= 1.0


def test_memory_fraction_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1000 kB\nMemFree:  100 kB\nMemAvailable:   250 kB\n")
    assert memory_fraction(meminfo) == 0.75
    meminfo.write_text("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 100 kB\nCached: 200 kB\n")
    assert memory_fraction(meminfo) == pytest.approx(0.6)
    assert memory_fraction(tmp_path / "missing") is None
    meminfo.write_text("garbage")
    assert memory_fraction(meminfo) is None


def test_uptime_follows_the_clock() -> None:
    now = [100.0]
    checker = HealthChecker("svc", clock=lambda: now[0])
    now[0] = 112.5
    assert checker.uptime_seconds == 12.5


class AsyncPing:
    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.calls = 0

    async def ping(self) -> bool:
        self.calls += 1
        return self.answer


class SyncExecute:
    def __init__(self) -> None:
        self.statements: list[str] = []
        self.thread: int | None = None

    def execute(self, statement: str) -> None:
        self.thread = threading.get_ident()
        self.statements.append(statement)


class AnswersAnyAttribute:
    """Like a MongoDB client: every attribute is a database."""

    def __getattr__(self, name: str) -> Any:
        return object()


async def test_database_probe_pings() -> None:
    db = AsyncPing()
    checker = make_checker()
    checker.add_database_check(db)
    assert (await checker.run()).status is HealthStatus.HEALTHY
    assert db.calls == 1
    db.answer = False
    result = await checker.run()
    assert result.failed_checks == ["database"]


async def test_database_probe_executes_select_1_in_a_thread() -> None:
    db = SyncExecute()
    checker = make_checker()
    checker.add_database_check(db)
    assert (await checker.run()).status is HealthStatus.HEALTHY
    assert db.statements == ["SELECT 1"]
    assert db.thread != threading.get_ident()


def test_database_probe_refuses_what_it_cannot_check() -> None:
    with pytest.raises(TypeError, match="no ping"):
        database_probe(AnswersAnyAttribute())
    with pytest.raises(TypeError):
        database_probe(42)


def test_database_probe_accepts_a_callable() -> None:
    def probe() -> bool:
        return True

    assert database_probe(probe) is probe


async def test_http_checks_of_external_services() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "down.example":
            raise httpx.ConnectError("refused")
        if request.url.host == "broken.example":
            return httpx.Response(502)
        return httpx.Response(404)  # up, even if the root is not a page

    checker = make_checker(transport=httpx.MockTransport(handler))
    checker.add_http_check("payment-api", "https://payment.example")
    checker.add_http_check("down", "https://down.example")
    checker.add_http_check("broken", "https://broken.example/health")
    result = await checker.run()
    assert result.failed_checks == ["down", "broken"]
    assert "ConnectError" in (result.custom_checks["down"].message or "")
    assert "502" in (result.custom_checks["broken"].message or "")


def test_checker_runs_on_asyncio() -> None:
    checker = make_checker()

    async def async_check() -> bool:
        await asyncio.sleep(0)
        return False

    checker.add_check("a", async_check)
    checker.add_check("b", lambda: True)
    result = asyncio.run(checker.run())
    assert result.failed_checks == ["a"]


async def test_a_hanging_check_answers_well_inside_the_registrys_probe_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With the old 5 s default a hanging dependency took /health to 5.02 s: the probe's limit."""
    from sd_core import RegistryConfig

    probe_timeout = RegistryConfig().health_check_timeout

    async def hangs() -> None:
        await trio.sleep_forever()

    checker = make_checker(clock=trio.current_time)
    checker.add_check("database", hangs)
    started = trio.current_time()
    result = await checker.run()
    took = trio.current_time() - started
    assert result.status is HealthStatus.UNHEALTHY
    assert result.custom_checks["database"].message == "timed out after 2 s"
    assert took <= probe_timeout / 2


def test_the_setup_helper_uses_the_short_default_too() -> None:
    import inspect

    from service_discovery import setup_service_health_checks

    default = inspect.signature(setup_service_health_checks).parameters["check_timeout"].default
    assert default == HealthChecker("s").check_timeout == 2.0


async def test_a_non_critical_failure_is_reported_but_the_instance_stays_healthy() -> None:
    checker = make_checker()
    checker.add_check("database", lambda: True)
    checker.add_check("cache", lambda: False, critical=False)

    @checker.check("recommendations", critical=False)
    async def recommendations() -> None:
        raise RuntimeError("down")

    result = await checker.run()
    assert result.status is HealthStatus.HEALTHY
    assert result.http_status == 200
    assert result.failed_checks == ["cache", "recommendations"]
    body = result.model_dump(mode="json")["custom_checks"]
    assert body["cache"] == {
        "status": "fail",
        "message": "check returned False",
        "duration_ms": body["cache"]["duration_ms"],
        "critical": False,
    }
    assert body["database"]["critical"] is True
    checker.add_check("queue", lambda: False)
    assert (await checker.run()).status is HealthStatus.UNHEALTHY


@pytest.mark.parametrize("url", ["not a url", "payment.example.com", "ftp://x", "http://", ""])
def test_an_external_service_url_that_cannot_work_is_refused_at_setup(url: str) -> None:
    checker = make_checker()
    with pytest.raises(ValueError, match="URL"):
        checker.add_http_check("payment-api", url)
    assert checker.check_names == []
