"""Which releases of each server the compatibility patches were tested on, and the
refusal to start on any other.

The patches in `servers/` reach into hypercorn's, h11's and uvicorn's internals,
which a minor release may rename or fix: a patch would then fail at start, or
silently stop applying, or override the upstream fix. So each server's
`install()` compares the installed version with the range pinned in
pyproject.toml (the same figures; tests/frontends/test_frontend_server_install.py
holds them equal) and refuses an untested one, unless
`SERVICE_DISCOVERY_ALLOW_UNTESTED_SERVER=1` says to try it anyway
(`tox -e newest` is how a new release is tried).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from sd_core import ConfigError

#: The setting that starts the server on an untested release anyway.
ALLOW_UNTESTED = "SERVICE_DISCOVERY_ALLOW_UNTESTED_SERVER"

#: Reads a package's installed version (importlib.metadata's, or a test's fake).
VersionLookup = Callable[[str], str]


def _release(version: str) -> tuple[int, ...]:
    """The leading numbers of `version`: "0.18.2" and "0.18.2rc1" are (0, 18, 2)."""
    found = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in found.group(0).split(".")) if found else ()


@dataclass(frozen=True)
class ReleaseRange:
    """`package` was tested from release `at_least` up to, not including, `below`."""

    package: str
    at_least: str
    below: str

    @property
    def pin(self) -> str:
        """The range as pyproject.toml writes it."""
        return f">={self.at_least},<{self.below}"

    def admits(self, version: str) -> bool:
        return _release(self.at_least) <= _release(version) < _release(self.below)


#: Quart, which both asyncio servers serve the registry's app with.
QUART = ReleaseRange("quart", "0.22", "0.23")


class UntestedServer(ConfigError):
    """An installed server package is outside its tested range: the server does not start."""

    def __init__(self, package: str, version: str, tested: ReleaseRange) -> None:
        super().__init__(
            ALLOW_UNTESTED,
            f"{package} {version} is untested (tested: {package}{tested.pin}); "
            f"set {ALLOW_UNTESTED}=1 to start on it anyway",
        )


def allows_untested(environ: Mapping[str, str]) -> bool:
    """`SERVICE_DISCOVERY_ALLOW_UNTESTED_SERVER`: `1` allows, unset or `0` does not."""
    value = environ.get(ALLOW_UNTESTED, "0").strip()
    if value not in {"0", "1"}:
        raise ConfigError(ALLOW_UNTESTED, f"must be 0 or 1, got {value!r}")
    return value == "1"


def require_tested(
    tested: Iterable[ReleaseRange],
    *,
    environ: Mapping[str, str],
    version: VersionLookup = importlib.metadata.version,
) -> None:
    """Raise `UntestedServer` for the first package outside its tested range,
    unless the setting allows untested releases."""
    if allows_untested(environ):
        return
    for pin in tested:
        found = version(pin.package)
        if not pin.admits(found):
            raise UntestedServer(pin.package, found, pin)
