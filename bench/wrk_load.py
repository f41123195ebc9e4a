"""wrk runs: a fixed-duration load of one Lua script (`bench/wrk/`), read back as figures."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .common import BenchError, Stat, ratio_stat
from .processes import PIN, Proc, child_setup

WRK_DIR = Path(__file__).resolve().parent / "wrk"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    bad_status: int
    server_cpu_s: float | None = None
    server_wait_s: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def wait_share(self) -> float:
        """Share of the run the server was runnable but another job had its CPU."""
        if self.server_wait_s is None or not self.seconds:
            return float("nan")
        return self.server_wait_s / self.seconds

    @property
    def cpu_us(self) -> float:
        """Server CPU time (user + system) per answered request, in microseconds."""
        if self.server_cpu_s is None or not self.requests:
            return float("nan")
        return self.server_cpu_s / self.requests * 1e6


def compared(base: Sequence[WrkResult], other: Sequence[WrkResult]) -> tuple[list[str], Stat]:
    """Cells for runs of one load on two servers back to back: req/s of each, other/base
    per repetition, CPU us per request base -> other; and that ratio."""
    ratio = ratio_stat([r.rps for r in other], [r.rps for r in base])
    base_us, other_us = (Stat.of(r.cpu_us for r in runs).median for runs in (base, other))
    rps = [Stat.of(r.rps for r in runs).fmt() for runs in (base, other)]
    return [*rps, ratio.fmt(".2f", "x"), f"{base_us:,.0f} -> {other_us:,.0f}"], ratio


def wrk(
    url: str,
    script: str,
    script_args: Sequence[str] = (),
    *,
    duration: int,
    connections: int = 64,
    threads: int = 1,
    server: Proc | None = None,
) -> WrkResult:
    """One wrk run (pinned to the client CPUs); refuses results with wrong answers.

    With `server`, also the CPU time that process used meanwhile: on a shared,
    noisy machine CPU per request is steadier than requests per second,
    which depend on how much of its core the server was given.
    """
    if shutil.which("wrk") is None:
        raise BenchError("wrk not found: apt-get install -y wrk")
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s"]
    argv += ["-s", str(WRK_DIR / script), url, "--", *script_args]
    cpu_before = server.cpu_seconds() if server is not None else 0.0
    wait_before = server.runqueue_seconds() if server is not None else 0.0
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=duration + 60,
        preexec_fn=child_setup(PIN.client),
    )
    cpu = server.cpu_seconds() - cpu_before if server is not None else None
    wait = server.runqueue_seconds() - wait_before if server is not None else None
    result = _result(done, cpu, wait)
    if result.requests == 0 or result.bad_status > 0:
        raise BenchError(
            f"wrk {url} {' '.join(script_args)}: {result.bad_status} non-2xx answers "
            f"of {result.requests}"
        )
    return result


def _result(
    done: subprocess.CompletedProcess[str], cpu: float | None, wait: float | None
) -> WrkResult:
    """The figures of the `BENCH_JSON` line `bench/wrk/common.lua` prints."""
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            break
    else:
        raise BenchError(f"wrk gave no result ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        bad_status=data["status"],
        server_cpu_s=cpu,
        server_wait_s=wait,
    )
