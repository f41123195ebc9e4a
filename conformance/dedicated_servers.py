"""Servers a test or a module has to itself, beyond the two shared ones.

`server_fixture`: one server per frontend, started with given settings. The
shared servers of `conftest.py` and the modules that need settings of their
own (a short TTL, small limits, fast keepalives) all declare their server this
way: the settings are all that differs between them, so a declaration is just
the settings.

`StateFileServer`: a server keeping its registry in a state file, and the same
server started again on that file, for the tests of what survives a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Literal

import pytest

from conformance.client import Api
from conformance.common import base_env
from conformance.fixture_types import Clients, Launcher
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


class StateFileServer:
    """A dedicated server with a state file in ``state_dir``; `restart` starts it again.

    ``api`` is a read-write client of the server running now.
    """

    def __init__(self, launch: Launcher, clients: Clients, state_dir: Path) -> None:
        self._launch = launch
        self._clients = clients
        self._env = {"SERVICE_DISCOVERY_STATE_FILE": str(state_dir / "state.json")}
        self.server = launch(self._env)
        self.api = clients(self.server)

    def restart(self) -> Api:
        """Stop the server (SIGTERM, exit 0) keeping what was registered; start it again."""
        self.api.registered.clear()  # left for the next process, not unregistered
        self.server.stop()
        self.server = self._launch(self._env)
        self.api = self._clients(self.server)
        return self.api
