"""Scenario 6: watch streams beside blocking queries, and Quart on uvicorn beside hypercorn.

    python -m bench.watch_streams [--kinds quart,trio,quart-uvicorn] [--streams 10000]
                                  [--loop asyncio|uvloop] [--duration S] [--quick]

For each server kind (Quart and trio on hypercorn, Quart on uvicorn), in one run:

- Streams: 10,000 `GET /v1/discovery/watch?service=watched`, each on its own
  connection from one Python process (a raw asyncio protocol), each having
  received its first event. Then one change (an instance registered in the
  service); the figure is the time from sending it until the last stream has
  the new event. Memory per open stream is the server's RSS with all open
  minus its RSS before, divided by their number.
- Blocking queries, beside them: the same count and the same change, measured
  by `bench.watch_fanout` (fresh server of the same kind).
- Throughput of Quart on uvicorn against Quart on hypercorn (same loop, same
  run, alternating which goes first): heartbeats and the cached
  `GET /v1/discovery/services/{name}` under wrk, as `bench.http_hot_paths`
  drives them.

Each measurement starts a fresh server (freed memory is not handed back to the
OS, so a reused process would under-report).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import raw_watchers
from .common import BenchError, Stat, log, print_table, verdict
from .http_client import register_body, run_async
from .http_hot_paths import ENDPOINTS, drive_endpoint, prepare_registry, request_files
from .processes import Proc, Run, start_fake_instances, start_registry
from .raw_watchers import Figures, OneRequest, get_request, seed_service
from .scenario_cli import base_parser, scenario
from .watch_fanout import TARGET_KIB, TARGET_SECONDS
from .watch_fanout import registry_rep as blocking_rep
from .wrk_load import WrkResult, compared

SERVICE = "watched"
KINDS = ("quart", "trio", "quart-uvicorn")
#: uvicorn over hypercorn, heartbeat and cached read (the issue's target).
TARGET_SPEEDUP = 2.0
#: No keep-alive comment may arrive during a measurement.
QUIET_ENV = {
    "HEALTH_CHECK_INTERVAL_SECONDS": "3600",
    "SERVICE_DISCOVERY_WATCH_KEEPALIVE_SECONDS": "3600",
}


class StreamReader(OneRequest["Fleet"]):
    """One watch stream; counts the events (`id:` lines) it has received."""

    def __init__(self, request: bytes, fleet: Fleet) -> None:
        super().__init__(request, fleet)
        self._tail = b""
        self.ok: bool | None = None
        self.events = 0

    def data_received(self, data: bytes) -> None:
        if self.ok is None:
            self.ok = data.startswith(b"HTTP/1.1 200")
        seen = self._tail + data
        new = seen.count(b"\nid: ")
        self._tail = seen[-5:]
        if not new:
            return
        before, self.events = self.events, self.events + new
        if before == 0:
            self._fleet.opened += 1
        if before <= 1 < self.events:
            self.changed_at = time.perf_counter()
            self._fleet.changed += 1
        self._fleet.update()


class Fleet(raw_watchers.Fleet[StreamReader]):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.opened = 0
        self.changed = 0
        self.all_open = asyncio.Event()

    def update(self) -> None:
        """A stream the server closed counts as done (and is reported as lost)."""
        if self.opened + self.lost >= self.size:
            self.all_open.set()
        if self.changed + self.lost >= self.size:
            self.everyone.set()


@dataclass(frozen=True)
class StreamResult(Figures):
    lost: int = 0  # streams the server closed before the change reached them


async def _stream_run(proc: Proc, size: int, change_body: bytes, settle: float) -> StreamResult:
    fleet = Fleet(size)

    async def all_open() -> None:
        try:
            await asyncio.wait_for(fleet.all_open.wait(), 120)
        except TimeoutError:
            raise BenchError(f"only {fleet.opened} of {size} streams open after 120 s") from None
        if not all(r.ok for r in fleet.members if r.events):
            raise BenchError("streams refused while opening")

    try:
        request = get_request(f"/v1/discovery/watch?service={SERVICE}", proc.port)
        opened = await fleet.open(proc, lambda: StreamReader(request, fleet), all_open, settle)
        if fleet.changed:
            raise BenchError(f"{fleet.changed} streams had a second event before the change")
        change = await fleet.change(
            proc,
            ("/v1/discovery/register", change_body),
            what="change",
            missing=lambda: f"only {fleet.changed} of {size} streams had the change",
        )
        arrived = (r.changed_at for r in fleet.members if r.changed_at is not None)
        return StreamResult.of(opened, change, arrived, lost=fleet.lost)
    finally:
        fleet.close()


def stream_rep(proc: Proc, size: int, rep: int, settle: float) -> StreamResult:
    try:
        seed_service(proc, SERVICE)
        change = register_body(SERVICE, f"i-new-{rep}", 9)
        return run_async(_stream_run(proc, size, change, settle))
    finally:
        proc.stop()


def _label(kind: str, loop: str) -> str:
    return {"quart": f"quart+hypercorn ({loop})", "trio": "trio+hypercorn"}.get(
        kind, f"quart+uvicorn ({loop})"
    )


def _measure_kind(
    run: Run, kind: str, size: int, reps: int, loop: str, settle: float
) -> tuple[list[StreamResult], list[Figures]]:
    """Each repetition: streams on a fresh server, then blocking queries on another
    (freed memory is not handed back to the OS, so a reused process would under-report)."""
    label = _label(kind, loop)
    streams: list[StreamResult] = []
    blocking: list[Figures] = []
    for rep in range(reps):
        log(f"rep {rep + 1}/{reps}: {label}, {size} streams")
        s = stream_rep(start_registry(run, kind, loop=loop, env=QUIET_ENV), size, rep, settle)
        log(f"  streams: {s.describe()}, {s.lost} closed by the server")
        log(f"rep {rep + 1}/{reps}: {label}, {size} blocking queries")
        b = blocking_rep(start_registry(run, kind, loop=loop, env=QUIET_ENV), size, rep, settle)
        log(f"  blocking: {b.describe()}")
        streams.append(s)
        blocking.append(b)
    return streams, blocking


def _kind_rows(label: str, streams: list[StreamResult], blocking: list[Figures]) -> list[list[str]]:
    """One server kind's rows: streams beside blocking queries, figure by figure."""

    def row(figure: str, of: Callable[[Figures], float], target: str = "-") -> list[str]:
        mine, theirs = Stat.of(map(of, streams)), Stat.of(map(of, blocking))
        return [label, figure, mine.fmt(".3f"), theirs.fmt(".3f"), target]

    fanout = Stat.of(r.fanout_s for r in streams)
    kib = Stat.of(r.kib_each for r in streams)
    lost = Stat.of(r.lost for r in streams)
    return [
        row(
            "all had the change (s)",
            lambda r: r.fanout_s,
            f"<={TARGET_SECONDS:g} s: {verdict(fanout.median <= TARGET_SECONDS)}",
        ),
        row("median (s)", lambda r: r.median_s),
        row("server CPU, change to last (s)", lambda r: r.cpu_s),
        [label, "streams closed by the server (of all)", lost.fmt(".0f"), "-", "0"],
        [
            label,
            "KiB per open stream / parked query",
            kib.fmt(".1f"),
            Stat.of(r.kib_each for r in blocking).fmt(".1f"),
            f"<={TARGET_KIB:g} KiB: {verdict(kib.median <= TARGET_KIB)}",
        ],
    ]


def fanout_tables(run: Run, kinds: list[str], size: int, reps: int, loop: str) -> None:
    settle = 0.2 if size < 1000 else 1.0
    rows = []
    for kind in kinds:
        streams, blocking = _measure_kind(run, kind, size, reps, loop, settle)
        rows += _kind_rows(_label(kind, loop), streams, blocking)
    print_table(
        f"{size:,} watchers, one change: median (min-max) of {reps}",
        "server | figure | watch streams | blocking queries | target (streams)",
        rows,
    )


def throughput_table(run: Run, reps: int, duration: int, loop: str, connections: int) -> None:
    fake = start_fake_instances(run)
    files = request_files(run, fake)
    env = {"HEALTH_CHECK_INTERVAL_SECONDS": "2", "HEALTH_CHECK_TIMEOUT_SECONDS": "1"}
    servers = {}
    for kind in ("quart", "quart-uvicorn"):
        servers[kind] = start_registry(run, kind, loop=loop, env=env)
        prepare_registry(servers[kind], fake)
    endpoints = [e for e in ENDPOINTS if e.key in ("heartbeat", "service")]
    results: dict[tuple[str, str], list[WrkResult]] = {}
    for rep in range(reps):
        for endpoint in endpoints:
            order = ["quart", "quart-uvicorn"]
            for kind in order if rep % 2 == 0 else order[::-1]:
                log(f"rep {rep + 1}/{reps}: {_label(kind, loop)} {endpoint.label}")
                load = drive_endpoint(servers[kind], endpoint, duration, connections, files)
                results.setdefault((kind, endpoint.key), []).append(load)
    rows = []
    for endpoint in endpoints:
        hypercorn, uvicorn = (results[kind, endpoint.key] for kind in ("quart", "quart-uvicorn"))
        cells, speedup = compared(hypercorn, uvicorn)
        target = f">={TARGET_SPEEDUP:g}x: {verdict(speedup.median >= TARGET_SPEEDUP)}"
        rows.append([endpoint.label, *cells, target])
    print_table(
        f"Quart on uvicorn vs on hypercorn ({loop}): wrk -t1 -c{connections} -d{duration}s, "
        f"median (min-max) of {reps}",
        "endpoint | hypercorn req/s | uvicorn req/s | uvicorn/hypercorn | CPU us/req | target",
        rows,
    )


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], frontends=False)
    parser.add_argument("--kinds", default=",".join(KINDS), help="server kinds, comma-separated")
    parser.add_argument("--streams", type=int, default=None, help="default 10,000")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--duration", type=int, default=None, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args(argv)
    kinds = [kind for kind in args.kinds.split(",") if kind]  # empty: throughput only
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown server kinds: {sorted(unknown)}")
    reps = args.reps or (1 if args.quick else 3)
    size = args.streams or (50 if args.quick else 10_000)
    duration = args.duration or (1 if args.quick else 5)
    with scenario(args, "Scenario 6: watch streams, and quart on uvicorn") as run:
        print(f"{size:,} streams and {size:,} blocking queries per server kind, {reps} reps\n")
        if kinds:
            fanout_tables(run, kinds, size, reps, args.loop)
        if not args.no_throughput:
            throughput_table(run, reps, duration, args.loop, args.connections)


if __name__ == "__main__":
    main()
