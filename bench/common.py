"""What every scenario script shares: its secret, its error, its log line and its tables.

The rest lives by what it does: `processes` (servers and their figures),
`http_client`, `wrk_load`, `scenario_cli` (command line and banner).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET = "bench-secret-0123456789abcdef"
AUTH = f"Bearer {SECRET}"


class BenchError(RuntimeError):
    """A scenario could not produce a valid figure (a server died, wrong answers...)."""


# -------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stat:
    """Figures of the repetitions: median and spread (min-max)."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        items = tuple(values)
        if not items:
            raise BenchError("no values")
        return cls(items)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    @property
    def spread(self) -> float:
        """(max - min) / median, as a fraction."""
        return (self.hi - self.lo) / self.median

    def fmt(self, spec: str = ",.0f", unit: str = "") -> str:
        return f"{self.median:{spec}}{unit} ({self.lo:{spec}}-{self.hi:{spec}})"


def ratio_stat(ours: Sequence[float], base: Sequence[float]) -> Stat:
    """Per-repetition ratios (repetitions are paired: run back to back)."""
    return Stat.of(a / b for a, b in zip(ours, base, strict=True) if b)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def print_table(title: str, headers: str | Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table (so it pastes straight into docs/performance.md); `headers` as a
    list, or as the table shows them: `"a | b | c"`."""
    heads = headers.split(" | ") if isinstance(headers, str) else [str(h) for h in headers]
    cells = [heads] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    print(f"\n### {title}\n")
    for n, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.flush()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_until(
    check: Callable[[], object], what: str, timeout: float = 120.0, every: float = 0.1
) -> None:
    """Ask `check()` every `every` seconds until it is true; past `timeout`, BenchError."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s: {what}")
        time.sleep(every)
