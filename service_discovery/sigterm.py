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

Servers may swallow the exception: wsgiref, like other servers, answers any
exception raised while it handles a request (a bare ``except:``) with a 500
and goes on serving, so a SIGTERM that lands mid-request would be lost and
the service would never leave. Until the block is being left, the handler
therefore delivers SIGTERM to the main thread again every
:data:`RESEND_SECONDS`: the next :class:`Terminated` comes while the server
waits for a request, where nothing catches it. **Decision**: a resend may also
interrupt cleanup code (a ``finally``) between the first ``Terminated`` and the
block's exit if that cleanup takes longer than ``RESEND_SECONDS``; the block
still unregisters and the process still dies by SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

__all__ = ["RESEND_SECONDS", "Terminated", "sigterm_leaves_block"]

#: How often SIGTERM is delivered again until the block is being left (a service
#: may have swallowed the first ``Terminated``). Well inside the grace periods of
#: Docker (10 s) and Kubernetes (30 s) before they SIGKILL.
RESEND_SECONDS = 1.0


class Terminated(SystemExit):
    """Raised in the main thread by SIGTERM inside a ``registered()`` block.

    A ``SystemExit``, so ``except Exception`` in the service does not swallow
    it; once the block has unregistered, the process dies by SIGTERM.
    """

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


class _Handler:
    """Our SIGTERM handler: raises :class:`Terminated` until the block is being left,
    then ignores SIGTERM, so the unregistration finishes."""

    def __init__(self) -> None:
        self.received = False
        self._left = threading.Event()
        self._lock = threading.Lock()  # a resend is never sent once `leaving` returned

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self._left.is_set():
            return  # already leaving: let the unregistration finish
        if not self.received:
            self.received = True
            threading.Thread(target=self._resend, name="sigterm-resend", daemon=True).start()
        raise Terminated

    def leaving(self) -> None:
        """The block is being left: no more ``Terminated``, no more resends."""
        with self._lock:
            self._left.set()

    def _resend(self) -> None:
        main = threading.main_thread().ident
        while not self._left.wait(RESEND_SECONDS):
            with self._lock:
                if self._left.is_set() or main is None:
                    return
                signal.pthread_kill(main, signal.SIGTERM)


@contextmanager
def sigterm_leaves_block(enabled: bool = True) -> Iterator[Callable[[], None]]:
    """Make SIGTERM leave the ``with`` body by :class:`Terminated`, then die by SIGTERM.

    Yields ``leaving``: call it where leaving starts (before an unregistration that
    must not be interrupted); the block's end calls it anyway. Does nothing when
    ``enabled`` is false, off the main thread, or when SIGTERM has a handler other
    than the default one.
    """
    handler = _Handler()
    if not (
        enabled
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        yield handler.leaving
        return
    signal.signal(signal.SIGTERM, handler)
    try:
        yield handler.leaving
    finally:
        handler.leaving()
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
