"""The registry's CLI, traced: the launcher the benchmarks run a server through to see inside it.

    BENCH_GC_LOG=/tmp/gc.log python -m bench.traced_server serve --frontend quart ...
    BENCH_SNAPSHOT=/tmp/snap python -m bench.traced_server serve --frontend trio ...
    BENCH_SNAPSHOT=/tmp/snap python -m bench.traced_server bare quart|trio

`BENCH_GC_LOG`: each garbage collection's generation and pause (seconds) is
written there at exit; `bench.probe_capacity --gc-trace` summarises them.
`BENCH_SNAPSHOT`: tracemalloc runs, and each SIGUSR1 writes the allocations
(`<path>.<n>`) and the live objects by type with the RSS (`<path>.counts.<n>`),
for `tools.memory_profile`. `bare STACK` serves the bare app of
`bench.bare_apps` instead of the registry.
"""

from __future__ import annotations

import atexit
import gc
import os
import pickle
import signal
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

#: Frames kept per allocation: enough to reach our code from inside a server's.
FRAMES = 12


def trace_gc(path: str) -> None:
    pauses: list[tuple[int, float]] = []
    started = 0.0

    def callback(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started))

    def write() -> None:
        with open(path, "w") as out:
            out.writelines(f"{gen} {seconds:.6f}\n" for gen, seconds in pauses)

    gc.callbacks.append(callback)
    atexit.register(write)


def trace_allocations(base: str) -> None:
    """tracemalloc on; SIGUSR1 writes `<base>.counts.<n>`, then `<base>.<n>` (read last)."""
    tracemalloc.start(FRAMES)
    dumps = 0

    def dump(signum: int, frame: object) -> None:
        nonlocal dumps
        dumps += 1
        counts = Counter(type(o).__qualname__ for o in gc.get_objects())
        with open(f"{base}.counts.{dumps}", "wb") as file:
            pickle.dump((counts, rss_bytes()), file)
        out = Path(f"{base}.{dumps}")
        with open(out.with_suffix(".tmp"), "wb") as file:
            pickle.dump(tracemalloc.take_snapshot(), file)
        out.with_suffix(".tmp").rename(out)

    signal.signal(signal.SIGUSR1, dump)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if os.environ.get("BENCH_GC_LOG"):
        trace_gc(os.environ["BENCH_GC_LOG"])
    if os.environ.get("BENCH_SNAPSHOT"):
        trace_allocations(os.environ["BENCH_SNAPSHOT"])
    if args[:1] == ["bare"]:
        from bench.bare_apps import main as bare_main

        bare_main(["serve", *args[1:]])
        return 0
    from frontends.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
