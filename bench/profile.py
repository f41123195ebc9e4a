"""Where the time goes: py-spy samples of a server under one scenario's load.

    python -m bench.profile heartbeat|register|read|probes [--frontend quart|quart-uvicorn|trio]
        [--loop asyncio|uvloop] [--seconds 10]

Starts the server the scenario uses, drives it (wrk for the HTTP paths; N
instances at a short interval for `probes`), records it with `py-spy record
--format raw` and prints the frames with the largest inclusive and self
share of samples. Needs py-spy (`.venv/bin/pip install py-spy`) and root or
ptrace permission. `--probe-client httpx` profiles the server probing with
httpx instead of the built-in client.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sd_core import HttpRequest
from sd_core.instance import Instance
from sd_core.render import instance_json

from .common import SECRET, BenchError, Stat, log, wait_until
from .http_client import heartbeat_body, http_call, post_all, register_body, run_async
from .processes import Proc, Run, start_fake_instances, start_registry
from .scenario_cli import add_probe_client_option, base_parser, scenario
from .wrk_load import wrk


def summarise(raw: Path, top: int) -> None:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        raise BenchError("py-spy recorded no samples")
    print(f"\n{total} samples\n\nInclusive (frames under the event loop):")
    skip = ("run_forever", "_run_once", "Handle._run", "run_until_complete", "unrolled_run")
    shown = 0
    for frame, n in inclusive.most_common():
        if n == total or any(s in frame for s in skip):
            continue
        print(f"  {n / total:6.1%}  {frame}")
        shown += 1
        if shown >= top:
            break
    print("\nSelf:")
    for frame, n in own.most_common(top // 2):
        print(f"  {n / total:6.1%}  {frame}")


async def _fanout(proc: Proc, spy_argv: list[str], size: int) -> None:
    """Park `size` watchers, record while one change wakes them all."""
    import asyncio

    from .raw_watchers import get_request
    from .watch_fanout import Fleet, Watcher, blocking_queries, wait_parked

    path = "/v1/discovery/services/svc-0000"

    def all_probed() -> bool:  # a first probe's status change would answer every watcher
        return len(http_call(proc.port, "GET", f"{path}/healthy").json()["healthy_instances"]) == 10

    wait_until(all_probed, "10 instances probed healthy before the index is taken")
    index = http_call(proc.port, "GET", path).headers["x-discovery-index"]
    fleet = Fleet(size)
    request = get_request(f"{path}?index={index}&wait=5m", proc.port)

    def parked() -> int:
        return blocking_queries(proc.port)

    try:
        await fleet.open(
            proc, lambda: Watcher(request, fleet), lambda: wait_parked(parked, size), 0
        )
        spy = await asyncio.create_subprocess_exec(
            *spy_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await asyncio.sleep(0.5)
        log(f"{size} parked; one change while py-spy records")
        change = await fleet.change(
            proc,
            ("/v1/discovery/register", register_body("svc-0000", "new", 9)),
            what="change",
            missing=lambda: f"only {fleet.done} of {size} answered within 60 s",
        )
        log(f"all answered in {time.perf_counter() - change.sent_at:.3f}s")
        await spy.wait()
    finally:
        fleet.close()


_OFFSET = 1.7e9  # monotonic to wall clock, as the registry renders timestamps


def _fleet(count: int) -> list[Instance]:
    return [
        Instance(
            f"svc-{n // 100:04d}",
            f"i-{n % 100:03d}",
            "127.0.0.1",
            9,
            "/health",
            {"version": "1.0.0", "zone": "a"},
            0.0,
            1000.0 + n * 0.001,
        )
        for n in range(count)
    ]


def _stamp(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _plain(i: Instance) -> bytes:
    """The baseline: the record as a dict, `datetime` timestamps, `json.dumps`."""
    checked = i.last_health_check
    document = {
        "service_name": i.service_name,
        "instance_id": i.instance_id,
        "host": i.host,
        "port": i.port,
        "health_endpoint": i.health_endpoint,
        "status": i.status.value,
        "last_health_check": None if checked is None else _stamp(checked + _OFFSET),
        "last_heartbeat": _stamp(i.last_heartbeat + _OFFSET),
        "load_percentage": i.load,
        "metadata": i.metadata,
        "registered_at": _stamp(i.registered_at + _OFFSET),
        "check": {"type": i.check.value},
        "maintenance": None
        if i.maintenance is None
        else {"reason": i.maintenance.reason, "since": _stamp(i.maintenance.since + _OFFSET)},
    }
    return json.dumps(document, separators=(",", ":")).encode()


def _product(instance: Instance) -> bytes:
    return instance_json(instance, _OFFSET)


def _print_medians(rows: dict[str, list[float]], count: int, reps: int) -> None:
    print(f"\nus per instance fragment, {count:,} instances, median (min-max) of {reps}:\n")
    base = Stat.of(rows["baseline: json.dumps + datetime"]).median
    for name, values in rows.items():
        stat = Stat.of(values)
        print(f"  {stat.fmt('.1f'):>18}  {stat.median / base:5.2f}x  {name}")


def render_split(count: int, reps: int) -> None:
    """Cost of re-rendering instance fragments, as a full listing does after every
    instance heartbeated (each heartbeat moves `last_heartbeat`), next to the
    baseline a plain implementation pays in the same run: `json.dumps` of the
    record with `datetime` timestamps. No server; the core's own functions."""
    rows: dict[str, list[float]] = {}

    def timed(label: str, render: Callable[[Instance], bytes], instances: list[Instance]) -> None:
        started = time.perf_counter()
        for instance in instances:
            render(instance)
        rows.setdefault(label, []).append((time.perf_counter() - started) / count * 1e6)

    for _ in range(reps):
        instances = _fleet(count)
        timed("baseline: json.dumps + datetime", _plain, instances)
        timed("instance_json, new instance", _product, instances)
        for i in instances:  # what a heartbeat does to the fragment
            i.last_heartbeat += 1.0
            i.forget_rendered(targets=False)
        timed("instance_json, after a heartbeat", _product, instances)
        assert all(_plain(i) == instance_json(i, _OFFSET) for i in instances[:1000])
    _print_medians(rows, count, reps)
    stale_listing(count, reps)


def stale_listing(count: int, reps: int) -> None:
    """The full listing's body once every instance heartbeated since the last one: the
    steady state of a live fleet, where the scale scenario's listings after one
    heartbeat re-render a single fragment. The core alone, through its HTTP mapping."""
    import json

    from sd_core.testing import SimulatedRegistry

    sim = SimulatedRegistry()
    for n in range(count):
        body = {
            "service_name": f"svc-{n // 100:04d}",
            "instance_id": f"i-{n % 100:03d}",
            "host": "127.0.0.1",
            "port": 9,
            "health_endpoint": "/health",
            "metadata": {"version": "1.0.0", "zone": "a"},
        }
        assert sim.request("POST", "/v1/discovery/register", json_body=body).status == 200
    token = f"Bearer {sim.secret}"
    heartbeats = [
        json.dumps({"service_name": f"svc-{n // 100:04d}", "instance_id": f"i-{n % 100:03d}"})
        for n in range(count)
    ]
    seconds: list[float] = []
    size = 0
    for _ in range(reps):
        sim.advance(1.0)
        for body_text in heartbeats:
            sim.api.handle(
                HttpRequest(
                    "POST",
                    "/v1/discovery/heartbeat",
                    b"",
                    token,
                    "application/json",
                    body_text.encode(),
                ),
                sim.clock.now,
            )
        started = time.perf_counter()
        answer = sim.send("GET", "/v1/discovery/services", authorization=token)
        seconds.append(time.perf_counter() - started)
        assert answer.status == 200
        size = len(answer.body)
    print(
        f"\nGET /v1/discovery/services after every one of {count:,} instances heartbeated "
        f"(core only, {size / 2**20:.0f} MiB), s, median (min-max) of {reps}: "
        f"{Stat.of(seconds).fmt('.3f')}"
    )


def gc_cost(count: int, reps: int) -> None:
    """What a full garbage collection costs with `count` registered instances.

    Registers them in a bare `sd_core.Registry` (no server), then times
    `gc.collect()` and counts the GC-tracked objects by type.
    """
    import gc
    import statistics

    from sd_core import Registry, RegistryConfig
    from sd_core.models import RegisterRequest

    gc.collect()
    before = {id(o) for o in gc.get_objects()}
    registry = Registry(RegistryConfig(max_instances=max(count, 1)), now=0.0, wall_offset=0.0)
    for n in range(count):
        request = RegisterRequest(
            service_name=f"svc-{n // 100:04d}",
            instance_id=f"i-{n % 100:03d}",
            host="127.0.0.1",
            port=9,
            metadata={"version": "1.0.0", "zone": "a"},
        )
        registry.register(request, now=n * 1e-6)
    registry.drain_effects()

    def timed() -> float:
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            gc.collect()
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    full = timed()
    kinds: Counter[str] = Counter(type(o).__name__ for o in gc.get_objects() if id(o) not in before)
    tracked = sum(kinds.values())
    print(
        f"\n{count:,} instances in a bare Registry: "
        f"full gc.collect() {full:.1f} ms (median of {reps})"
    )
    print(f"GC-tracked objects added: {tracked:,} ({tracked / count:.1f} per instance):")
    for kind, n in kinds.most_common(6):
        print(f"  {n:9,}  {kind}")


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], frontends=False)
    parser.add_argument(
        "load", choices=("heartbeat", "register", "read", "probes", "fanout", "render", "gc")
    )
    parser.add_argument("--frontend", choices=("quart", "quart-uvicorn", "trio"), default="quart")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--instances", type=int, default=400, help="for `probes`")
    parser.add_argument("--interval", type=float, default=2.0, help="for `probes`")
    add_probe_client_option(parser)
    parser.add_argument("--watchers", type=int, default=3000, help="for `fanout`")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--output", type=Path, help="keep the raw py-spy file here")
    args = parser.parse_args(argv)
    if args.load == "gc":
        gc_cost(args.instances if args.instances != 400 else 27_000, args.reps or 3)
        return
    if args.load == "render":
        render_split(args.instances if args.instances != 400 else 100_000, args.reps or 3)
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")

    with scenario(args, f"Profile: {args.load} on {args.frontend}") as run:
        proc, registrations = _start_registered(run, args)
        raw = args.output or run.tmp / "profile.txt"
        spy_argv = [spy, "record", "-p", str(proc.pid), "-d", str(args.seconds), "-r", "200"]
        spy_argv += ["-f", "raw", "-o", str(raw)]
        if args.load == "fanout":
            run_async(_fanout(proc, spy_argv, args.watchers))
            summarise(raw, args.top)
            return
        load = None if args.load == "probes" else _wrk_in_background(run, args, proc, registrations)
        time.sleep(1.0 if args.load != "probes" else args.interval + 1)
        log(f"py-spy record {args.seconds}s of pid {proc.pid}")
        subprocess.run(spy_argv, check=True, capture_output=True)
        if load is not None:
            load.join()
        summarise(raw, args.top)


def _start_registered(run: Run, args: argparse.Namespace) -> tuple[Proc, list[bytes]]:
    """The server to profile, with its instances (N probed ones for `probes`, else 10)."""
    fake = start_fake_instances(run)
    env = {
        "HEALTH_CHECK_INTERVAL_SECONDS": f"{args.interval:g}",
        "SERVICE_DISCOVERY_PROBE_CLIENT": args.probe_client,
    }
    if args.load != "probes":
        env["HEALTH_CHECK_INTERVAL_SECONDS"] = "3600"
    proc = start_registry(run, args.frontend, loop=args.loop, env=env)
    count = args.instances if args.load == "probes" else 10
    registrations = [
        register_body(f"svc-{n // 10:04d}", f"i-{n % 10}", fake.port, f"/h/{n}")
        for n in range(count)
    ]
    run_async(post_all(proc.port, "/v1/discovery/register", registrations))
    return proc, registrations


def _wrk_in_background(
    run: Run, args: argparse.Namespace, proc: Proc, registrations: list[bytes]
) -> threading.Thread:
    """wrk driving the HTTP path of `args.load` while py-spy records (and a bit longer)."""
    if args.load == "read":
        script, script_args = "get.lua", [SECRET, "/v1/discovery/services/svc-0000"]
    else:
        lines = (
            [heartbeat_body("svc-0000", f"i-{n}").decode() for n in range(10)]
            if args.load == "heartbeat"
            else [b.decode() for b in registrations]
        )
        bodies = run.write_lines("bodies.txt", lines)
        script = "post_json.lua"
        script_args = [f"/v1/discovery/{args.load}", str(bodies), SECRET]

    def drive() -> None:
        wrk(proc.url(), script, script_args, duration=args.seconds + 3)

    load = threading.Thread(target=drive, daemon=True)
    load.start()
    return load


if __name__ == "__main__":
    main()
