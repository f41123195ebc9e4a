"""Where the memory goes: tracemalloc inside a real server, per parked watcher or per instance.

    python -m tools.memory_profile watchers|streams|instances
                                   [--frontend quart|trio|quart-uvicorn] [--count N]

Runs the server through the benchmarks' launcher (`bench.traced_server`, with
`BENCH_SNAPSHOT`), which starts tracemalloc and writes the current allocation
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
import os
import pickle
import signal
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from bench.common import AUTH, PYTHON, log, wait_until
from bench.http_client import http_get, post_all, register_body, run_async, scrape_metrics
from bench.processes import PIN, Proc, Run, server_env, start_registry, wait_ready
from bench.scenario_cli import base_parser, scenario
from bench.watch_fanout import wait_parked


def _counts(base: Path, n: int) -> tuple[Counter[str], int]:
    with open(f"{base}.counts.{n}", "rb") as file:
        counts: tuple[Counter[str], int] = pickle.load(file)
    return counts


def _snapshot(proc: Proc, base: Path, n: int) -> tracemalloc.Snapshot:
    os.kill(proc.pid, signal.SIGUSR1)
    path = Path(f"{base}.{n}")

    def written() -> bool:
        proc.check_alive()
        return path.exists()

    wait_until(written, f"snapshot {n} from the server", every=0.2)
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


def _start(run: Run, frontend: str, loop: str, bare: bool, snapshot: Path) -> Proc:
    """The server, or the bare app of its stack, under `bench.traced_server`'s tracemalloc."""
    env = {"BENCH_SNAPSHOT": str(snapshot), "HEALTH_CHECK_INTERVAL_SECONDS": "86400"}
    if bare:
        stack = "quart" if frontend == "quart" else "trio"
        argv = [PYTHON, "-m", "bench.traced_server", "bare", stack]
        proc = run.spawn("bare", argv, env=server_env(env), cpus=PIN.server)
    else:
        proc = start_registry(run, frontend, loop=loop, env=env, ready=False,
                              module="bench.traced_server")  # fmt: skip
    wait_ready(proc, timeout=60)
    return proc


async def _open(port: int, path: str, count: int, until: bytes = b"") -> list[asyncio.StreamWriter]:
    """`count` connections, each sending `GET path` (and reading up to `until`, if any)."""
    writers = []
    gate = asyncio.Semaphore(100)
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n\r\n".encode()

    async def one() -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await (reader.readuntil(until) if until else writer.drain())
            writers.append(writer)

    async with asyncio.TaskGroup() as group:
        for _ in range(count):
            group.create_task(one())
    return writers


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], frontends=False)
    parser.add_argument("what", choices=("watchers", "streams", "instances"))
    parser.add_argument("--frontend", choices=("quart", "trio", "quart-uvicorn"), default="quart")
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--bare", action="store_true", help="the bare app (watchers only)")
    args = parser.parse_args(argv)
    count = args.count or (20_000 if args.what == "instances" else 2000)

    with scenario(args, f"Memory profile: {args.what} on {args.frontend}") as run:
        base = run.tmp / "snapshot"
        proc = _start(run, args.frontend, args.loop, args.bare, base)
        if args.what == "watchers":
            _watchers(proc, base, count, args.bare)
        elif args.what == "streams":
            _streams(proc, base, count)
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
        writers = await _open(proc.port, path, count)
        await wait_parked(lambda: _parked(proc, bare), count)
        after = await asyncio.to_thread(_snapshot, proc, base, 2)
        for writer in writers:
            writer.close()
        return after

    after = run_async(park_and_snapshot())
    _report(before, after, count, "watcher")


#: A watch stream's first event has arrived once its `id:` line has.
STREAM = "/v1/discovery/watch?service=watched"
FIRST_EVENT = b"\nid: "


#: The files that serve a watch stream (not the launch path, which is on every stack).
OURS = (
    "/runtime/watch_streams.py",
    "/runtime/stream_response.py",
    "_app/streams.py",
    "/servers/direct/",
    "/runtime/http1_guard.py",
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
        run_async(_open(proc.port, STREAM, 1, FIRST_EVENT))[0].close()
    time.sleep(1)
    before = _snapshot(proc, base, 1)
    counts_before, rss_before = _counts(base, 1)

    async def open_and_snapshot() -> tracemalloc.Snapshot:
        writers = await _open(proc.port, STREAM, count, FIRST_EVENT)
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
