"""Fixtures of the reliability suite: one parametrization over both frontends.

`conformance.server_process` imports because tests/conftest.py puts the project
root first on `sys.path`.
"""

from __future__ import annotations

import pytest
from reliability_support import FRONTENDS

from conformance.common import SINGLE_PROCESS_KINDS


@pytest.fixture(scope="module", params=FRONTENDS, ids=FRONTENDS)
def frontend(request: pytest.FixtureRequest) -> str:
    """Every server-backed test runs once per frontend (module scope: one server each)."""
    param: str = request.param
    return param


@pytest.fixture(scope="module", params=SINGLE_PROCESS_KINDS, ids=SINGLE_PROCESS_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """Every server kind, Quart on uvicorn too, for the modules that test each one
    (they take it as their `frontend`)."""
    param: str = request.param
    return param
