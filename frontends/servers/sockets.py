"""What the servers' head and keep-alive timers ask of a connection's socket, on either loop."""

from __future__ import annotations

import select

__all__ = ["bytes_waiting"]


def bytes_waiting(fileno: int) -> bool:
    """Whether the socket has bytes to read now.

    A timer that finds them was run before the reader that is due for them: the
    process was starved of CPU past the deadline (stopped, or a long pause).
    """
    poller = select.poll()  # not `select.select`: descriptors past 1,024 must work
    poller.register(fileno, select.POLLIN)
    return bool(poller.poll(0))
