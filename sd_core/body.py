"""A response body held as pieces, most of them views of other cached bodies.

Why: every list endpoint shows the same instances. Held as one `bytes` each,
the global `/services` and `/prometheus` bodies and a service's `healthy`
body were each a full copy of what the service's own bodies already hold:
with every view read, an instance at the metadata cap cost about six times
its JSON. Built as `Pieces` instead, they point into the service's cached
`instances` and `targets` bodies (`Views`), so the bytes of an instance's
JSON are held once per distinct rendering, not once per view.

A `Pieces` lives exactly as long as the cache entry that holds it, and the
cache empties it whenever a body it points into is emptied (`Views`' rule:
whatever forgets a service's bodies forgets the global ones too), so a view
never outlives the truth it shows; the memoryviews keep the bodies they
point into alive until then.

A frontend writes it in a few pieces (`chunks`): large views as they are,
the small parts between them joined, never the whole body again.
`bytes(pieces)` joins it (tests, in-process clients).
"""

from __future__ import annotations

from collections.abc import Iterator

#: Slices of another body from this size on are views rather than copies (a
#: memoryview costs 184 bytes; below this, copying is as cheap and keeps pieces few).
VIEW_MIN = 512
#: Parts from this size on are written as they are; smaller ones joined up to it.
CHUNK_BYTES = 64 * 1024
#: The most one write of a large part holds: a server may copy what it is given
#: (hypercorn does), and a copy of a whole service's array at once was tens of MiB
#: that the allocator kept.
WRITE_MAX = 1024 * 1024


class Pieces:
    """An immutable body of `parts`, written in order; `len` is its size in bytes."""

    __slots__ = ("_parts", "_size")

    def __init__(self, parts: tuple[bytes | memoryview, ...]) -> None:
        self._parts = parts
        self._size = sum(len(part) for part in parts)

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        return b"".join(self._parts)

    def __eq__(self, other: object) -> bool:
        """Equal to the same bytes, however they are held (tests compare bodies)."""
        if isinstance(other, Pieces | bytes):
            return bytes(self) == bytes(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-free, but equal to unhashable views

    def __repr__(self) -> str:
        return f"Pieces({len(self._parts)} parts, {self._size} bytes)"

    def chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes | memoryview]:
        """The body in a few writes: a part of `size` bytes or more as it is (a view,
        not copied here; in views of at most `WRITE_MAX` bytes), the parts between
        joined into writes of at most `size`."""
        window: list[bytes | memoryview] = []
        held = 0
        for part in self._parts:
            if len(part) >= size or held + len(part) > size:
                if window:
                    yield b"".join(window)
                    window, held = [], 0
                if len(part) >= size:
                    view = memoryview(part)
                    for start in range(0, len(view), WRITE_MAX):
                        yield view[start : start + WRITE_MAX]
                    continue
            window.append(part)
            held += len(part)
        if window:
            yield b"".join(window)


#: What a read endpoint answers with.
Body = bytes | Pieces


def as_bytes(body: Body) -> bytes:
    """`body` whole, as one `bytes` (joined if it is `Pieces`)."""
    return body if isinstance(body, bytes) else bytes(body)


class PiecesBuilder:
    """Builds a body from copied bytes and slices of other bodies, in order.

    Small pieces are gathered and joined into one part; a slice of at least
    `VIEW_MIN` bytes becomes a view. A body without any view is plain `bytes`.
    """

    __slots__ = ("_copied", "_parts")

    def __init__(self) -> None:
        self._parts: list[bytes | memoryview] = []
        self._copied: list[bytes | memoryview] = []

    def copy(self, data: bytes) -> None:
        self._copied.append(data)

    def slice(self, body: bytes, start: int, end: int) -> None:
        """`body[start:end]`: a view of `body` if large enough, else copied."""
        if end - start < VIEW_MIN:
            if end > start:
                self._copied.append(memoryview(body)[start:end])
            return
        if self._copied:
            self._parts.append(b"".join(self._copied))
            self._copied = []
        self._parts.append(memoryview(body)[start:end])

    def build(self) -> Body:
        copied = b"".join(self._copied)
        if not self._parts:
            return copied
        if copied:
            self._parts.append(copied)
        return Pieces(tuple(self._parts))
