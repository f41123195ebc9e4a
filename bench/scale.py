"""Scenario 4: scale, per frontend: 100,000 instances in 1,000 services.

    python -m bench.scale [--frontend quart|trio|both] [--instances 100000] [--quick]

One server per frontend is filled over HTTP (100 instances per service, each
with 2 short metadata entries; probes every 86,400 s so they stay out of
the way):

1. at 1,000 instances: heartbeat throughput (wrk `-t1 -c64` cycling over all
   1,000 instances), 3 repetitions;
2. filled to 100,000: RSS per instance, `(RSS - RSS of the empty, warmed-up
   server) / instances`, read at a third, two thirds and all of the fill (the
   spread column), and again after the listings below have been served (they
   cache every instance's rendered JSON and the two full bodies);
3. at 100,000, 3 repetitions of: heartbeat throughput (cycling over all
   100,000), `GET /v1/discovery/services` and `GET /v1/discovery/prometheus`
   timed by the client to the last byte, right after a heartbeat (the
   normal case: any heartbeat or probe invalidates the cached body, so the
   listing is re-joined from cached per-instance fragments) and repeated
   with nothing changed in between (cached). The very first listing after
   the fill (every fragment rendered) is shown once.

Baseline, in the same command: the bare app on the same stack with `--store`
(`bench/bare_apps.py`), filled with the same 100,000 registration bodies
(parsed JSON dicts in one dict), serialising the whole store with
`json.dumps` for the two listings, and answering heartbeat-shaped POSTs.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

from .common import SECRET, Stat, log, print_table, ratio_stat, verdict
from .http_client import Conn, heartbeat_body, post_all, register_body, run_async
from .processes import Proc, Run, start_bare, start_registry, wait_ready
from .scenario_cli import base_parser, chosen_frontends, scenario
from .wrk_load import WrkResult, wrk

PER_SERVICE = 100
SMALL = 1_000
TARGET_KIB = 2.0
TARGET_HEARTBEAT_RATIO = 0.9
TARGET_LISTING_S = 1.0
LISTINGS = {"services": "/v1/discovery/services", "prometheus": "/v1/discovery/prometheus"}
HEADS = "figure | registry | bare app | registry/bare | target"


def service_of(n: int) -> str:
    return f"svc-{n // PER_SERVICE:04d}"


def instance_of(n: int) -> str:
    return f"i-{n % PER_SERVICE:03d}"


def bodies(start: int, stop: int) -> list[bytes]:
    """Registrations of instances `start..stop`, each with 2 short metadata entries."""
    return [register_body(service_of(n), instance_of(n), 9) for n in range(start, stop)]


async def timed_get(port: int, path: str, *, before: bytes | None = None) -> tuple[float, int]:
    """Seconds to the last byte of `GET path` (after an untimed heartbeat `before`)."""
    conn = await Conn.open(port)
    try:
        if before is not None:
            (await conn.request("POST", "/v1/discovery/heartbeat", before)).ok("heartbeat")
        started = time.perf_counter()
        answer = await conn.request("GET", path)
        elapsed = time.perf_counter() - started
        return elapsed, len(answer.ok(f"GET {path}").body)
    finally:
        await conn.close()


def fill(proc: Proc, start: int, stop: int, checkpoints: int, base_rss: int) -> list[float]:
    """Register instances start..stop; KiB per instance at each of `checkpoints` points."""
    per_instance = []
    edges = [start + (stop - start) * (k + 1) // checkpoints for k in range(checkpoints)]
    at = start
    for edge in edges:
        seconds = run_async(post_all(proc.port, "/v1/discovery/register", bodies(at, edge)))
        log(f"  {proc.name}: {edge:,} registered ({(edge - at) / seconds:,.0f}/s)")
        at = edge
        time.sleep(0.5)
        per_instance.append((proc.rss_kib() - base_rss) / edge)
    return per_instance


def warm_up(proc: Proc) -> None:
    """Exercise every path once, so lazily built code and caches are in the empty RSS."""

    async def go() -> None:
        conn = await Conn.open(proc.port)
        try:
            one = register_body("warm", "w-1", 9)
            for _ in range(20):
                await conn.request("POST", "/v1/discovery/register", one)
                await conn.request("POST", "/v1/discovery/heartbeat", heartbeat_body("warm", "w-1"))
                for path in (*LISTINGS.values(), "/v1/discovery/services/warm"):
                    await conn.request("GET", path)
            await conn.request("DELETE", "/v1/discovery/unregister/warm/w-1")
        finally:
            await conn.close()

    run_async(go())
    time.sleep(0.5)


@dataclass
class Figures:
    rss_empty_kib: int = 0
    kib_fill: list[float] = field(default_factory=list)
    kib_after_listings: float = 0.0
    rss_total_kib: int = 0
    heartbeat_small: list[WrkResult] = field(default_factory=list)
    heartbeat_large: list[WrkResult] = field(default_factory=list)
    first: dict[str, float] = field(default_factory=dict)
    after_heartbeat: dict[str, list[float]] = field(default_factory=dict)
    cached: dict[str, list[float]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


def heartbeat_wrk(run: Run, proc: Proc, count: int, duration: int, name: str) -> WrkResult:
    path = run.tmp / name
    if not path.exists():
        beats = (heartbeat_body(service_of(n), instance_of(n)) for n in range(count))
        run.write_lines(name, (beat.decode() for beat in beats))
    script_args = ["/v1/discovery/heartbeat", str(path), SECRET]
    return wrk(proc.url(), "post_json.lua", script_args, duration=duration, server=proc)


def _parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=None, help="default 100,000")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--duration", type=int, default=None, help="seconds per wrk run")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    reps = args.reps or 3
    total = args.instances or (2_000 if args.quick else 100_000)
    duration = args.duration or (1 if args.quick else 5)

    with scenario(args, "Scenario 4: scale") as run:
        print(
            f"{total:,} instances in {total // PER_SERVICE:,} services vs {SMALL:,}; "
            f"wrk -t1 -c64 -d{duration}s; {reps} repetitions\n"
        )
        rows = []
        for frontend in chosen_frontends(args):
            label = f"quart ({args.loop})" if frontend == "quart" else "trio"
            ours, bare = _measure(run, frontend, args.loop, label, total, reps, duration)
            rows += _rows(label, ours, bare, total)
            title = f"{label}: {total:,} instances (median (min-max) of {reps} repetitions)"
            print_table(title, HEADS, rows[-10:])
        title = f"Scale: {total:,} instances in {total // PER_SERVICE:,} services, every frontend"
        print_table(title, HEADS, rows)


Sides = tuple[tuple[Figures, Proc], tuple[Figures, Proc]]  # (ours, registry), (bare, app)


def _measure(
    run: Run, frontend: str, loop: str, label: str, total: int, reps: int, duration: int
) -> tuple[Figures, Figures]:
    """The registry and the bare app on the same stack, filled to `total`, side by side."""
    env = {
        "HEALTH_CHECK_INTERVAL_SECONDS": "86400",
        "SERVICE_DISCOVERY_MAX_INSTANCES": str(max(100_000, total)),
        "SELF_PRESERVATION_THRESHOLD": "0",
    }
    stack = "quart" if frontend == "quart" else "trio"
    ours, bare = Figures(), Figures()
    proc = start_registry(run, frontend, loop=loop, env=env, ready=False)
    base = start_bare(run, stack, loop=loop, store=True, ready=False)
    sides: Sides = ((ours, proc), (bare, base))
    for _, server in sides:
        wait_ready(server)
    for _, server in sides:
        warm_up(server)
    ours.rss_empty_kib, bare.rss_empty_kib = proc.rss_kib(), base.rss_kib()

    log(f"{label}: {SMALL:,} instances")
    fill(proc, 0, SMALL, 1, ours.rss_empty_kib)
    for rep in range(reps):
        log(f"  rep {rep + 1}/{reps}: heartbeat at {SMALL:,}")
        ours.heartbeat_small.append(heartbeat_wrk(run, proc, SMALL, duration, "hb-small.txt"))
    log(f"{label}: filling to {total:,}")
    ours.kib_fill = fill(proc, SMALL, total, 3, ours.rss_empty_kib)
    log(f"bare {stack}: filling to {total:,}")
    bare.kib_fill = fill(base, 0, total, 3, bare.rss_empty_kib)

    for figures, server in sides:
        for kind, path in LISTINGS.items():
            figures.first[kind], figures.sizes[kind] = run_async(timed_get(server.port, path))
    for rep in range(reps):
        log(f"  rep {rep + 1}/{reps}: heartbeat at {total:,}, listings")
        _large_rep(run, sides, rep, total, duration)
    for figures, server in sides:
        figures.rss_total_kib = server.rss_kib()
        figures.kib_after_listings = (figures.rss_total_kib - figures.rss_empty_kib) / total
        server.check_alive()
        server.stop()
    return ours, bare


def _large_rep(run: Run, sides: Sides, rep: int, total: int, duration: int) -> None:
    """At `total`: heartbeats under wrk, then each listing after one heartbeat and again."""
    for figures, server in sides:
        figures.heartbeat_large.append(heartbeat_wrk(run, server, total, duration, "hb-large.txt"))
    for kind, path in LISTINGS.items():
        beat = heartbeat_body(service_of(rep), instance_of(rep))
        for figures, server in sides:
            seconds, _ = run_async(timed_get(server.port, path, before=beat))
            figures.after_heartbeat.setdefault(kind, []).append(seconds)
            seconds, _ = run_async(timed_get(server.port, path))
            figures.cached.setdefault(kind, []).append(seconds)


def _rows(label: str, ours: Figures, bare: Figures, total: int) -> list[list[str]]:
    rows = _memory_rows(label, ours, bare) + _heartbeat_rows(label, ours, bare, total)
    for kind, path in LISTINGS.items():
        rows += _listing_rows(label, ours, bare, kind, path)
    first = [f"{f.first['services']:.3f}, {f.first['prometheus']:.3f}" for f in (ours, bare)]
    figure = f"{label}: first listings after the fill (services, prometheus), s"
    return [*rows, [figure, *first, "-", "-"]]


def _memory_rows(label: str, ours: Figures, bare: Figures) -> list[list[str]]:
    fill_stat = Stat.of(ours.kib_fill)
    kib = ours.kib_after_listings
    return [
        [
            f"{label}: KiB per instance after the fill (at 1/3, 2/3, all)",
            f"{fill_stat.values[-1]:.2f} ({fill_stat.lo:.2f}-{fill_stat.hi:.2f})",
            f"{bare.kib_fill[-1]:.2f}",
            f"{fill_stat.values[-1] / bare.kib_fill[-1]:.2f}x",
            f"<={TARGET_KIB:g} KiB: {verdict(fill_stat.values[-1] <= TARGET_KIB)}",
        ],
        [
            f"{label}: KiB per instance after serving the listings",
            f"{kib:.2f} (RSS {ours.rss_total_kib / 1024:,.0f} MiB)",
            f"{bare.kib_after_listings:.2f} (RSS {bare.rss_total_kib / 1024:,.0f} MiB)",
            f"{kib / bare.kib_after_listings:.2f}x",
            f"<={TARGET_KIB:g} KiB: {verdict(kib <= TARGET_KIB)}",
        ],
    ]


def _heartbeat_rows(label: str, ours: Figures, bare: Figures, total: int) -> list[list[str]]:
    hb_small = Stat.of(r.rps for r in ours.heartbeat_small)
    hb_large = Stat.of(r.rps for r in ours.heartbeat_large)
    hb_ratio = hb_large.median / hb_small.median
    cpu_small = Stat.of(r.cpu_us for r in ours.heartbeat_small)
    cpu_large = Stat.of(r.cpu_us for r in ours.heartbeat_large)
    cpu_ratio = cpu_small.median / cpu_large.median
    bare_large = [r.rps for r in bare.heartbeat_large]
    return [
        [f"{label}: heartbeat req/s at {SMALL:,}", hb_small.fmt(), "-", "-", "-"],
        [
            f"{label}: heartbeat req/s at {total:,}",
            hb_large.fmt(),
            Stat.of(bare_large).fmt(),
            ratio_stat([r.rps for r in ours.heartbeat_large], bare_large).fmt(".0%"),
            f"{total:,} vs {SMALL:,}: {hb_ratio:.0%} "
            f"(>={TARGET_HEARTBEAT_RATIO:.0%}: {verdict(hb_ratio >= TARGET_HEARTBEAT_RATIO)})",
        ],
        [
            f"{label}: server CPU us per heartbeat at {SMALL:,} -> {total:,}",
            f"{cpu_small.fmt()} -> {cpu_large.fmt()}",
            Stat.of(r.cpu_us for r in bare.heartbeat_large).fmt(),
            "-",
            f"capacity {total:,} vs {SMALL:,}: {cpu_ratio:.0%} "
            f"(>={TARGET_HEARTBEAT_RATIO:.0%}: {verdict(cpu_ratio >= TARGET_HEARTBEAT_RATIO)})",
        ],
    ]


def _listing_rows(
    label: str, ours: Figures, bare: Figures, kind: str, path: str
) -> list[list[str]]:
    """A listing right after a heartbeat, then unchanged: seconds, beside the bare app's."""

    def row(figure: str, mine: list[float], base: list[float], target: str) -> list[str]:
        times = [Stat.of(mine).fmt(".3f"), Stat.of(base).fmt(".3f")]
        ratio = ratio_stat(mine, base).fmt(".2f", "x")
        return [f"{label}: GET {path} {figure}", *times, ratio, target]

    after = ours.after_heartbeat[kind]
    ok = verdict(Stat.of(after).median < TARGET_LISTING_S)
    target = f"<{TARGET_LISTING_S:g} s: {ok}" if kind == "services" else "-"
    mib = ours.sizes[kind] / 2**20
    return [
        row(f"after a heartbeat, s ({mib:.0f} MiB)", after, bare.after_heartbeat[kind], target),
        row("unchanged (cached), s", ours.cached[kind], bare.cached[kind], "-"),
    ]


if __name__ == "__main__":
    main()
