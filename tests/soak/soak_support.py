"""What the soak-style test modules share: one scenario run per frontend per module."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]


class _Reported(Protocol):
    def report(self) -> None: ...


R = TypeVar("R", bound=_Reported)
C = TypeVar("C")


def scenario_result(run: Callable[[str, C], R], config: C) -> Any:
    """A module-scoped `result` fixture: the scenario run once per frontend, its report printed.

    One run per module, shared by every assertion on it: the runs are long.
    """

    @pytest.fixture(scope="module", params=["quart", "trio"])
    def result(request: pytest.FixtureRequest) -> R:
        outcome = run(request.param, config)
        outcome.report()
        return outcome

    return result


def run_bench(module: str, args: Sequence[str], timeout: float) -> str:
    """`python -m <module> <args>` as its own process (it pins CPUs and handles SIGTERM
    itself), from the repository root; its stdout, printed. Fails the test on a non-zero
    exit, or after `timeout` seconds (then it gets SIGTERM, which stops every process
    it started)."""
    bench = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = bench.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        bench.terminate()
        out, err = bench.communicate(timeout=60)
        pytest.fail(f"{module} did not finish in {timeout} s:\n{out}\n{err[-2000:]}")
    print(out)
    assert bench.returncode == 0, err[-3000:]
    return out
