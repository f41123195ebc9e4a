"""Rendered DNS answers kept until a service they show moves, bounded in bytes.

Keyed by the query's bytes after its id, its question's name in lower case:
two queries that differ only in their id get the same answer but for the id,
so a hit costs a dict lookup, the check of its services' indexes, and the id
patched onto the stored bytes. Answers are stored with the question's name in
lower case too; a query that spells it otherwise (resolvers randomise the case,
and check that the answer repeats it) gets its own spelling patched in, which
every name of the answer follows, as they point at the question's. An
answer is kept in a few shuffled variants, handed out in turn, so the order
of the addresses still changes from one query to the next.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["AnswerCache", "CachedAnswer", "folded"]

#: Bytes counted per entry beyond its answers (the key, the objects around them).
_OVERHEAD = 200


class CachedAnswer:
    """An answer's variants (each without the 2-byte id) and what they were rendered from.

    `depends` holds (service name, its index) for every name the lookup tried,
    found or not: an answer stays right while none of those indexes moves.
    """

    __slots__ = ("depends", "size", "turn", "variants")

    def __init__(self, variants: tuple[bytes, ...], depends: tuple[tuple[str, int], ...]) -> None:
        self.variants = variants
        self.depends = depends
        self.turn = 1  # the miss that rendered it sent the first
        self.size = sum(map(len, variants)) + _OVERHEAD

    def next_variant(self) -> bytes:
        turn = self.turn
        self.turn = turn + 1
        variants = self.variants
        return variants[turn % len(variants)]

    def current(self, index_of: Callable[[str], int]) -> bool:
        """Whether every service it was rendered from is still at the same index."""
        return all(index_of(name) == index for name, index in self.depends)


def folded(wire: bytes) -> tuple[bytes, int] | None:
    """`wire` with its question's name in lower case, and where that name ends; None when
    the name does not end within `wire` (or uses a pointer: no query's does)."""
    end, size = 12, len(wire)
    while end < size:
        length = wire[end]
        if length == 0:
            end += 1
            return wire[:12] + wire[12:end].lower() + wire[end:], end
        if length > 63:
            return None
        end += 1 + length
    return None


class AnswerCache:
    """Entries by key, least recently used out first once `max_bytes` (keys included) is
    passed: the key holds the query's flags and EDNS options, so a client can mint keys
    for one name at will, and a stream of new keys must not push out answers in use."""

    __slots__ = ("_entries", "_size", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: dict[bytes, CachedAnswer] = {}
        self._size = 0

    def get(self, key: bytes) -> CachedAnswer | None:
        entries = self._entries
        entry = entries.pop(key, None)
        if entry is not None:
            entries[key] = entry  # now the most recently used
        return entry

    def put(self, key: bytes, entry: CachedAnswer) -> None:
        cost = entry.size + len(key)
        if cost > self.max_bytes:
            return
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self._size -= old.size + len(key)
        while entries and self._size + cost > self.max_bytes:
            unused = next(iter(entries))
            self._size -= entries.pop(unused).size + len(unused)
        entries[key] = entry
        self._size += cost

    def clear(self) -> None:
        self._entries.clear()
        self._size = 0

    @property
    def size(self) -> int:
        """Bytes counted against `max_bytes`."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)
