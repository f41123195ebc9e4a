"""Finding a service by a name asked without regard to case.

Service names keep their case (`Game` and `game` are two services), DNS names
do not, and neither does the answer cache's key. The lower-case name wins;
failing it, a map from lower-cased names, rebuilt only after the registry
changed, finds any other spelling (the first in sorted order when several fold
alike). Only a lower-case find may be cached (`cacheable`): which spelling the
map picks can change without the index of any service the answer shows moving.
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
        """The service's real name, or None; appends the lower-case name to `tried`."""
        lower = name.lower()
        tried.append(lower)
        if lower in self._registry.views.services:
            return lower
        return self._folded_names().get(lower)

    def _folded_names(self) -> dict[str, str]:
        index = self._registry.global_index
        if index != self._folded_at:
            folded: dict[str, str] = {}
            for name in sorted(self._registry.views.services):
                folded.setdefault(name.lower(), name)
            self._folded, self._folded_at = folded, index
        return self._folded
