"""Host-name lookups for probes, on a few daemon threads of the prober's own.

Why not the loop's `getaddrinfo`: on asyncio it runs on the loop's default
executor (6 threads on 2 cores), shared with everything else, and
`asyncio.Runner.close()` waits for its pending calls: with 200 instances whose
names did not resolve, the quart frontend took 14-39 s to exit after SIGTERM,
and every probe (and anything else on that executor) queued behind the
lookups. So, on both loops:

- an IP-literal host never reaches a thread (`addresses` answers at once);
- lookups run on at most `threads` threads of this resolver, so slow DNS holds
  those and nothing else;
- the probe's deadline covers its lookup: a probe that gives up abandons it
  (a queued lookup is skipped, a running one finishes on its thread and its
  answer is dropped);
- the threads are daemon threads that nothing joins: `close` lets idle ones go
  and abandons busy ones, so neither the loop's shutdown nor the interpreter's
  exit waits for a lookup.

`lookup` is the blocking lookup itself (`system_lookup` by default), so tests
can put a slow or hanging resolver in its place without any real DNS.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
from collections.abc import Callable

import anyio
import anyio.from_thread
import anyio.lowlevel

from sd_core.probe_address_policy import is_ip_literal

__all__ = ["DEFAULT_THREADS", "HostResolver", "Lookup", "system_lookup"]

log = logging.getLogger("sd.registry")

#: A blocking lookup: the addresses of `host` (raises OSError when it has none).
Lookup = Callable[[str, int], list[str]]

DEFAULT_THREADS = 4


def system_lookup(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host`, each once, in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


class _Job:
    """One lookup: asked on the loop, answered on a thread."""

    __slots__ = ("abandoned", "addresses", "done", "error", "host", "port", "token")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.done = anyio.Event()
        self.token = anyio.lowlevel.current_token()
        self.addresses: list[str] = []
        self.error: Exception | None = None
        self.abandoned = False


class HostResolver:
    """Resolves probe targets on up to `threads` daemon threads (see the module)."""

    def __init__(
        self,
        *,
        threads: int = DEFAULT_THREADS,
        lookup: Lookup = system_lookup,
        idle_seconds: float = 30.0,
    ) -> None:
        if threads < 1:
            raise ValueError("a resolver needs at least one thread")
        self._max_threads = threads
        self._lookup = lookup
        self._idle_seconds = idle_seconds
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for a job
        self._queued = 0  # jobs no thread has taken yet
        self._closed = False

    @property
    def threads(self) -> int:
        """Threads alive now (started on demand, gone after `idle_seconds` idle)."""
        return self._threads

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses of `host`; raises OSError when it cannot be resolved.

        Cancellable at any point (the probe's deadline): the lookup is then abandoned.
        """
        if is_ip_literal(host):
            return [host.strip("[]")]
        if self._closed:
            raise OSError("the resolver is closed")
        job = _Job(host, port)
        self._submit(job)
        try:
            await job.done.wait()
        except BaseException:
            job.abandoned = True
            raise
        if job.error is not None:
            raise job.error
        return job.addresses

    def close(self) -> None:
        """Let idle threads go and abandon busy ones; later lookups fail. Never blocks."""
        with self._lock:
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)

    def _submit(self, job: _Job) -> None:
        with self._lock:
            self._jobs.put(job)
            self._queued += 1
            if self._queued <= self._idle or self._threads >= self._max_threads:
                return  # an idle thread takes it, or it waits for a busy one
            self._threads += 1
        thread = threading.Thread(target=self._work, name="probe-resolver", daemon=True)
        thread.start()

    def _work(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            if job.abandoned:
                continue  # its probe gave up while it waited
            self._run(job)

    def _next_job(self) -> _Job | None:
        """The next job, or None when this thread should end (closed, or idle too long)."""
        with self._lock:
            self._idle += 1
        while True:
            try:
                job = self._jobs.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self._idle -= 1
                        self._threads -= 1
                        return None
                continue  # one came in just now: take it
            with self._lock:
                self._idle -= 1
                if job is None:
                    self._threads -= 1
                else:
                    self._queued -= 1
            return job

    def _run(self, job: _Job) -> None:
        try:
            job.addresses = self._lookup(job.host, job.port)
        except Exception as error:  # OSError for a name that does not resolve
            job.error = error
        if job.abandoned:
            return
        try:
            anyio.from_thread.run_sync(job.done.set, token=job.token)
        except Exception:  # the loop is gone (shut down meanwhile): nobody waits any more
            log.debug("resolver answer dropped: the loop ended")
