"""The TCP prober on both loops, and the prober that routes a probe by its check type."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from frontends.outbound.probing.by_check import ProberByCheck
from frontends.outbound.probing.tcp_client import TcpProber
from sd_core import CheckType, ProbeFailed, ProbePassed, ProbeResult, RunProbe
from sd_core.probe_address_policy import ProbePolicy, parse_networks

Runner = Callable[[Callable[[], Awaitable[Any]]], Any]
RUNNERS: dict[str, Runner] = {
    "asyncio": lambda main: asyncio.run(main()),  # type: ignore[arg-type]
    "trio": trio.run,
}
both_loops = pytest.mark.parametrize("run", list(RUNNERS.values()), ids=list(RUNNERS))


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def _tcp(url: str) -> RunProbe:
    return RunProbe("db", "db-1", url, 7, CheckType.TCP)


def _run(run: Runner, prober: Any, probe: RunProbe) -> ProbeResult:
    async def main() -> ProbeResult:
        try:
            result: ProbeResult = await prober.probe(probe)
            return result
        finally:
            await prober.aclose()

    result: ProbeResult = run(main)
    return result


@both_loops
def test_a_connect_passes(run: Runner, listening: int) -> None:
    result = _run(run, TcpProber(policy=ProbePolicy()), _tcp(f"tcp://127.0.0.1:{listening}"))
    assert result == ProbePassed("db", "db-1", 7)


@both_loops
def test_a_refused_connect_fails(run: Runner, closed_port: int) -> None:
    result = _run(run, TcpProber(policy=ProbePolicy()), _tcp(f"tcp://127.0.0.1:{closed_port}"))
    assert isinstance(result, ProbeFailed) and result.reason.startswith("cannot connect")


@both_loops
def test_the_allowlist_holds_for_tcp(run: Runner, listening: int) -> None:
    policy = ProbePolicy(parse_networks("10.0.0.0/8"))
    result = _run(run, TcpProber(policy=policy), _tcp(f"tcp://127.0.0.1:{listening}"))
    assert isinstance(result, ProbeFailed) and result.reason.startswith("refused")


@both_loops
@pytest.mark.parametrize("url", ["http://127.0.0.1:80/", "tcp://127.0.0.1", "tcp://:80"])
def test_a_malformed_address_fails_without_a_connection(run: Runner, url: str) -> None:
    result = _run(run, TcpProber(policy=ProbePolicy()), _tcp(url))
    assert isinstance(result, ProbeFailed) and result.reason.startswith("bad address")


class _Recording:
    def __init__(self) -> None:
        self.seen: list[RunProbe] = []
        self.closed = False

    async def probe(self, probe: RunProbe) -> ProbeResult:
        self.seen.append(probe)
        return ProbePassed(probe.service_name, probe.instance_id, probe.generation)

    async def aclose(self) -> None:
        self.closed = True


def test_each_probe_goes_to_the_prober_of_its_check() -> None:
    http, tcp = _Recording(), _Recording()
    by_check = ProberByCheck(http=http, tcp=tcp)
    probes = [
        RunProbe("s", "a", "http://h:1/health", 1),
        RunProbe("s", "b", "tcp://h:1", 1, CheckType.TCP),
        RunProbe("s", "c", "http://h:1/health", 1, CheckType.TTL),
    ]

    async def main() -> list[ProbeResult]:
        results = [await by_check.probe(probe) for probe in probes]
        await by_check.aclose()
        return results

    results = asyncio.run(main())
    assert [p.instance_id for p in http.seen] == ["a"]
    assert [p.instance_id for p in tcp.seen] == ["b"]
    assert isinstance(results[2], ProbeFailed)
    assert http.closed and tcp.closed
