"""Probe name lookups on the prober's own resolver: slow DNS holds nothing else up.

With 200 instances whose names did not resolve, the quart frontend took 14-39 s
to exit after SIGTERM (`asyncio.Runner.close()` waited for the default
executor's pending `getaddrinfo` calls), and every probe queued behind the
lookups. Here a lookup that never answers is injected (no real DNS): IP-literal
probes go on, the probe's deadline ends its lookup, and a server process exits
on SIGTERM while its lookups hang.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
import trio
from hanging_dns_server import MARKER

from conformance.server_process import ServerProcess, kept_socket
from frontends.outbound.probing.builtin_client import PlainProbeClient
from frontends.outbound.probing.by_check import ProberByCheck
from frontends.outbound.probing.resolver import HostResolver
from frontends.outbound.probing.tcp_client import TcpProber
from sd_core import CheckType, ProbeFailed, ProbePassed, RunProbe
from sd_core.probe_address_policy import ProbePolicy

Runner = Callable[[Callable[[], Awaitable[Any]]], Any]
RUNNERS: dict[str, Runner] = {
    "asyncio": lambda main: asyncio.run(main()),  # type: ignore[arg-type]
    "trio": trio.run,
}
both_loops = pytest.mark.parametrize("run", list(RUNNERS.values()), ids=list(RUNNERS))

#: How long the server may take to exit after SIGTERM before the test calls it stuck:
#: generous (the grace period is 1 s), as the bound is on exiting, not on speed.
EXIT_DEADLINE = 30.0


class HangingLookups:
    """A blocking lookup that never answers until released; counts the lookups begun."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0
        self._begun = threading.Condition()

    def __call__(self, host: str, port: int) -> list[str]:
        with self._begun:
            self.started += 1
            self._begun.notify_all()
        self.release.wait()
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def begun(self, count: int) -> None:
        """Wait (on a worker thread) until `count` lookups have begun."""

        def wait() -> None:
            with self._begun:
                self._begun.wait_for(lambda: self.started >= count)

        await anyio.to_thread.run_sync(wait)


@pytest.fixture
def hanging() -> Iterator[HangingLookups]:
    lookups = HangingLookups()
    try:
        yield lookups
    finally:
        lookups.release.set()  # the abandoned threads end


def _tcp(host: str, port: int, instance: str = "db-1") -> RunProbe:
    return RunProbe("db", instance, f"tcp://{host}:{port}", 1, CheckType.TCP)


@both_loops
def test_an_ip_literal_probe_completes_while_lookups_hang(
    run: Runner, hanging: HangingLookups, listening: int
) -> None:
    resolver = HostResolver(threads=2, lookup=hanging)
    prober = TcpProber(policy=ProbePolicy(), resolver=resolver)
    outcome: list[object] = []

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for n in range(6):  # more hanging names than the resolver has threads
                group.start_soon(prober.probe, _tcp(f"db-{n}.invalid", listening, f"db-{n}"))
            await hanging.begun(2)
            outcome.append(await prober.probe(_tcp("127.0.0.1", listening)))
            outcome.append(await prober.probe(_tcp("[::1]", 9)))  # never resolved either
            group.cancel_scope.cancel()
        resolver.close()

    run(main)
    assert outcome[0] == ProbePassed("db", "db-1", 1)
    assert isinstance(outcome[1], ProbeFailed)
    assert not outcome[1].reason.startswith("cannot resolve")
    assert hanging.started == 2  # bounded: the other lookups waited for a thread


@both_loops
def test_the_probe_deadline_ends_a_hanging_lookup(run: Runner, hanging: HangingLookups) -> None:
    resolver = HostResolver(threads=1, lookup=hanging)
    client = PlainProbeClient(max_body=1024, policy=ProbePolicy(), resolver=resolver)
    probe = RunProbe("svc", "i-1", "http://svc.invalid:8080/health", generation=1)
    ended: list[bool] = []

    async def main() -> None:
        with anyio.move_on_after(0.05) as scope:  # the driver's whole-probe deadline
            await client.probe(probe)
        ended.append(scope.cancelled_caught)
        # The abandoned lookup still holds the one thread; a queued one is skipped
        # once its probe gave up, so releasing the first frees the thread at once.
        with anyio.move_on_after(0.05):
            await client.probe(probe)
        await client.aclose()

    run(main)
    assert ended == [True]
    hanging.release.set()
    deadline = time.monotonic() + EXIT_DEADLINE
    while resolver.threads and time.monotonic() < deadline:
        resolver.close()
        time.sleep(0.01)
    assert resolver.threads == 0
    assert hanging.started == 1  # the second, abandoned while queued, never ran


@both_loops
def test_a_failed_lookup_fails_the_probe_and_a_closed_resolver_never_waits(
    run: Runner, hanging: HangingLookups, listening: int
) -> None:
    def unknown(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    failing = TcpProber(policy=ProbePolicy(), resolver=HostResolver(lookup=unknown))
    busy = HostResolver(threads=1, lookup=hanging)
    results: list[object] = []

    async def main() -> None:
        results.append(await failing.probe(_tcp("db.invalid", listening)))
        async with anyio.create_task_group() as group:
            group.start_soon(busy.addresses, "db.invalid", 80)
            await hanging.begun(1)
            busy.close()  # returns at once although its thread is stuck in a lookup
            group.cancel_scope.cancel()
        try:
            await busy.addresses("other.invalid", 80)
        except OSError as error:
            results.append(str(error))

    run(main)
    failed = results[0]
    assert isinstance(failed, ProbeFailed)
    assert failed.reason.startswith("cannot resolve host: ")
    assert results[1] == "the resolver is closed"


@both_loops
def test_ip_literals_never_reach_a_thread(run: Runner) -> None:
    def refuse(host: str, port: int) -> list[str]:
        raise AssertionError(f"looked up {host}")

    resolver = HostResolver(lookup=refuse)
    found: list[list[str]] = []

    async def main() -> None:
        for host in ("127.0.0.1", "::1", "[::1]"):
            found.append(await resolver.addresses(host, 80))

    run(main)
    assert found == [["127.0.0.1"], ["::1"], ["::1"]]
    assert resolver.threads == 0


def test_the_factory_shares_one_resolver_and_closes_it() -> None:
    from frontends.runtime.probers import make_prober
    from frontends.runtime.settings import load_settings

    prober = make_prober(load_settings({"HEALTH_CHECK_RESOLVER_THREADS": "3"}))
    assert isinstance(prober, ProberByCheck) and prober.resolver is not None
    assert isinstance(prober.http, PlainProbeClient)
    assert prober.http.resolver is prober.resolver

    async def main() -> None:
        await prober.aclose()
        with pytest.raises(OSError):
            await prober.resolver.addresses("db.invalid", 80)  # type: ignore[union-attr]

    trio.run(main)


# ------------------------------------------------- a server whose lookups hang


@pytest.mark.parametrize(
    ("frontend", "loop"),
    [("quart", "asyncio"), ("quart", "auto"), ("trio", None)],
    ids=["quart-asyncio", "quart-auto", "trio"],
)
def test_sigterm_exits_while_probe_lookups_hang(frontend: str, loop: str | None) -> None:
    """`--loop asyncio` is the loop whose default executor held shutdown up (uvloop,
    `auto` when installed, resolves in libuv instead); the same resolver runs on all."""
    env = {
        "SERVICE_DISCOVERY_SECRET": "resolver-test-secret-5d0e9c",
        "SHUTDOWN_GRACE_SECONDS": "1",
        "HEALTH_CHECK_INTERVAL_SECONDS": "2",
        "HEALTH_CHECK_TIMEOUT_SECONDS": "1",
        "HEALTH_CHECK_RESOLVER_THREADS": "4",
    }
    auth = {"authorization": "Bearer resolver-test-secret-5d0e9c"}
    with kept_socket() as sock:
        extra = ["--loop", loop] if loop else []
        server = ServerProcess(
            frontend, env, extra, sock=sock, module="tests.frontends.hanging_dns_server"
        )
        try:
            server.wait_ready()
            for n in range(40):
                body = {"service_name": "dns", "instance_id": f"i-{n}"}
                body |= {"host": f"i-{n}.invalid", "port": 8080}
                reply = httpx.post(
                    f"{server.url}/v1/discovery/register", json=body, headers=auth, timeout=5
                )
                assert reply.status_code == 200, reply.text
            deadline = time.monotonic() + EXIT_DEADLINE
            while server.stderr().count(MARKER) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.stderr().count(MARKER) >= 4, server.describe()
            # The probes of names time out while their lookups hang; the server serves on.
            assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
            server.stop(EXIT_DEADLINE)  # SIGTERM; exit code 0 before the deadline
        finally:
            server.cleanup()
