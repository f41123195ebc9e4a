"""Where the memory goes: tracemalloc inside a real server, per parked watcher or per instance.

    python -m bench.memory_profile watchers|instances [--frontend quart|trio] [--count N]

Runs the server through this module's launcher (`python -m bench.memory_profile
serve ...`), which starts tracemalloc and writes the current allocation
statistics to a file on SIGUSR1. The load step is the same as scenario 3
(`watchers`: N parked blocking queries) or 4 (`instances`: N registered
instances with 2 metadata entries, then both listings served); the two
snapshots, before and after, are compared and the allocation sites that grew
most are printed as bytes per watcher or per instance. tracemalloc slows the
server down several times: use this for attribution, the scenarios for
figures. `--bare` profiles the bare app of the same stack (watchers only).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sys
import time
import tracemalloc
from pathlib import Path

from .common import AUTH, PYTHON, BenchError, log
from .http_client import http_get, post_all, register_body, run_async, scrape_metrics
from .processes import PIN, Proc, server_env, wait_ready
from .scenario_cli import base_parser, scenario

FRAMES = 8


def _serve(argv: list[str]) -> int:
    """The launcher: tracemalloc on, SIGUSR1 dumps a snapshot to $BENCH_SNAPSHOT.<n>."""
    tracemalloc.start(FRAMES)
    dumps = 0

    def dump(signum: int, frame: object) -> None:
        nonlocal dumps
        dumps += 1
        snapshot = tracemalloc.take_snapshot()
        out = Path(f"{os.environ['BENCH_SNAPSHOT']}.{dumps}")
        with open(out.with_suffix(".tmp"), "wb") as file:
            pickle.dump(snapshot, file)
        out.with_suffix(".tmp").rename(out)

    signal.signal(signal.SIGUSR1, dump)
    if argv and argv[0] == "bare":
        from .bare_apps import main as bare_main

        bare_main(["serve", *argv[1:]])
        return 0
    from frontends.cli import main as cli_main

    return cli_main(argv)


def _snapshot(proc: Proc, base: Path, n: int) -> tracemalloc.Snapshot:
    os.kill(proc.pid, signal.SIGUSR1)
    path = Path(f"{base}.{n}")
    deadline = time.monotonic() + 120
    while not path.exists():
        proc.check_alive()
        if time.monotonic() > deadline:
            raise BenchError("no snapshot from the server")
        time.sleep(0.2)
    with open(path, "rb") as file:
        snapshot: tracemalloc.Snapshot = pickle.load(file)
    return snapshot.filter_traces(
        [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        ]
    )


def _report(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, per: int, unit: str) -> None:
    stats = after.compare_to(before, "traceback")
    total = sum(s.size_diff for s in stats)
    print(f"\nPython heap growth: {total / per:,.0f} bytes per {unit} (tracemalloc)\n")
    for stat in stats[:14]:
        if stat.size_diff <= 0:
            break
        print(f"{stat.size_diff / per:8,.0f} B/{unit}  {stat.count_diff / per:5.1f} blocks")
        frames = [
            f for f in stat.traceback if "site-packages" in f.filename or "/work/" in f.filename
        ] or list(stat.traceback)
        for frame in frames[:4]:
            short = frame.filename.split("site-packages/")[-1].split("/work/main/")[-1]
            print(f"            {short}:{frame.lineno}")
    by_file = after.compare_to(before, "filename")
    print("\nBy file:")
    for stat in by_file[:10]:
        if stat.size_diff <= 0:
            break
        short = stat.traceback[0].filename.split("site-packages/")[-1].split("/work/main/")[-1]
        print(f"{stat.size_diff / per:8,.0f} B/{unit}  {short}")


def _start(run: object, argv: list[str], snapshot: Path, name: str) -> Proc:
    from .processes import Run

    assert isinstance(run, Run)
    env = server_env({"BENCH_SNAPSHOT": str(snapshot), "HEALTH_CHECK_INTERVAL_SECONDS": "86400"})
    argv = [PYTHON, "-m", "bench.memory_profile", "serve", *argv]
    proc = run.spawn(name, argv, env=env, cpus=PIN.server)
    wait_ready(proc, timeout=60)
    return proc


async def _park(port: int, path: str, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    gate = asyncio.Semaphore(100)

    async def one() -> None:
        async with gate:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n\r\n".encode()
            )
            await writer.drain()
            writers.append(writer)

    async with asyncio.TaskGroup() as group:
        for _ in range(count):
            group.create_task(one())
    return writers


def main(argv: list[str] | None = None) -> None:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in and args_in[0] == "serve":
        raise SystemExit(_serve(args_in[1:]))
    parser = base_parser(__doc__.splitlines()[0], frontends=False)
    parser.add_argument("what", choices=("watchers", "instances"))
    parser.add_argument("--frontend", choices=("quart", "trio"), default="quart")
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--bare", action="store_true", help="the bare app (watchers only)")
    args = parser.parse_args(args_in)
    count = args.count or (2000 if args.what == "watchers" else 20_000)

    with scenario(args, f"Memory profile: {args.what} on {args.frontend}") as run:
        base = run.tmp / "snapshot"
        if args.bare:
            stack = "quart" if args.frontend == "quart" else "trio"
            proc = _start(run, ["bare", stack], base, "bare")
        else:
            loop = ["--loop", "asyncio"] if args.frontend == "quart" else []
            proc = _start(run, ["serve", "--frontend", args.frontend, *loop], base, "registry")
        if args.what == "watchers":
            _watchers(proc, base, count, args.bare)
        else:
            _instances(proc, base, count)


def _watch_path(proc: Proc, bare: bool) -> str:
    """What a watcher asks for, after warming the read path: a blocking query on a
    one-instance service (the registry), or `/wait` (the bare app)."""
    if bare:
        for _ in range(20):
            http_get(proc.port, "/v1/discovery/services/hot")
        return "/wait"
    body = register_body("watched", "i-0", 9)
    run_async(post_all(proc.port, "/v1/discovery/register", [body], connections=1))
    for _ in range(20):
        http_get(proc.port, "/v1/discovery/services/watched", auth=True)
    index = scrape_metrics(proc.port)["sd_watch_index"]
    return f"/v1/discovery/services/watched?index={int(index)}&wait=5m"


def _parked(proc: Proc, bare: bool) -> int:
    if bare:
        return int(http_get(proc.port, "/_parked")[1].split(b":")[1][:-1])
    return int(scrape_metrics(proc.port)["sd_blocking_queries"])


def _watchers(proc: Proc, base: Path, count: int, bare: bool) -> None:
    """Allocations per parked watcher: snapshots before and with `count` parked."""
    path = _watch_path(proc, bare)
    before = _snapshot(proc, base, 1)

    async def park_and_snapshot() -> tracemalloc.Snapshot:
        writers = await _park(proc.port, path, count)
        deadline = time.monotonic() + 120
        while (parked := _parked(proc, bare)) < count:
            if time.monotonic() > deadline:
                raise BenchError(f"{parked} parked")
            await asyncio.sleep(0.5)
        after = await asyncio.to_thread(_snapshot, proc, base, 2)
        for writer in writers:
            writer.close()
        return after

    after = run_async(park_and_snapshot())
    _report(before, after, count, "watcher")


def _instances(proc: Proc, base: Path, count: int) -> None:
    """Allocations per registered instance, then once both listings were served."""
    warm = [register_body("warm", "w", 9)]
    run_async(post_all(proc.port, "/v1/discovery/register", warm, connections=1))
    before = _snapshot(proc, base, 1)
    bodies = [register_body(f"svc-{n // 100:04d}", f"i-{n % 100:03d}", 9) for n in range(count)]
    log(f"registering {count} instances (slow under tracemalloc)")
    run_async(post_all(proc.port, "/v1/discovery/register", bodies))
    registered = _snapshot(proc, base, 2)
    _report(before, registered, count, "instance")
    for path in ("/v1/discovery/services", "/v1/discovery/prometheus"):
        http_get(proc.port, path, auth=True, timeout=300)
    listed = _snapshot(proc, base, 3)
    print("\n--- after serving both listings (cached bodies and fragments):")
    _report(before, listed, count, "instance")


if __name__ == "__main__":
    main()
