"""Where the time goes: py-spy samples of a server under one scenario's load.

    python -m tools.profile heartbeat|register|read|probes|fanout
        [--frontend quart|quart-uvicorn|trio] [--loop asyncio|uvloop] [--seconds 10]

Starts the server the scenario uses, drives it (wrk for the HTTP paths; N
instances at a short interval for `probes`), records it with `py-spy record
--format raw` and prints the frames with the largest inclusive and self
share of samples. Needs py-spy (`.venv/bin/pip install py-spy`) and root or
ptrace permission. `--probe-client httpx` profiles the server probing with
httpx instead of the built-in client.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from bench.common import SECRET, BenchError, log, wait_until
from bench.http_client import heartbeat_body, http_call, post_all, register_body, run_async
from bench.processes import Proc, Run, start_fake_instances, start_registry
from bench.scenario_cli import add_probe_client_option, base_parser, scenario
from bench.wrk_load import wrk


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

    from bench.raw_watchers import get_request
    from bench.watch_fanout import Fleet, Watcher, blocking_queries, wait_parked

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


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], frontends=False)
    parser.add_argument("load", choices=("heartbeat", "register", "read", "probes", "fanout"))
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
