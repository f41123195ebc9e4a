"""What the soak-style test modules share: one scenario run per frontend per module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import pytest


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
