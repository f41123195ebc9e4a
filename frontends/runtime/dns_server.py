"""The DNS interface's socket work that needs no event loop: binding, UDP, TCP framing.

Each loop's `dns` module (`quart_app/dns.py`, `trio_app/dns.py`) waits for
readiness and runs the TCP connections; what to do with the bytes is here, so
both frontends treat a flood, a malformed packet or an oversized TCP length the
same way: UDP is read in batches of at most `UDP_BATCH` datagrams per wake-up
(the loop's other work runs between batches), an answer that cannot be sent at
once is dropped (a client retries; UDP never queues), and a TCP connection that
announces more than `max_tcp_query` bytes is closed. The answers themselves are
`sd_core.dns`'s, from the registry the runtime serves (a cluster node: its mirror).
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from frontends.runtime.dns_settings import DnsSettings
from frontends.runtime.logs import logfmt
from sd_core import Registry
from sd_core.dns import DnsAnswerer

log = logging.getLogger("sd.registry")

#: Datagrams handled per wake-up before the loop's other work gets a turn.
UDP_BATCH = 64
#: TCP queries answered per turn of the loop, however many one read brought.
TCP_BATCH = 16
#: A batch also ends once its answers reach this many bytes: what one connection can
#: add to its send buffer in a turn (each loop stops answering a client that does not
#: read, so a connection holds at most this, the transport's high-water mark and one
#: answer, besides one read).
TCP_BATCH_BYTES = 65536
#: The largest datagram read (a larger one is cut, so fails to parse: FORMERR).
_DATAGRAM = 4096
#: Tries at one port for both UDP and TCP when the port is 0 (any free one).
_BIND_TRIES = 20


@dataclass(slots=True)
class DnsCounters:
    """What `/metrics` shows as `sd_dns_*` (plain ints, read at scrape time)."""

    udp_queries: int = 0
    tcp_queries: int = 0
    tcp_connections: int = 0
    tcp_refused: int = 0
    send_dropped: int = 0
    busy: int = 0  # answered SERVFAIL: the second's budget for misses was spent


class DnsService:
    """The answerer on the runtime's registry, and what both loops' sockets share."""

    def __init__(
        self,
        settings: DnsSettings,
        registry: Registry,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.answerer = DnsAnswerer(registry, settings.core)
        self.counters = DnsCounters()
        self.port = settings.port
        self._clock = clock
        self._second = -1.0  # when the current second of the miss budget began
        self._spent = 0.0  # seconds its misses took so far

    def answer(self, wire: bytes, tcp: bool) -> bytes | None:
        """The answerer's reply, with misses held to `settings.miss_share` of each second.

        Only misses are timed (a hit is a dict lookup); a miss that overruns the
        budget is finished, and the queries after it wait for the next second."""
        answerer = self.answerer
        now = self._clock()
        if now - self._second >= 1.0:
            self._second, self._spent = now, 0.0
        may_render = self._spent < self.settings.miss_share
        renders = answerer.renders
        reply = answerer.answer(wire, tcp=tcp, may_render=may_render)
        if answerer.renders != renders:
            self._spent += self._clock() - now
        elif not may_render and reply is not None and reply[3] & 0x0F == 2:  # SERVFAIL
            self.counters.busy += 1
        return reply

    def bind(self, host: str) -> tuple[socket.socket, socket.socket]:
        """The UDP socket and the listening TCP socket, on one port, non-blocking.

        Raises OSError when the port is taken, so the server does not start."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        tries = _BIND_TRIES if self.settings.port == 0 else 1
        for attempt in range(tries):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                udp.bind((host, self.settings.port))
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((host, udp.getsockname()[1]))
                tcp.listen(128)
            except OSError as error:
                udp.close()
                tcp.close()
                if error.errno != errno.EADDRINUSE or attempt == tries - 1:
                    log.error(logfmt("dns_bind_failed", host=host, port=self.port, error=error))
                    raise
                continue
            udp.setblocking(False)
            tcp.setblocking(False)
            self.port = udp.getsockname()[1]
            log.info(logfmt("dns_listening", host=host, port=self.port))
            return udp, tcp
        raise AssertionError("unreachable")

    def drain_udp(self, udp: socket.socket) -> None:
        """Answer up to `UDP_BATCH` waiting datagrams; never raises, never blocks."""
        answer = self.answer
        counters = self.counters
        for _ in range(UDP_BATCH):
            try:
                wire, peer = udp.recvfrom(_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error from an earlier send, reported here: not ours
                continue
            counters.udp_queries += 1
            try:
                reply = answer(wire, False)
            except Exception:  # a bug must not stop the socket; it is logged
                log.exception(logfmt("dns_internal_error"))
                continue
            if reply is not None:
                try:
                    udp.sendto(reply, peer)
                except OSError:
                    counters.send_dropped += 1

    def admit(self) -> bool:
        """Count a TCP connection in (False: at the cap, close it). Pair with `leave`."""
        if self.counters.tcp_connections >= self.settings.max_tcp_connections:
            self.counters.tcp_refused += 1
            return False
        self.counters.tcp_connections += 1
        return True

    def leave(self) -> None:
        self.counters.tcp_connections -= 1

    def framer(self) -> TcpFramer:
        return TcpFramer(self, self.settings.max_tcp_query)


class BadFrame(Exception):
    """A TCP length prefix past `max_tcp_query`, or below a header's 12 bytes: close."""


class TcpFramer:
    """One TCP connection's bytes in, its framed answers out (RFC 1035 4.2.2, RFC 7766).

    Answers at most `TCP_BATCH` queries per call, so a client pipelining thousands in
    one read cannot hold the loop: while `ready`, the loop calls `feed()` again on a
    later turn (and reads nothing more meanwhile). Holds what one read brought plus
    at most one query's bytes (`max_tcp_query`)."""

    __slots__ = ("_buffer", "_limit", "_service", "completed")

    def __init__(self, service: DnsService, limit: int) -> None:
        self._service = service
        self._limit = limit
        self._buffer = b""
        self.completed = 0  # whole queries read so far (each restarts the idle deadline)

    def feed(self, data: bytes = b"") -> bytes:
        """Take `data` in; the answers (each with its length prefix) to at most
        `TCP_BATCH` of the queries now complete."""
        buffer = self._buffer + data if data else self._buffer
        replies: list[bytes] = []
        size = 0
        for _ in range(TCP_BATCH):
            if size >= TCP_BATCH_BYTES:
                break
            wire = self._next(buffer)
            if wire is None:
                break
            buffer = buffer[2 + len(wire) :]
            self.completed += 1
            self._service.counters.tcp_queries += 1
            try:
                reply = self._service.answer(wire, True)
            except Exception:
                log.exception(logfmt("dns_internal_error"))
                reply = None
            if reply is not None:
                replies.append(len(reply).to_bytes(2, "big") + reply)
                size += len(reply) + 2
        self._buffer = buffer
        return b"".join(replies)

    @property
    def ready(self) -> bool:
        """Whether a whole query waits (call `feed()` again on the loop's next turn)."""
        return self._next(self._buffer) is not None

    def _next(self, buffer: bytes) -> bytes | None:
        if len(buffer) < 2:
            return None
        length = int.from_bytes(buffer[:2], "big")
        if not 12 <= length <= self._limit:
            raise BadFrame(length)
        return buffer[2 : 2 + length] if len(buffer) >= 2 + length else None
