"""Scenario 2: probe capacity, per frontend.

    python -m bench.probe_capacity [--frontend quart|trio|both] [--quick]

N instances (10 per service), each with its own health path on one fast
local fake-peer server (`conformance.fake_peers`, which records when each
`/h/` path was probed), `HEALTH_CHECK_INTERVAL_SECONDS=10`, the default
`MAX_CONCURRENT_HEALTH_CHECKS=100`. Starting at N=10,000 the ladder adds
instances (x1.5) until the registry no longer keeps up. At each N, after one
interval of warm-up, 3 windows of 2 intervals each are measured; meanwhile an
open-loop client sends 50 API requests/s (reads of one service and
heartbeats, alternating) and records their latency.

A window is *on schedule* when every instance was probed in it, no instance
went longer than 2 intervals between probes (no probe later than one
interval), and the registry's `/metrics` shows no probe skipped because the
previous one was still running and no failed probe. N passes when all its
windows are on schedule.

Baseline, in the same command: httpx, configured as the registry's probe
client, fetching the same health URLs as fast as 100 concurrent workers can
on the same stack (`bench/bare_apps.py probe asyncio|trio`), pinned to the
server's CPU. The ratio compares the largest N's probe rate with it.

`--quick` keeps the probe rate of the target (1,000/s) with N=1,000 at a 1 s
interval, one N, 3 windows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .common import PYTHON, ROOT, BenchError, Stat, log, percentile, print_table, verdict
from .http_client import (
    heartbeat_body,
    http_call,
    http_get,
    open_loop,
    post_all,
    register_body,
    run_async,
    scrape_metrics,
)
from .processes import PIN, Proc, Run, child_setup, start_fake_instances, start_registry
from .scenario_cli import add_probe_client_option, base_parser, chosen_frontends, scenario

PER_SERVICE = 10
TARGET_RATE = 1000.0
TARGET_P99_MS = 100.0


def service_of(n: int) -> str:
    return f"svc-{n // PER_SERVICE:05d}"


def instance_of(n: int) -> str:
    return f"i-{n % PER_SERVICE}"


@dataclass(frozen=True)
class Window:
    probes_per_s: float
    instances_hit: int
    max_gap: float
    skipped: float
    failed: float
    api_p99_ms: float
    cpu: float
    waited: float

    def on_schedule(self, n: int, interval: float) -> bool:
        return (
            self.instances_hit >= n
            and self.max_gap <= 2 * interval
            and self.skipped == 0
            and self.failed == 0
        )


@dataclass(frozen=True)
class Step:
    n: int
    windows: list[Window]
    interval: float

    @property
    def passed(self) -> bool:
        return all(w.on_schedule(self.n, self.interval) for w in self.windows)


def fake_window(fake: Proc) -> dict[str, float]:
    answer = http_call(fake.port, "GET", "/_window", auth=False)
    result: dict[str, float] = answer.ok("fake instances /_window").json()
    return result


def probe_counters(proc: Proc) -> tuple[float, float]:
    metrics = scrape_metrics(proc.port)
    skipped = metrics.get('sd_probes_total{result="skipped_in_flight"}', 0.0)
    failed = metrics.get('sd_probes_total{result="failed"}', 0.0)
    return skipped, failed


def register_range(proc: Proc, fake: Proc, start: int, stop: int) -> float:
    bodies = [
        register_body(service_of(n), instance_of(n), fake.port, f"/h/{n}")
        for n in range(start, stop)
    ]
    return run_async(post_all(proc.port, "/v1/discovery/register", bodies))


CONTROL = "svc-control"


def api_load(instances: Iterable[tuple[str, str]]) -> list[tuple[str, str, bytes | None]]:
    """The API load beside the probes: each instance's service read, then its heartbeat."""
    requests: list[tuple[str, str, bytes | None]] = []
    for service, instance in instances:
        requests.append(("GET", f"/v1/discovery/services/{service}", None))
        requests.append(("POST", "/v1/discovery/heartbeat", heartbeat_body(service, instance)))
    return requests


def control_windows(proc: Proc, fake: Proc, interval: float, windows: int, rate: float) -> Stat:
    """API p99 (ms) with nothing but 10 instances to probe: the machine's own noise floor."""
    bodies = [register_body(CONTROL, f"c-{i}", fake.port, "/_control") for i in range(10)]
    run_async(post_all(proc.port, "/v1/discovery/register", bodies, connections=1))
    requests = api_load((CONTROL, f"c-{i}") for i in range(10))
    p99s = []
    for _ in range(windows):
        latencies = run_async(open_loop(proc.port, requests, rate=rate, seconds=interval))
        p99s.append(percentile(latencies, 99) * 1000)
    log(f"  control (nothing to probe): API p99 {Stat.of(p99s).fmt('.1f')} ms")
    return Stat.of(p99s)


def measure_step(
    proc: Proc, fake: Proc, n: int, interval: float, windows: int, rate: float
) -> Step:
    time.sleep(interval + 1)  # warm-up: every new instance's first probe falls in it
    fake_window(fake)
    results = []
    requests = api_load((service_of(k), instance_of(k)) for k in range(0, n, max(1, n // 50)))
    for _ in range(windows):
        skipped0, failed0 = probe_counters(proc)
        cpu0, wait0, started = proc.cpu_seconds(), proc.runqueue_seconds(), time.monotonic()
        latencies = run_async(open_loop(proc.port, requests, rate=rate, seconds=2 * interval))
        elapsed = time.monotonic() - started
        cpu = (proc.cpu_seconds() - cpu0) / elapsed
        waited = (proc.runqueue_seconds() - wait0) / elapsed
        stats = fake_window(fake)
        skipped1, failed1 = probe_counters(proc)
        proc.check_alive()
        window = Window(
            probes_per_s=stats["hits"] / stats["seconds"],
            instances_hit=int(stats["instances_hit"]),
            max_gap=stats["max_gap"],
            skipped=skipped1 - skipped0,
            failed=failed1 - failed0,
            api_p99_ms=percentile(latencies, 99) * 1000,
            cpu=cpu,
            waited=waited,
        )
        results.append(window)
        log(
            f"  N={n}: {window.probes_per_s:,.0f} probes/s, hit {window.instances_hit}/{n}, "
            f"max gap {window.max_gap:.2f}s, skipped {window.skipped:.0f}, "
            f"failed {window.failed:.0f}, API p99 {window.api_p99_ms:.1f} ms, "
            f"server CPU {window.cpu:.0%}, waited for CPU {window.waited:.0%}"
        )
    return Step(n, results, interval)


def _round(n: float) -> int:
    """Two significant digits, so the N of the steps read well."""
    if n < 100:
        return max(10, int(n))
    scale = 10 ** (len(str(int(n))) - 2)
    return int(round(n / scale) * scale)


@dataclass
class _Bounds:
    """Where the search stands: the largest N on schedule, the smallest off it, and the
    N the fastest failing step could have carried (its achieved probe rate)."""

    max_n: int
    factor: float
    lo: int | None = None
    hi: int | None = None
    estimate: float = float("inf")

    def following(self, step: Step, interval: float) -> int | None:
        """The N to try after `step`; None when the search is done.

        Up by `factor` while passing, then bisect; a failing N's achieved probe
        rate estimates the capacity, so the search jumps there instead of
        halving blindly.
        """
        n = step.n
        if step.passed:
            self.lo = n
            if self.hi is None:
                if n >= self.max_n or self.factor <= 1:
                    return None
                following = min(self.max_n, _round(n * self.factor))
            else:
                # Towards the rate the failing N managed, but at least +20 %.
                following = _round(
                    min((self.lo * self.hi) ** 0.5, max(self.lo * 1.2, self.estimate))
                )
        else:
            self.hi = n
            achieved = Stat.of(w.probes_per_s for w in step.windows).median * interval
            self.estimate = min(self.estimate, achieved)
            if self.lo is None:
                following = _round(min(n / 2, 0.8 * achieved))
            else:
                following = _round((self.lo * self.hi) ** 0.5)
        lo, hi = self.lo, self.hi
        if (lo is not None and hi is not None and hi <= lo * 1.25) or following in (lo, hi):
            return None
        return following if following >= 10 else None


def _server_env(interval: float, concurrency: int, max_n: int, probe_client: str) -> dict[str, str]:
    return {
        "HEALTH_CHECK_INTERVAL_SECONDS": f"{interval:g}",
        "HEALTH_CHECK_TIMEOUT_SECONDS": f"{min(5.0, interval / 2):g}",
        "MAX_CONCURRENT_HEALTH_CHECKS": str(concurrency),
        "SERVICE_DISCOVERY_MAX_INSTANCES": str(max(100_000, max_n)),
        "SERVICE_DISCOVERY_PROBE_CLIENT": probe_client,
    }


def search(
    run: Run, frontend: str, fake: Proc, args: argparse.Namespace, control: list[Stat]
) -> tuple[list[Step], list[str]]:
    """Find the largest N on schedule (`_Bounds` says which N next).

    Steps up add instances to the running server; a step down starts a fresh one.
    `args` as `main` completed it; returns the steps and, with `--gc-trace`, the GC notes.
    """
    interval, windows, rate = args.interval, args.reps, args.rate
    env = _server_env(interval, args.concurrency, args.max, args.probe_client)
    steps: list[Step] = []
    bounds = _Bounds(args.max, args.factor)
    n: int | None = args.start
    gc_trace: list[str] | None = [] if args.gc_trace else None
    proc: Proc | None = None
    registered = 0
    gc_log: Path | None = None

    def stop() -> None:
        assert proc is not None
        proc.stop()
        if gc_trace is not None and gc_log is not None:
            gc_trace.append(f"{frontend}, N up to {registered:,}: {gc_summary(gc_log)}")
            log(f"  GC: {gc_trace[-1]}")

    try:
        while n is not None and len(steps) < args.max_steps:
            if proc is None or n < registered:
                if proc is not None:
                    stop()
                if gc_trace is not None:
                    gc_log = run.tmp / f"gc-{frontend}-{len(steps)}.log"
                    env["BENCH_GC_LOG"] = str(gc_log)
                launcher = "bench.traced_server" if gc_trace is not None else "frontends"
                proc = start_registry(run, frontend, loop=args.loop, env=env, module=launcher)
                http_get(fake.port, "/_reset")
                registered = 0
                if not control:
                    control.append(control_windows(proc, fake, interval, windows, rate))
            log(f"{frontend}: N={n} ({registered} registered)")
            register_range(proc, fake, registered, n)
            registered = n
            steps.append(measure_step(proc, fake, n, interval, windows, rate))
            n = bounds.following(steps[-1], interval)
    finally:
        if proc is not None:
            stop()
    return steps, gc_trace or []


def gc_summary(path: Path) -> str:
    """The collections `bench.traced_server` recorded: count, total, longest."""
    try:
        lines = path.read_text().split()
    except OSError:
        return "no GC trace written"
    pauses: dict[int, list[float]] = {}
    for generation, seconds in zip(lines[::2], lines[1::2], strict=True):
        pauses.setdefault(int(generation), []).append(float(seconds))
    parts = []
    for gen in sorted(pauses):
        values = pauses[gen]
        longest = max(values) * 1000
        parts.append(f"gen{gen} {len(values)}x, {sum(values):.2f}s, longest {longest:.0f} ms")
    return "; ".join(parts)


def bare_probe_rates(
    fake: Proc, stack: str, count: int, concurrency: int, seconds: float, client: str
) -> list[float]:
    """3 repetitions of `bench.bare_apps probe` on the server's CPU: probes/s of each."""
    argv = [PYTHON, "-m", "bench.bare_apps", "probe", stack, "--base", fake.url("/h/")]
    argv += [f"--count={count}", f"--concurrency={concurrency}", f"--seconds={seconds:g}"]
    done = subprocess.run(
        [*argv, f"--client={client}", "--reps=3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds * 3 + 60,
        preexec_fn=child_setup(PIN.server),
    )
    if done.returncode != 0:
        raise BenchError(f"bare prober failed:\n{done.stderr[-2000:]}")
    rates: list[float] = json.loads(done.stdout.strip().splitlines()[-1])["probes_per_second"]
    return rates


def _parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--interval", type=float, default=None, help="seconds (default 10)")
    parser.add_argument("--start", type=int, default=None, help="first N (default 10,000)")
    parser.add_argument("--factor", type=float, default=1.5, help="step up (x) while passing")
    parser.add_argument("--max", type=int, default=100_000, help="largest N to try")
    parser.add_argument("--rate", type=float, default=50.0, help="API requests/s meanwhile")
    parser.add_argument("--max-steps", type=int, default=6, help="N values to try at most")
    parser.add_argument(
        "--concurrency", type=int, default=100, help="MAX_CONCURRENT_HEALTH_CHECKS (default 100)"
    )
    gc_help = "record the server's garbage-collection pauses (via bench/traced_server.py)"
    parser.add_argument("--gc-trace", action="store_true", help=gc_help)
    add_probe_client_option(parser)
    return parser


def _step_row(label: str, step: Step) -> list[str]:
    """One N tried: medians (min-max) over its windows."""
    w = step.windows
    return [
        label,
        f"{step.n:,}",
        Stat.of(x.probes_per_s for x in w).fmt(),
        Stat.of(x.max_gap for x in w).fmt(".2f", " s"),
        Stat.of(x.api_p99_ms for x in w).fmt(".1f"),
        Stat.of(x.cpu * 100 for x in w).fmt(".0f", "%"),
        Stat.of(x.waited * 100 for x in w).fmt(".0f", "%"),
        f"{sum(x.skipped for x in w):.0f}/{sum(x.failed for x in w):.0f}",
        "yes" if step.passed else "no",
    ]


def _capacity_row(
    label: str, steps: list[Step], interval: float, bare: Stat, raw: Stat, control: list[Stat]
) -> list[str]:
    """The largest N on schedule, against what the bare probers manage."""
    passing = [s for s in steps if s.passed]
    best = max(passing, key=lambda s: s.n) if passing else None
    at_target = next((s for s in steps if s.n * 1.0 / interval >= TARGET_RATE), None)
    capacity = best.n / interval if best else 0.0
    return [
        label,
        f"{best.n:,}" if best else f"< {steps[0].n:,}",
        f"{capacity:,.0f}",
        bare.fmt(),
        f"{capacity / bare.median:.0%}",
        raw.fmt(),
        f"{capacity / raw.median:.0%}",
        _target_cell(at_target, interval),
        control[0].fmt(".0f") if control else "-",
    ]


def _print_tables(detail: list[list[str]], rows: list[list[str]]) -> None:
    print_table(
        "Every N tried: median (min-max) over the windows",
        "frontend | N | probes/s | max gap | API p99 ms | server CPU | waited for CPU"
        " | skipped/failed | on schedule",
        detail,
    )
    print_table(
        "Probe capacity",
        "frontend | largest N on schedule | probes/s at it | bare httpx probes/s | ours/httpx"
        " | bare plain-GET probes/s | ours/plain"
        f" | target: >={TARGET_RATE:,.0f}/s on schedule, API p99 <{TARGET_P99_MS:g} ms"
        " | API p99 ms, nothing to probe",
        rows,
    )


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    args.reps = windows = args.reps or 3
    args.interval = interval = args.interval or (1.0 if args.quick else 10.0)
    args.start = start = args.start or (1000 if args.quick else 10_000)
    if args.quick:
        args.factor, args.max_steps = 1.0, 1

    with scenario(args, "Scenario 2: probe capacity") as run:
        print(
            f"interval {interval:g}s, MAX_CONCURRENT_HEALTH_CHECKS={args.concurrency}, "
            f"{windows} windows of {2 * interval:g}s per N, API load {args.rate:g} req/s "
            "open loop\n"
        )
        fake = start_fake_instances(run)
        rows = []
        detail = []
        for frontend in chosen_frontends(args):
            stack = "trio" if frontend == "trio" else "asyncio"
            log(f"{frontend}: bare probers on {stack} (httpx, and a plain keep-alive GET)")
            seconds = 0.5 if args.quick else 5.0
            bare, raw = (
                Stat.of(bare_probe_rates(fake, stack, start, args.concurrency, seconds, client))
                for client in ("httpx", "raw")
            )
            control: list[Stat] = []
            steps, gc_notes = search(run, frontend, fake, args, control)
            if gc_notes:
                print(f"\nGC pauses ({frontend}): " + " | ".join(gc_notes))
            label = f"{frontend} ({args.loop})" if frontend == "quart" else frontend
            label += f" + {args.probe_client} probe client"
            detail += [_step_row(label, step) for step in steps]
            rows.append(_capacity_row(label, steps, interval, bare, raw, control))
        _print_tables(detail, rows)


def _target_cell(step: Step | None, interval: float) -> str:
    if step is None:
        return "not measured"
    p99 = Stat.of(w.api_p99_ms for w in step.windows).median
    rate = step.n / interval
    ok = step.passed and p99 < TARGET_P99_MS
    on = "yes" if step.passed else "no"
    return f"{verdict(ok)} (N={step.n:,}: {rate:,.0f}/s, on schedule: {on}, p99 {p99:.1f} ms)"


if __name__ == "__main__":
    main()
