"""Where the time goes: py-spy samples of a server under one scenario's load.

    python -m bench.profile heartbeat|register|read|probes [--frontend quart|trio] [--seconds 10]

Starts the server the scenario uses, drives it (wrk for the HTTP paths; N
instances at a short interval for `probes`), records it with `py-spy record
--format raw` and prints the frames with the largest inclusive and self
share of samples. Needs py-spy (`.venv/bin/pip install py-spy`) and root or
ptrace permission. `--prototype` profiles `bench/probe_prototype.py`'s
probe client instead of httpx.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from .common import (
    SECRET,
    BenchError,
    Conn,
    Proc,
    base_parser,
    heartbeat_body,
    log,
    post_all,
    register_body,
    run_async,
    scenario,
    scrape_metrics,
    start_fake_instances,
    start_registry,
    wrk,
)


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

    from .watch_fanout import Fleet, _park, _request, _wait_parked

    conn = await Conn.open(proc.port)
    answer = await conn.request("GET", "/v1/discovery/services/svc-0000")
    index = answer.headers["x-discovery-index"]
    fleet = Fleet(size)
    path = f"/v1/discovery/services/svc-0000?index={index}&wait=5m"
    await _park(proc.port, _request(path, proc.port), fleet)
    await _wait_parked(lambda: int(scrape_metrics(proc.port).get("sd_blocking_queries", 0)), size)
    spy = await asyncio.create_subprocess_exec(
        *spy_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    await asyncio.sleep(0.5)
    log(f"{size} parked; one change while py-spy records")
    started = time.perf_counter()
    await conn.request("POST", "/v1/discovery/register", register_body("svc-0000", "new", 9))
    await fleet.all_answered.wait()
    log(f"all answered in {time.perf_counter() - started:.3f}s")
    await spy.wait()
    await conn.close()
    for watcher in fleet.watchers:
        if watcher.transport is not None:
            watcher.transport.close()


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], frontends=False)
    parser.add_argument("load", choices=("heartbeat", "register", "read", "probes", "fanout"))
    parser.add_argument("--frontend", choices=("quart", "trio"), default="quart")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--instances", type=int, default=400, help="for `probes`")
    parser.add_argument("--interval", type=float, default=2.0, help="for `probes`")
    parser.add_argument("--prototype", action="store_true", help="plain probe client")
    parser.add_argument("--watchers", type=int, default=3000, help="for `fanout`")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--output", type=Path, help="keep the raw py-spy file here")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")

    with scenario(args, f"Profile: {args.load} on {args.frontend}") as run:
        fake = start_fake_instances(run)
        env = {"HEALTH_CHECK_INTERVAL_SECONDS": f"{args.interval:g}"}
        if args.load != "probes":
            env["HEALTH_CHECK_INTERVAL_SECONDS"] = "3600"
        module = "bench.probe_prototype" if args.prototype else "frontends"
        proc = start_registry(run, args.frontend, loop=args.loop, env=env, module=module)
        count = args.instances if args.load == "probes" else 10
        registrations = [
            register_body(f"svc-{n // 10:04d}", f"i-{n % 10}", fake.port, f"/h/{n}")
            for n in range(count)
        ]
        run_async(post_all(proc.port, "/v1/discovery/register", registrations))
        raw = args.output or run.tmp / "profile.txt"
        spy_argv = [spy, "record", "-p", str(proc.pid), "-d", str(args.seconds), "-r", "200"]
        spy_argv += ["-f", "raw", "-o", str(raw)]
        if args.load == "fanout":
            run_async(_fanout(proc, spy_argv, args.watchers))
            summarise(raw, args.top)
            return
        load: threading.Thread | None = None
        if args.load != "probes":
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
        time.sleep(1.0 if args.load != "probes" else args.interval + 1)
        log(f"py-spy record {args.seconds}s of pid {proc.pid}")
        subprocess.run(spy_argv, check=True, capture_output=True)
        if load is not None:
            load.join()
        summarise(raw, args.top)


if __name__ == "__main__":
    main()
