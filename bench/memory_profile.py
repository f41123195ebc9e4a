"""Where the memory goes: tracemalloc inside a real server, per parked watcher or per instance.

    python -m bench.memory_profile watchers|streams|instances
                                   [--frontend quart|trio|quart-uvicorn] [--count N]

Runs the server through this module's launcher (`python -m bench.memory_profile
serve ...`), which starts tracemalloc and writes the current allocation
statistics to a file on SIGUSR1. The load step is the same as scenario 3
(`watchers`: N parked blocking queries) or 4 (`instances`: N registered
instances with 2 metadata entries, then both listings served); the two
snapshots, before and after, are compared and the allocation sites that grew
most are printed as bytes per watcher or per instance. tracemalloc slows the
server down several times: use this for attribution, the scenarios for
figures. `--bare` profiles the bare app of the same stack (watchers only).
`streams`: N open watch streams (scenario 6), each having had its first event;
besides tracemalloc it prints the live objects per stream by type (`gc`), and
the RSS growth beside the Python heap's (the difference is malloc's own slack
and what tracemalloc does not see, such as uvloop's C state).
"""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import signal
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from .common import AUTH, PYTHON, BenchError, log
from .http_client import http_get, post_all, register_body, run_async, scrape_metrics
from .processes import PIN, Proc, server_env, wait_ready
from .scenario_cli import base_parser, scenario

FRAMES = 12


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

    def dump_with_counts(signum: int, frame: object) -> None:
        counts = Counter(type(o).__qualname__ for o in gc.get_objects())
        with open(f"{os.environ['BENCH_SNAPSHOT']}.counts.{dumps + 1}", "wb") as file:
            pickle.dump((counts, _rss_bytes()), file)
        dump(signum, frame)

    signal.signal(signal.SIGUSR1, dump_with_counts)
    if argv and argv[0] == "bare":
        from .bare_apps import main as bare_main

        bare_main(["serve", *argv[1:]])
        return 0
    from frontends.cli import main as cli_main

    return cli_main(argv)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _counts(base: Path, n: int) -> tuple[Counter[str], int]:
    with open(f"{base}.counts.{n}", "rb") as file:
        counts: tuple[Counter[str], int] = pickle.load(file)
    return counts


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
        for frame in frames[:-5:-1]:  # the innermost four, innermost first
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
    parser.add_argument("what", choices=("watchers", "streams", "instances"))
    parser.add_argument("--frontend", choices=("quart", "trio", "quart-uvicorn"), default="quart")
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--bare", action="store_true", help="the bare app (watchers only)")
    args = parser.parse_args(args_in)
    count = args.count or (20_000 if args.what == "instances" else 2000)

    with scenario(args, f"Memory profile: {args.what} on {args.frontend}") as run:
        base = run.tmp / "snapshot"
        if args.bare:
            stack = "quart" if args.frontend == "quart" else "trio"
            proc = _start(run, ["bare", stack], base, "bare")
        else:
            proc = _start(
                run, ["serve", *_frontend_args(args.frontend, args.loop)], base, "registry"
            )
        if args.what == "watchers":
            _watchers(proc, base, count, args.bare)
        elif args.what == "streams":
            _streams(proc, base, count)
        else:
            _instances(proc, base, count)


def _frontend_args(frontend: str, loop: str) -> list[str]:
    """The CLI's arguments for a frontend (`loop`: Quart's; uvloop's C state is not traced)."""
    if frontend == "quart-uvicorn":
        return ["--frontend", "quart", "--server", "uvicorn", "--loop", loop]
    return ["--frontend", frontend, *(["--loop", loop] if frontend == "quart" else [])]


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


async def _open_streams(port: int, count: int) -> list[asyncio.StreamWriter]:
    """`count` watch streams, each read up to its first event (so each is fully open)."""
    writers = []
    gate = asyncio.Semaphore(100)
    request = (
        "GET /v1/discovery/watch?service=watched HTTP/1.1\r\n"
        f"Host: x\r\nAuthorization: {AUTH}\r\n\r\n"
    ).encode()

    async def one() -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await reader.readuntil(b"\nid: ")
            writers.append(writer)

    async with asyncio.TaskGroup() as group:
        for _ in range(count):
            group.create_task(one())
    return writers


#: The files that serve a watch stream (not the launch path, which is on every stack).
OURS = (
    "/shared/watch_streams.py",
    "_app/streams.py",
    "direct_streams.py",
    "/shared/http1_only.py",
    "/sd_core/",
)


def _ours_or_server(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, per: int) -> None:
    """Heap growth split by who allocated it: our stream code (the innermost frame
    is ours), the server while our code called it (a frame of ours further out:
    its send path, say), or the server alone (its per-connection state)."""
    split = {"our stream code": 0, "the server, called by our code": 0, "the server alone": 0}
    for stat in after.compare_to(before, "traceback"):
        frames = [frame.filename for frame in stat.traceback]
        if any(part in frames[-1] for part in OURS):
            split["our stream code"] += stat.size_diff
        elif any(part in name for name in frames for part in OURS):
            split["the server, called by our code"] += stat.size_diff
        else:
            split["the server alone"] += stat.size_diff
    print()
    for what, size in split.items():
        print(f"{size / per:8,.0f} B/stream  {what}")


def _streams(proc: Proc, base: Path, count: int) -> None:
    """Allocations, live objects and RSS per open watch stream."""
    _watch_path(proc, False)  # registers `watched` and warms the read path
    for _ in range(3):  # warm the stream path too
        run_async(_open_streams(proc.port, 1))[0].close()
    time.sleep(1)
    before = _snapshot(proc, base, 1)
    counts_before, rss_before = _counts(base, 1)

    async def open_and_snapshot() -> tracemalloc.Snapshot:
        writers = await _open_streams(proc.port, count)
        after = await asyncio.to_thread(_snapshot, proc, base, 2)
        for writer in writers:
            writer.close()
        return after

    after = run_async(open_and_snapshot())
    counts_after, rss_after = _counts(base, 2)
    _report(before, after, count, "stream")
    _ours_or_server(before, after, count)
    grown = (counts_after - counts_before).most_common(25)
    print(
        f"\nLive objects per stream (gc-tracked, by type): {sum(n for _, n in grown) / count:.1f}"
    )
    for name, n in grown:
        if n < count // 2:
            break
        print(f"{n / count:8.2f}  {name}")
    print(
        f"\nRSS growth: {(rss_after - rss_before) / count:,.0f} bytes per stream (with tracemalloc)"
    )


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
