"""`install()` for uvicorn: it needs no replacement of anything of uvicorn's.

uvicorn takes what this project changes as arguments: the HTTP/1.1-only
protocol is a subclass passed as its `http` setting (`http1.Http1OnlyProtocol`,
behind the direct watch streams' `FirstBytes`), and the signal handling a
subclass of its `Server` (`server._Server`). Those still lean on its internals
(the httptools protocol's attributes), so `install()` checks the installed
uvicorn, and the Quart it serves, against the tested releases.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping

from frontends.servers.tested import QUART, ReleaseRange, VersionLookup, require_tested

#: The releases the subclasses were tested on: pyproject.toml pins the same.
TESTED = (ReleaseRange("uvicorn", "0.55", "0.56"), QUART)


def install(
    *,
    environ: Mapping[str, str] = os.environ,
    version: VersionLookup = importlib.metadata.version,
) -> None:
    """Refuse (`UntestedServer`) an untested uvicorn or Quart unless
    `SERVICE_DISCOVERY_ALLOW_UNTESTED_SERVER` is 1."""
    require_tested(TESTED, environ=environ, version=version)
