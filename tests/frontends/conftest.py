"""Make the project's own packages win over a stale editable install.

The editable install's import hook was generated before `frontends/` and
`service_discovery/` had an `__init__.py`, so outside the project directory it
still maps them as namespace packages: `frontends.FRONTENDS` is missing, and
Quart's `find_package("service_discovery")` fails on the hook's relative
placeholder path. Putting the project root first on `sys.path` lets the
regular packages be found first; it changes nothing once the install is fresh.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings default a state file under the user's home: never the real one in tests."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
