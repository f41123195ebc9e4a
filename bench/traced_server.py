"""The registry's CLI with its garbage-collection pauses recorded: evidence for scenario 2.

    BENCH_GC_LOG=/tmp/gc.log python -m bench.traced_server serve --frontend quart ...

Each collection's generation and pause (seconds) is written to `BENCH_GC_LOG`
at exit; `bench.probe_capacity --gc-trace` summarises them per run.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time

from frontends.cli import main as cli_main


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


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("BENCH_GC_LOG"):
        trace_gc(os.environ["BENCH_GC_LOG"])
    return cli_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
