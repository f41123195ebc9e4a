"""Give large freed buffers back to the operating system (glibc only).

A listing of 100,000 instances is a 29 MiB body, copied a few times on its way
through the framework and hypercorn. glibc serves such blocks with mmap and
unmaps them on free, but after the first free it raises its mmap threshold to
that block's size (up to 32 MiB), so the next copies come from the heap and
stay in the process once freed: scenario 4 of docs/performance.md measured
3.6 KiB of RSS per instance after serving listings, against 2.4 KiB with the
threshold pinned. Pinning it (which turns off the adjustment) costs an
mmap/munmap pair per block of 1 MiB or more, nothing next to writing one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
PINNED_THRESHOLD = 1 << 20


def pin_mmap_threshold(env: dict[str, str] | None = None) -> bool:
    """Pin glibc's mmap threshold unless the operator set one; True when pinned."""
    environment = os.environ if env is None else env
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in environment:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, PINNED_THRESHOLD))
