"""`python -m bench.cluster` still runs and prints its five tables (smallest sizes).

A smoke run so the benchmark cannot rot: one frontend, one repetition of 1 s wrk
runs, 5 writes, one takeover, 200 instances and the re-list after a compaction
(3,000 changes of 8 KiB: fewer would fit in what etcd buffers for the paused node).
It takes about a minute and a half, most of it the takeover (the node lease TTL of
10 s is fixed) and those changes. The figures are printed
by the benchmark, never asserted: only that every table came out with its rows.
The benchmark runs as its own process (it pins CPUs and handles SIGTERM itself);
on a timeout it gets SIGTERM, which stops every process it started.
"""

from __future__ import annotations

import shutil

import pytest
from soak_support import run_bench

from tests.etcd.etcd_process import etcd_missing_reason

TIMEOUT = 240.0

pytestmark = [
    pytest.mark.skipif(etcd_missing_reason() is not None, reason=str(etcd_missing_reason())),
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed"),
]

TITLES = (
    "### 1. Throughput per node",
    "### 2. Several nodes loaded at once",
    "### 3. A write on node A visible on node B",
    "### 4. Takeover",
    "### 5. Scale",
)


def test_bench_cluster_prints_every_table() -> None:
    argv = [
        "--frontend", "quart",
        "--reps", "1", "--duration", "1", "--writes", "5", "--takeover-reps", "1",
        "--instances", "200", "--fill-seconds", "5",
    ]  # fmt: skip
    out = run_bench("bench.cluster", argv, TIMEOUT)
    for title in TITLES:
        assert title in out, f"missing {title!r}:\n{out}"
    assert "| quart " in out
    assert "200 of 200" in out  # table 5 registered every instance it was asked for
    assert "behind a compaction" in out and "all equal" in out  # its re-list, checked
    assert "PASS" in out or "MISS" in out  # table 1's verdict on reads
