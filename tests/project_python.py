"""The project's Python in a subprocess, as the CLI tests of several folders run it.

Run from the project root, so ``-m frontends`` and ``-c`` programs import this
checkout; output captured as text; an exit code is returned, never raised, so
each test states what it expects of it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_python(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``python *args`` with exactly ``env``; at most 60 s (a hang fails the test)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
