"""Fixtures of every frontend test: a private home, and `make_kit` once per frontend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from frontend_kit import KITS, Kit


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings default a state file under the user's home: never the real one in tests."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)


@pytest.fixture(params=list(KITS.values()), ids=list(KITS))
def make_kit(request: pytest.FixtureRequest) -> Callable[[], Kit]:
    """Each test that takes a kit runs on both: trio, and quart on asyncio. A test that
    needs other kits parametrizes `make_kit` itself, which overrides this."""
    make: Callable[[], Kit] = request.param
    return make
