"""One service: its instances, its watch index and the cache of its bodies.

Shared by the state machine (which changes the instances and the index) and
the views (which render and cache bodies); neither owns the other.
"""

from __future__ import annotations

from .body import Body
from .filters import FilteredBodies
from .instance import Instance


class Service:
    """One service's instances (by id), watch index and rendered bodies (by view)."""

    __slots__ = ("cache", "filtered", "index", "instances", "name", "ordered")

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index
        self.instances: dict[str, Instance] = {}
        self.ordered: list[Instance] | None = None
        self.cache: dict[str, Body] = {}
        self.filtered = FilteredBodies()

    def sorted_instances(self) -> list[Instance]:
        """The instances by id, as every body lists them (kept until one comes or goes)."""
        ordered = self.ordered
        if ordered is None:
            ordered = [self.instances[k] for k in sorted(self.instances)]
            self.ordered = ordered
        return ordered
