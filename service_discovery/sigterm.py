"""SIGTERM as a clean exit of a ``with client.registered(...)`` block.

Docker, Kubernetes and systemd stop a service with SIGTERM, and Python's
default action for it kills the process on the spot: no ``finally`` runs, so
a synchronous service never unregisters and stays listed (healthy, until its
probes fail or its TTL runs out) while consumers keep calling it. SIGINT does
not have the problem, since Python turns it into ``KeyboardInterrupt``.

:func:`sigterm_leaves_block` does the same for SIGTERM, only where that
changes nothing for anyone else: on the main thread (the only one Python
delivers signals to), and only while SIGTERM still has its default action (a
handler someone installed is theirs). The handler raises
:class:`Terminated` in the main thread, so the block is left like any
exception leaves it and the client unregisters; then the previous handler is
restored and the signal raised again, so the process still dies by SIGTERM,
as its supervisor expects, only after unregistering.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType

__all__ = ["Terminated", "sigterm_leaves_block"]


class Terminated(SystemExit):
    """Raised in the main thread by SIGTERM inside a ``registered()`` block.

    A ``SystemExit``, so ``except Exception`` in the service does not swallow
    it; once the block has unregistered, the process dies by SIGTERM.
    """

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


class _Handler:
    """Our SIGTERM handler: raises :class:`Terminated` once, ignores repeats while leaving."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.received:
            return  # already leaving: let the unregistration finish
        self.received = True
        raise Terminated


@contextmanager
def sigterm_leaves_block(enabled: bool = True) -> Iterator[None]:
    """Make SIGTERM leave the ``with`` body by :class:`Terminated`, then die by SIGTERM.

    Does nothing when ``enabled`` is false, off the main thread, or when
    SIGTERM has a handler other than the default one.
    """
    handler = _Handler()
    if not (
        enabled
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is handler:  # not replaced meanwhile
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if handler.received:
            _die_by_sigterm()


def _die_by_sigterm() -> None:
    """The default action of the SIGTERM we held back: the process ends by the signal."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError, AttributeError):  # closed or replaced
            stream.flush()
    signal.raise_signal(signal.SIGTERM)
