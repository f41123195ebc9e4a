"""Fixtures of the reliability suite: one parametrization over both frontends.

`conformance.server_process` imports because tests/conftest.py puts the project
root first on `sys.path`.
"""

from __future__ import annotations

import pytest
from reliability_support import FRONTENDS


@pytest.fixture(scope="module", params=FRONTENDS, ids=FRONTENDS)
def frontend(request: pytest.FixtureRequest) -> str:
    """Every server-backed test runs once per frontend (module scope: one server each)."""
    param: str = request.param
    return param
