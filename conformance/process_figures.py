"""What a child process holds and has used, read from /proc (Linux).

Shared by the benchmarks (`bench.processes`: CPU per request, RSS) and the
soak harness (`tests.soak.harness`: fds and RSS that must not grow). Plain
functions of a pid, so they serve the registry, etcd and the peer server alike.
"""

from __future__ import annotations

import contextlib
import os


def rss_kib(pid: int) -> int:
    """Resident set size now, in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` has used (its threads included), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the ")" closing the command name: state is field 0, utime 11, stime 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_seconds(pid: int) -> float:
    """Time `pid`'s threads were ready to run but waited for a CPU (other jobs had it)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[1])
    return total / 1e9


def open_fds(pid: int) -> int:
    """How many file descriptors `pid` holds open."""
    return len(os.listdir(f"/proc/{pid}/fd"))
