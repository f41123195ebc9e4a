"""The watch-stream bench still runs, at its smallest sizes, so it cannot rot.

Not a measurement: it checks that on every server kind the streams open and
each gets the change, beside the blocking queries, and that the tables are
printed. Run as its own process, as people run it (it installs a SIGTERM
handler and pins CPUs when asked). Without wrk, the throughput part is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_watch_streams_bench_runs_at_smallest_sizes() -> None:
    argv = [sys.executable, "-m", "bench.watch_streams", "--quick", "--no-pin"]
    argv += ["--streams", "5", "--reps", "1", "--duration", "1"]
    if shutil.which("wrk") is None:
        argv.append("--no-throughput")
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for kind in ("quart+hypercorn", "trio+hypercorn", "quart+uvicorn"):
        assert f"| {kind}" in done.stdout, done.stdout
    assert "all had the change (s)" in done.stdout
    assert "KiB per open stream" in done.stdout
    if shutil.which("wrk") is not None:
        assert "uvicorn/hypercorn" in done.stdout
