"""The built-in probe client against a scripted peer on loopback, on both loops.

The peer is a plain socket server in a thread that answers each request with
the exact bytes a case gives it (or closes, resets, or keeps silent), so the
client meets the malformed and hostile answers no framework would send, and
each case sees the requests and connections the client made.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from frontends.outbound.probing.builtin_client import PlainProbeClient
from frontends.outbound.probing.httpx_client import HttpxProber
from frontends.outbound.probing.resolver import HostResolver
from frontends.outbound.probing.tcp_client import TcpProber
from frontends.runtime.probers import make_prober
from frontends.runtime.settings import load_settings
from sd_core import ProbeFailed, ProbePassed, ProbeResult, RunProbe
from sd_core.probe_address_policy import ProbePolicy, parse_networks
from sd_core.testing import FakeClock

Runner = Callable[[Callable[[], Awaitable[Any]]], Any]
RUNNERS: dict[str, Runner] = {
    "asyncio": lambda main: asyncio.run(main()),  # type: ignore[arg-type]
    "trio": trio.run,
}
both_loops = pytest.mark.parametrize("run", list(RUNNERS.values()), ids=list(RUNNERS))

# What the peer does with one request: bytes to send, RESET, CLOSE or HANG.
RESET, CLOSE, HANG = "reset", "close", "hang"
Reply = bytes | str
Script = Callable[[int, int], Reply]  # (connection number, request number on it) -> reply


class Peer:
    """A loopback HTTP peer that follows a script; records what the client sent."""

    def __init__(self, script: Script, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed_by_client = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            number = self.connections
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buffer = b""
        index = 0
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        self.closed_by_client += 1
                        return
                    buffer += chunk
                request, _, buffer = buffer.partition(b"\r\n\r\n")
                self.requests.append(request)
                reply = self.script(number, index)
                index += 1
                if reply == RESET:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if reply == CLOSE:
                    return
                if reply == HANG:
                    self._stop.wait(10)
                    return
                assert isinstance(reply, bytes)
                try:
                    conn.sendall(reply)
                except OSError:
                    return
                if reply.startswith(b"HTTP/1.0"):
                    return  # HTTP/1.0 without keep-alive: the close ends the body

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        self._accepting.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    """`peers(script, host)` starts a peer that is closed when the test ends."""
    with contextlib.ExitStack() as started:

        def start(script: Script, host: str = "127.0.0.1") -> Peer:
            return started.enter_context(contextlib.closing(Peer(script, host)))

        yield start


def always(reply: Reply) -> Script:
    return lambda connection, request: reply


def response(status: str, body: bytes = b"", headers: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{headers}\r\n"
    return head.encode() + body


#: A peer that answers every probe `200 OK`.
HEALTHY = always(response("200 OK"))


#: How long a kept connection may stay idle in the idle-expiry tests.
IDLE_SECONDS = 4.0


@dataclass
class IdlePool:
    """Two healthy peers and a hand-moved clock: what the idle-expiry tests share.

    `client()` is the built-in client on that clock, idle connections expiring after
    `IDLE_SECONDS`, so a test moves `clock.now` past it instead of waiting.
    """

    first: Peer
    second: Peer
    clock: FakeClock

    def client(self, **options: Any) -> contextlib.AbstractAsyncContextManager[PlainProbeClient]:
        return plain_client(idle_seconds=IDLE_SECONDS, clock=self.clock, **options)


@pytest.fixture
def pool(peers: Callable[..., Peer]) -> IdlePool:
    return IdlePool(peers(HEALTHY), peers(HEALTHY), FakeClock())


def chunked(*chunks: bytes, trailer: str = "") -> bytes:
    encoded = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks)
    return (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        + encoded
        + b"0\r\n"
        + trailer.encode()
        + b"\r\n"
    )


def probe_of(port: int, path: str = "/health", host: str = "127.0.0.1") -> RunProbe:
    return RunProbe("svc", "i-1", f"http://{host}:{port}{path}", generation=3)


@contextlib.asynccontextmanager
async def plain_client(
    *, max_body: int = 1024, policy: ProbePolicy | None = None, **options: Any
) -> AsyncIterator[PlainProbeClient]:
    """The built-in client with the suite's body limit and an open policy; closed afterwards."""
    client = PlainProbeClient(max_body=max_body, policy=policy or ProbePolicy(), **options)
    try:
        yield client
    finally:
        await client.aclose()


def probe_all(run: Runner, probes: list[RunProbe], **options: Any) -> tuple[list[ProbeResult], int]:
    """Probe in turn with one client; the results and the idle connections left."""
    results: list[ProbeResult] = []
    idle: list[int] = []

    async def main() -> None:
        async with plain_client(**options) as client:
            for probe in probes:
                results.append(await client.probe(probe))
            idle.append(client.idle_connections)

    run(main)
    return results, idle[0]


def probe_once(run: Runner, peer: Peer) -> tuple[ProbeResult, int]:
    """One probe of `peer` on a fresh client: its result and the idle connections left."""
    [result], idle = probe_all(run, [probe_of(peer.port)])
    return result, idle


KEY = ("svc", "i-1", 3)
BAD = "bad response:"
NOT_HTTP = "bad response: not an HTTP/1.x status line:"
OVER = ProbeFailed(*KEY, reason="body over the size limit")


@both_loops
@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        pytest.param(
            response("200 OK", b'{"status": "ok", "load_percentage": 0.7}'),
            ProbePassed(*KEY, 0.7),
            id="json-load",
        ),
        pytest.param(response("200 OK", b"plain text"), ProbePassed(*KEY), id="plain-2xx"),
        pytest.param(
            response("200 OK", b'{"status": "down"}'),
            ProbeFailed(*KEY, "reported status 'down'"),
            id="reported-down",
        ),
        pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", ProbePassed(*KEY), id="204"),
        pytest.param(
            response("503 Busy", b'{"status": "ok"}'), ProbeFailed(*KEY, "HTTP 503"), id="503"
        ),
        pytest.param(
            response("302 Found", headers="location: /elsewhere\r\n"),
            ProbeFailed(*KEY, "HTTP 302"),
            id="redirect-not-followed",
        ),
        pytest.param(chunked(b'{"status":', b' "UP"}'), ProbePassed(*KEY), id="chunked"),
        pytest.param(
            chunked(b'{"status": "UP"}', trailer="x-trailer: 1\r\n"),
            ProbePassed(*KEY),
            id="chunked-trailer",
        ),
        pytest.param(
            chunked(b'{"status": "DOWN"}'),
            ProbeFailed(*KEY, "reported status 'DOWN'"),
            id="chunked-down",
        ),
        pytest.param(
            b'HTTP/1.0 200 OK\r\n\r\n{"status": "pass"}', ProbePassed(*KEY), id="until-close"
        ),
        pytest.param(response("200 OK", b"x" * 1025), OVER, id="length-over-limit"),
        pytest.param(chunked(b"x" * 1000, b"x" * 1000), OVER, id="chunked-over-limit"),
        pytest.param(b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 5000, OVER, id="until-close-over-limit"),
    ],
)
def test_an_answer_is_judged_by_the_contract(
    run: Runner, peers: Callable[..., Peer], reply: bytes, expected: ProbeResult
) -> None:
    peer = peers(always(reply))
    result, _ = probe_once(run, peer)
    assert result == expected
    assert len(peer.requests) == 1


@both_loops
@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        pytest.param(b"hello there\r\n\r\n", f"{NOT_HTTP} 'hello there'", id="not-http"),
        pytest.param(b"HTTP/1.1 2xx OK\r\n\r\n", f"{NOT_HTTP} 'HTTP/1.1 2xx OK'", id="bad-status"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 20_000 + b"\r\n\r\n",
            "bad response: response head longer than 16384 bytes",
            id="huge-head",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            f"{BAD} bad header line: 'no colon here'",
            id="header-no-colon",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\n",
            f"{BAD} bad content-length: '-5'",
            id="negative-length",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
            "bad response: bad content-length: '3'",
            id="conflicting-lengths",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            "bad response: bad chunk size: b'zz'",
            id="bad-chunk-size",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"1" * 2000,
            "bad response: chunk-size line longer than 1024 bytes",
            id="endless-chunk-line",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabXY",
            "bad response: chunk not followed by CRLF",
            id="chunk-without-crlf",
        ),
    ],
)
def test_a_malformed_answer_fails_with_the_reason(
    run: Runner, peers: Callable[..., Peer], reply: bytes, reason: str
) -> None:
    peer = peers(always(reply))
    result, idle = probe_once(run, peer)
    assert result == ProbeFailed(*KEY, reason=reason)
    assert idle == 0


@both_loops
@pytest.mark.parametrize("action", [CLOSE, RESET])
def test_a_connection_closed_or_reset_before_an_answer_fails(
    run: Runner, peers: Callable[..., Peer], action: str
) -> None:
    peer = peers(always(action))
    result, idle = probe_once(run, peer)
    assert isinstance(result, ProbeFailed)
    assert result.reason.startswith("ReadError")
    assert idle == 0
    assert len(peer.requests) == 1  # a fresh connection is not retried


@both_loops
def test_a_closed_port_fails_as_a_connect_error(run: Runner, peers: Callable[..., Peer]) -> None:
    peer = peers(HEALTHY)
    port = peer.port
    peer.close()
    [result], _ = probe_all(run, [probe_of(port)])
    assert isinstance(result, ProbeFailed)
    assert result.reason.startswith("ConnectError")


@both_loops
def test_the_request_is_a_bare_get_with_the_original_host(
    run: Runner, peers: Callable[..., Peer]
) -> None:
    peer = peers(HEALTHY)
    probe = RunProbe("svc", "i-1", f"http://127.0.0.1:{peer.port}/health?deep=1", generation=3)
    probe_all(run, [probe])
    [request] = peer.requests
    lines = request.decode().split("\r\n")
    assert lines[0] == "GET /health?deep=1 HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["host"] == f"127.0.0.1:{peer.port}"
    assert headers["accept-encoding"] == "identity"
    assert "content-length" not in headers and "transfer-encoding" not in headers


@both_loops
def test_ipv6_literals_are_probed_with_a_bracketed_host(
    run: Runner, peers: Callable[..., Peer]
) -> None:
    try:
        peer = peers(HEALTHY, host="::1")
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    [result], _ = probe_all(run, [probe_of(peer.port, host="[::1]")])
    assert result == ProbePassed(*KEY)
    assert f"host: [::1]:{peer.port}".encode() in peer.requests[0]


@both_loops
def test_connections_are_kept_alive_between_probes(run: Runner, peers: Callable[..., Peer]) -> None:
    peer = peers(always(response("200 OK", b'{"status": "ok"}')))
    results, idle = probe_all(run, [probe_of(peer.port, f"/h/{n}") for n in range(5)])
    assert results == [ProbePassed(*KEY)] * 5
    assert (peer.connections, len(peer.requests), idle) == (1, 5, 1)


@both_loops
@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(response("200 OK", headers="connection: close\r\n"), id="connection-close"),
        pytest.param(response("503 Busy", b"busy"), id="non-2xx"),
        pytest.param(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", id="http-1.0"),
    ],
)
def test_a_connection_is_not_reused_when_it_cannot_be(
    run: Runner, peers: Callable[..., Peer], reply: bytes
) -> None:
    peer = peers(always(reply))
    _, idle = probe_all(run, [probe_of(peer.port), probe_of(peer.port)])
    assert (peer.connections, idle) == (2, 0)


@both_loops
@pytest.mark.parametrize("action", [CLOSE, RESET])
def test_a_kept_connection_the_peer_dropped_is_retried_once_on_a_new_one(
    run: Runner, peers: Callable[..., Peer], action: str
) -> None:
    # Each connection answers its first request, then drops the next one.
    peer = peers(lambda connection, request: response("200 OK") if request == 0 else action)
    results, _ = probe_all(run, [probe_of(peer.port), probe_of(peer.port)])
    assert results == [ProbePassed(*KEY)] * 2
    assert (peer.connections, len(peer.requests)) == (2, 3)


@both_loops
def test_idle_connections_expire_and_the_pool_is_bounded(run: Runner, pool: IdlePool) -> None:
    results: list[ProbeResult] = []
    counts: list[int] = []
    first, second = pool.first, pool.second

    async def main() -> None:
        async with pool.client(max_idle=1) as client:
            results.append(await client.probe(probe_of(first.port)))
            results.append(await client.probe(probe_of(second.port)))  # pool full: closed
            counts.append(client.idle_connections)
            pool.clock.now = 3.9
            results.append(await client.probe(probe_of(first.port)))  # still fresh: reused
            pool.clock.now = 8.0
            results.append(await client.probe(probe_of(first.port)))  # idle 4.1 s: new one
            counts.append(client.idle_connections)

    run(main)
    assert results == [ProbePassed(*KEY)] * 4
    assert counts == [1, 1]
    assert (first.connections, second.connections) == (2, 1)


@both_loops
def test_a_probe_cancelled_by_its_deadline_closes_its_connection(
    run: Runner, peers: Callable[..., Peer]
) -> None:
    peer = peers(always(HANG))
    idle: list[int] = []

    async def main() -> None:
        client = PlainProbeClient(max_body=1024, policy=ProbePolicy())
        if run is trio.run:
            with trio.move_on_after(0.3):
                await client.probe(probe_of(peer.port))
        else:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await client.probe(probe_of(peer.port))
        idle.append(client.idle_connections)
        await client.aclose()

    run(main)
    assert idle == [0]
    assert len(peer.requests) == 1


@both_loops
def test_closing_the_client_closes_its_idle_connections(
    run: Runner, peers: Callable[..., Peer]
) -> None:
    peer = peers(HEALTHY)
    _, idle = probe_once(run, peer)
    assert idle == 1
    for thread in peer._threads:
        thread.join(timeout=5)
    assert peer.closed_by_client == 1


@both_loops
@pytest.mark.parametrize(
    ("url", "policy"),
    [
        ("http://169.254.169.254/latest/meta-data", None),
        ("http://[fe80::1]:8080/health", None),
        ("http://127.0.0.1:{port}/health", ProbePolicy(parse_networks("10.0.0.0/8"))),
    ],
)
def test_a_refused_address_is_never_contacted(
    run: Runner, peers: Callable[..., Peer], url: str, policy: ProbePolicy | None
) -> None:
    peer = peers(HEALTHY)
    probe = RunProbe("svc", "i-1", url.format(port=peer.port), generation=3)
    [result], _ = probe_all(run, [probe], policy=policy)
    assert isinstance(result, ProbeFailed)
    assert result.reason.startswith("refused: ")
    assert peer.connections == 0


@both_loops
def test_the_resolved_addresses_are_tried_in_turn_up_to_three(
    run: Runner, peers: Callable[..., Peer]
) -> None:
    peer = peers(HEALTHY)
    resolved: list[str] = []

    def addresses(host: str, port: int) -> list[str]:
        assert (host, port) == ("svc.internal", peer.port)
        return list(resolved)

    resolver = HostResolver(lookup=addresses)
    probe = RunProbe("svc", "i-1", f"http://svc.internal:{peer.port}/health", generation=3)
    # Nothing listens on 127.0.0.2-4 at the peer's port; the metadata address is refused.
    resolved[:] = ["169.254.169.254", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.1"]
    [result], _ = probe_all(run, [probe], resolver=resolver)
    assert isinstance(result, ProbeFailed) and result.reason.startswith("ConnectError")
    assert peer.connections == 0
    resolved[:] = ["127.0.0.2", "127.0.0.1"]
    [result], _ = probe_all(run, [probe], resolver=resolver)
    assert result == ProbePassed(*KEY)
    assert f"host: svc.internal:{peer.port}".encode() in peer.requests[0]


@both_loops
@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1:1/health", "http://127.0.0.1:1/he alth", "http://127.0.0.1:99999/"],
)
def test_a_url_the_client_cannot_send_fails_without_a_connection(run: Runner, url: str) -> None:
    [result], _ = probe_all(run, [RunProbe("svc", "i-1", url, generation=3)])
    assert isinstance(result, ProbeFailed)
    assert result.reason.startswith("bad URL")


def test_the_client_is_chosen_by_setting() -> None:
    builtin = make_prober(load_settings({}))
    chosen = make_prober(load_settings({"SERVICE_DISCOVERY_PROBE_CLIENT": "httpx"}))
    assert isinstance(builtin.http, PlainProbeClient)
    assert isinstance(chosen.http, HttpxProber)
    assert isinstance(chosen.tcp, TcpProber) and isinstance(builtin.tcp, TcpProber)
    asyncio.run(chosen.aclose())


@both_loops
def test_expired_connections_are_closed_by_the_next_probe_to_anywhere(
    run: Runner, pool: IdlePool
) -> None:
    counts: list[int] = []
    first, second = pool.first, pool.second

    async def main() -> None:
        async with pool.client() as client:
            await client.probe(probe_of(first.port))
            pool.clock.now = 5.0
            await client.probe(probe_of(second.port))
            counts.append(client.idle_connections)  # first's expired one is gone

    run(main)
    assert counts == [1]
    for thread in first._threads:
        thread.join(timeout=5)
    assert first.closed_by_client == 1
