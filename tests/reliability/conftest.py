"""Fixtures of the reliability suite: one parametrization over both frontends.

The project root goes first on `sys.path` (as in `tests/frontends`), so that
`conformance.server_process` (not an installed package) and the project's own
packages are importable when this directory is run on its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402
from reliability_support import FRONTENDS  # noqa: E402


@pytest.fixture(scope="module", params=FRONTENDS, ids=FRONTENDS)
def frontend(request: pytest.FixtureRequest) -> str:
    """Every server-backed test runs once per frontend (module scope: one server each)."""
    param: str = request.param
    return param
