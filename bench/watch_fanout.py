"""Scenario 3: watch fan-out, per frontend.

    python -m bench.watch_fanout [--frontend quart|trio|both] [--watchers 10000] [--quick]

10,000 blocking queries (`GET /v1/discovery/services/watched?index=<current>&wait=5m`),
each on its own connection from one Python process (a raw asyncio protocol on
uvloop), park on one service. When the registry's `/metrics` shows all of
them parked, one change (a new instance registered in the service) is sent,
and the time from sending it until the last watcher has its full answer is
the fan-out time. Memory per parked waiter is the server's RSS with all
parked minus its RSS just before they connected, divided by their number
(connections, request state and the wait itself: everything a parked
watcher costs). Each repetition starts fresh servers (freed memory is not
handed back to the OS, so a reused process would under-report).

Baseline, in the same repetition: the bare app on the same stack
(`bench/bare_apps.py`), whose `GET /wait` parks on one event (with a
5-minute timer) until `POST /fire`, then serialises a 10-instance document.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from functools import partial

from . import raw_watchers
from .common import BenchError, Stat, log, print_table, ratio_stat, verdict
from .http_client import http_call, http_get, register_body, run_async, scrape_metrics
from .processes import Proc, Run, start_bare, start_registry, wait_ready
from .raw_watchers import (
    Figures,
    OneRequest,
    get_request,
    seed_service,
)
from .scenario_cli import base_parser, chosen_frontends, scenario

SERVICE = "watched"
TARGET_SECONDS = 1.0
TARGET_KIB = 10.0


class Watcher(OneRequest["Fleet"]):
    """One parked request; records when its whole answer has arrived."""

    def __init__(self, request: bytes, fleet: Fleet) -> None:
        super().__init__(request, fleet)
        self._buffer = b""
        self.status = 0
        self.index: int | None = None

    def data_received(self, data: bytes) -> None:
        if self.changed_at is not None:
            return
        buffer = self._buffer + data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self._buffer = buffer
            return
        head = buffer[:end].decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "x-discovery-index":
                self.index = int(value)
        if len(buffer) - end - 4 < length:
            self._buffer = buffer
            return
        self.changed_at = time.perf_counter()
        self.status = int(head[0].split(" ", 2)[1])
        self._buffer = b""
        self._fleet.update()


class Fleet(raw_watchers.Fleet[Watcher]):
    """Every watcher of one run, and an event set when all have an answer."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.done = 0

    def update(self) -> None:
        self.done += 1
        if self.done >= self.size:
            self.everyone.set()


def blocking_queries(port: int) -> int:
    """How many blocking queries the registry has parked now (from its `/metrics`)."""
    return int(scrape_metrics(port).get("sd_blocking_queries", 0))


async def wait_parked(count: Callable[[], int], want: int, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        have = await asyncio.to_thread(count)
        if have >= want:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"only {have} of {want} watchers parked after {limit:g}s")
        await asyncio.sleep(0.2)


async def one_run(
    proc: Proc,
    size: int,
    request: bytes,
    parked: Callable[[], int],
    trigger: tuple[str, bytes],
    index: int | None,
    settle: float,
) -> Figures:
    """`size` watchers sending `request`, parked once `parked()` counts them all; then
    `trigger` (path, body) wakes them. With `index`, every answer must carry a newer one."""
    fleet = Fleet(size)
    try:
        opened = await fleet.open(
            proc, lambda: Watcher(request, fleet), lambda: wait_parked(parked, size), settle
        )
        if fleet.done:
            raise BenchError(f"{fleet.done} watchers answered before the change")
        change = await fleet.change(
            proc,
            trigger,
            what="trigger",
            missing=lambda: f"only {fleet.done} of {size} answered within 60 s",
        )
        bad = [w for w in fleet.members if w.status != 200]
        if fleet.lost or bad:
            raise BenchError(f"{fleet.lost} connections lost, {len(bad)} answers not 200")
        if index is not None and (n := sum((w.index or 0) <= index for w in fleet.members)):
            raise BenchError(f"{n} answers carry no newer index")
        return Figures.of(opened, change, (w.changed_at or 0.0 for w in fleet.members))
    finally:
        fleet.close()


def registry_rep(proc: Proc, size: int, rep: int, settle: float) -> Figures:
    """Blocking queries on the registry's `watched` service; a registration wakes them."""
    try:
        seed_service(proc, SERVICE)
        path = f"/v1/discovery/services/{SERVICE}"
        index = int(http_call(proc.port, "GET", path).headers["x-discovery-index"])
        request = get_request(f"{path}?index={index}&wait=5m", proc.port)
        change = ("/v1/discovery/register", register_body(SERVICE, f"i-new-{rep}", 9))
        parked = partial(blocking_queries, proc.port)
        return run_async(one_run(proc, size, request, parked, change, index, settle))
    finally:
        proc.stop()


def bare_rep(proc: Proc, size: int, settle: float) -> Figures:
    """The bare app's `GET /wait`, woken by `POST /fire`."""
    try:
        for _ in range(50):
            http_get(proc.port, "/v1/discovery/services/hot")

        def parked() -> int:
            count: int = json.loads(http_get(proc.port, "/_parked")[1])["parked"]
            return count

        request = get_request("/wait", proc.port)
        return run_async(one_run(proc, size, request, parked, ("/fire", b"{}"), None, settle))
    finally:
        proc.stop()


def _one_rep(
    run: Run, frontend: str, loop: str, size: int, rep: int, settle: float
) -> tuple[Figures, Figures]:
    """Fresh servers: the registry and the bare app on its stack."""
    stack = "quart" if frontend == "quart" else "trio"
    env = {"HEALTH_CHECK_INTERVAL_SECONDS": "3600"}
    registry = start_registry(run, frontend, loop=loop, env=env, ready=False)
    baseline = start_bare(run, stack, loop=loop, ready=False)
    wait_ready(registry)
    wait_ready(baseline)
    ours = registry_rep(registry, size, rep, settle)
    log(f"  registry: {ours.describe()}")
    bare = bare_rep(baseline, size, settle)
    log(f"  bare app: {bare.describe()}")
    return ours, bare


def _frontend_rows(
    label: str, size: int, ours: list[Figures], bare: list[Figures]
) -> list[list[str]]:
    def row(figure: str, of: Callable[[Figures], float], spec: str, target: str) -> list[str]:
        mine, base = [of(r) for r in ours], [of(r) for r in bare]
        ratio = ratio_stat(mine, base).fmt(".2f", "x") if all(base) else "-"
        return [label, figure, Stat.of(mine).fmt(spec), Stat.of(base).fmt(spec), ratio, target]

    fanout = Stat.of(r.fanout_s for r in ours)
    kib = Stat.of(r.kib_each for r in ours)
    cpu = Stat.of(r.cpu_s for r in ours)
    fanout_target = f"<={TARGET_SECONDS:g} s: {verdict(fanout.median <= TARGET_SECONDS)}"
    per_watcher = f"registry: {cpu.median / size * 1e6:,.0f} us per watcher"
    kib_target = f"<={TARGET_KIB:g} KiB: {verdict(kib.median <= TARGET_KIB)}"
    return [
        row("all answered (s)", lambda r: r.fanout_s, ".3f", fanout_target),
        row("median answer (s)", lambda r: r.median_s, ".3f", "-"),
        row("server CPU from change to last answer (s)", lambda r: r.cpu_s, ".3f", per_watcher),
        row("server waited for CPU meanwhile (s)", lambda r: r.waited_s, ".3f", "-"),
        row("KiB per parked waiter", lambda r: r.kib_each, ".1f", kib_target),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=None, help="default 10,000")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    reps = args.reps or 3
    size = args.watchers or (300 if args.quick else 10_000)
    settle = 0.2 if args.quick else 1.0

    with scenario(args, "Scenario 3: watch fan-out") as run:
        print(f"{size:,} parked blocking queries, {reps} repetitions, fresh servers each\n")
        rows = []
        for frontend in chosen_frontends(args):
            label = f"quart ({args.loop})" if frontend == "quart" else "trio"
            ours: list[Figures] = []
            bare: list[Figures] = []
            for rep in range(reps):
                log(f"rep {rep + 1}/{reps}: {label}, {size} watchers")
                mine, base = _one_rep(run, frontend, args.loop, size, rep, settle)
                ours.append(mine)
                bare.append(base)
            rows += _frontend_rows(label, size, ours, bare)
        print_table(
            f"{size:,} watchers, one change: median (min-max)",
            "frontend | figure | registry | bare app | registry/bare | target",
            rows,
        )


if __name__ == "__main__":
    main()
