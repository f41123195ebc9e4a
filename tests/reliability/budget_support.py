"""What a server process costs, read from /proc: resident memory and CPU time.

The budget tests (`test_reliability_budgets.py`) compare these before and
after an attack; the bounds are generous (a few MiB, a fraction of a core),
so they hold on a shared machine and still catch a cost that grows with
what the client sends.
"""

from __future__ import annotations

import os
from pathlib import Path

MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` (`VmRSS` of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time `pid` has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
