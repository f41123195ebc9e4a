"""Finding a service by a name asked without regard to case.

Service names keep their case (`Game` and `game` are two services), DNS names
do not. The exact spelling asked wins, then its lower case; failing both, a
map from lower-cased names, rebuilt only after the registry changed, finds
any other spelling (the first in sorted order when several fold alike).
"""

from __future__ import annotations

from ..registry import Registry

__all__ = ["ServiceFinder"]


class ServiceFinder:
    """`find(name)`: the registered service `name` stands for, and every name tried."""

    __slots__ = ("_folded", "_folded_at", "_registry")

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._folded: dict[str, str] = {}
        self._folded_at = -1

    def find(self, name: str, tried: list[str]) -> str | None:
        """The service's real name, or None; appends each exact name looked up to `tried`."""
        services = self._registry.views.services
        lower = name.lower()
        for spelling in (name, lower) if lower != name else (name,):
            tried.append(spelling)
            if spelling in services:
                return spelling
        found = self._folded_names().get(lower)
        if found is not None:
            tried.append(found)
        return found

    def _folded_names(self) -> dict[str, str]:
        index = self._registry.global_index
        if index != self._folded_at:
            folded: dict[str, str] = {}
            for name in sorted(self._registry.views.services):
                folded.setdefault(name.lower(), name)
            self._folded, self._folded_at = folded, index
        return self._folded
