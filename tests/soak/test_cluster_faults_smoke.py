"""`python -m tests.soak.harness.cluster_faults --quick` runs and every fault's row says PASS.

The harness drives five faults (etcd stalled past the registration TTL, etcd killed
and restarted, a node killed and restarted, a node behind asked to resume a query, etcd
wiped) against three real nodes on a real etcd, and marks a row PASS when no
acknowledged registration was lost and no instance whose client kept heartbeating was
expired. The quick run takes about 40 s. The times it prints are figures, never
asserted; only the PASS column is. The harness runs as its own process (`run_bench`).
"""

from __future__ import annotations

import pytest
from soak_support import run_bench

from tests.etcd.etcd_process import etcd_missing_reason

TIMEOUT = 180.0
FAULTS = (
    "etcd SIGSTOP, then SIGCONT",
    "etcd SIGKILL, restart",
    "node B (trio) SIGKILL, restart",
    "node B behind, query resumed on it",
    "etcd wiped (empty data dir, same ports)",
)

pytestmark = pytest.mark.skipif(
    etcd_missing_reason() is not None, reason=str(etcd_missing_reason())
)


def test_every_fault_loses_nothing_and_expires_nothing() -> None:
    out = run_bench("tests.soak.harness.cluster_faults", ["--quick"], TIMEOUT)
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    for fault in FAULTS:
        assert fault in rows, f"no row for {fault!r}:\n{out}"
        assert rows[fault].rstrip(" |").endswith("PASS"), f"{fault}:\n{out}"
