"""`server_fixture`: a fixture of one server per frontend, started with given settings.

The shared servers of `conftest.py` and the modules that need settings of their
own (a short TTL, small limits, fast keepalives) all declare their server this
way: the settings are all that differs between them, so a declaration is just
the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Literal

import pytest

from conformance.common import base_env
from conformance.server_process import ServerProcess, serving

ServerFixture = Callable[[str], Iterator[ServerProcess]]


def server_fixture(
    env: Mapping[str, str], *, scope: Literal["session", "module"] = "module"
) -> ServerFixture:
    """A fixture yielding a ready server of the test's ``frontend`` with ``env`` set.

    Both tokens are set (`base_env`); the server gets SIGTERM and must exit 0
    when the scope ends. Assign the result to the fixture's name at module level.
    """

    def fixture(frontend: str) -> Iterator[ServerProcess]:
        with serving(frontend, base_env(**env)) as server:
            yield server

    return pytest.fixture(scope=scope)(fixture)
