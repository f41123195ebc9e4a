"""Hostile and broken clients on raw sockets: what an HTTP library will not send.

Each case runs against a real server per frontend and ends by checking that
the process is alive and that `/health` and an authenticated read still
answer quickly on fresh connections (`assert_still_serving`).

- a 100 KiB header line / request line / header block (refused: 431 and close);
- a body shorter than its Content-Length, the client then stalling (others are
  served meanwhile; the request is forgotten once the client goes away);
- slowloris: hundreds of never-finished requests, trickled, while other
  clients get prompt answers;
- 10,000 idle connections at once (RLIMIT_NOFILE raised for this process and
  inherited by the server, which is checked in /proc) while a client still
  gets prompt answers;
- garbage and malformed HTTP (TLS hello, NULs, bad framing, smuggling-style
  headers): a 4xx or a closed connection, never a 5xx or a traceback;
- resources held by clients that went away: parked blocking queries and
  closed connections must be freed promptly.
"""

from __future__ import annotations

import random
import resource
import socket
import statistics
from collections.abc import Callable, Iterator

import httpx
import pytest
from reliability_support import (
    AUTH,
    AUTH_LINE,
    PROMPT_MEDIAN_SECONDS,
    PROMPT_SECONDS,
    assert_still_serving,
    base_env,
    json_post_head,
    kept_socket,
    metric,
    one_request,
    open_connections,
    open_sockets,
    process_open_file_limit,
    raise_open_file_limit,
    raw_exchange,
    serving_on,
    status_of,
    timed_get,
    wait_for,
)

from conformance.client import tls_context
from conformance.server_process import ServerProcess

#: Idle connections held open at once by `test_ten_thousand_idle_connections`.
IDLE_CONNECTIONS = 10_000

#: Descriptors the test process needs beyond the idle connections.
FD_HEADROOM = 200


@pytest.fixture(scope="module")
def open_file_limit() -> Iterator[int]:
    """RLIMIT_NOFILE raised for this process (and so for the servers it starts)."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        yield raise_open_file_limit(IDLE_CONNECTIONS + FD_HEADROOM)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


@pytest.fixture(scope="module")
def server(frontend: str, open_file_limit: int) -> Iterator[ServerProcess]:
    with kept_socket() as sock, serving_on(frontend, base_env(), sock) as srv:
        yield srv


def assert_prompt(times: list[float], when: str) -> None:
    """Answers stayed prompt: median and worst case, on loopback."""
    median = statistics.median(times)
    assert median < PROMPT_MEDIAN_SECONDS, f"median answer {when}: {median:.3f} s"
    assert max(times) < PROMPT_SECONDS, f"slowest answer {when}: {max(times):.3f} s"


def _in_flight(srv: ServerProcess) -> float:
    """Requests in flight besides the /metrics request asking."""
    return metric(srv.url, "sd_requests_in_flight") - 1


# ------------------------------------------------------------ oversized


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100 * 1024 + b"\r\n\r\n",
        b"GET /health?" + b"a" * 100 * 1024 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 90) for n in range(1100))
        + b"\r\n",
        b"GET /v1/discovery/services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + b"t" * 100 * 1024
        + b"\r\n\r\n",
    ],
    ids=["header-line", "request-line", "many-headers", "authorization-header"],
)
def test_oversized_head_is_refused(server: ServerProcess, request_bytes: bytes) -> None:
    raw, ending = raw_exchange(server.port, request_bytes, timeout=5)
    status = status_of(raw)
    assert ending in {"eof", "reset"}, f"connection left open after {raw[:200]!r}"
    assert status is None or 400 <= status < 500, raw[:300]
    assert_still_serving(server)


# ------------------------------------------------------- incomplete bodies


def test_short_body_then_stall(server: ServerProcess) -> None:
    """Content-Length 100, 5 bytes sent, then silence: others are served, nothing leaks."""
    baseline = _in_flight(server)
    head = json_post_head("/v1/discovery/heartbeat", 100)
    with socket.create_connection(("127.0.0.1", server.port)) as stalled:
        stalled.sendall(head + b'{"a":')
        wait_for(lambda: _in_flight(server) == baseline + 1, 5, "the stalled request to start")
        for _ in range(3):
            assert_still_serving(server)  # meanwhile, others are served
        stalled.settimeout(0.5)
        try:
            answer = stalled.recv(65536)
        except TimeoutError:
            answer = b""  # still waiting for the body: fine
        if answer:
            status = status_of(answer)
            assert status is not None and 400 <= status < 500, answer[:300]
    wait_for(lambda: _in_flight(server) == baseline, 5, "the abandoned request to be forgotten")
    assert_still_serving(server)


def test_short_body_then_half_close(server: ServerProcess) -> None:
    """The client ends its side mid-body: a 4xx or a close, never a hang or a 5xx."""
    baseline = _in_flight(server)
    head = json_post_head("/v1/discovery/register", 1000)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + b'{"service_name": "half')
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):  # EOF within the timeout, or TimeoutError fails
            received += chunk
    status = status_of(received)
    assert status is None or 400 <= status < 500, received[:300]
    wait_for(lambda: _in_flight(server) == baseline, 5, "the half-closed request to end")
    assert_still_serving(server)


# --------------------------------------------------------------- slowloris

SLOW_CLIENTS = 300


def test_slowloris_does_not_starve_others(server: ServerProcess) -> None:
    """Hundreds of requests whose request line or headers never end, trickled a byte at a time."""
    slow: list[socket.socket] = []
    try:
        for n in range(SLOW_CLIENTS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            slow.append(sock)
            if n % 2:  # the request line never ends
                sock.sendall(b"GET /v1/discovery/services?x%d" % n)
            else:  # the header block never ends
                sock.sendall(b"GET /v1/discovery/services HTTP/1.1\r\nHost: x\r\nX-%d: " % n)
        times: list[float] = []
        with httpx.Client(base_url=server.url, headers=AUTH, verify=tls_context()) as client:
            for round_ in range(10):
                for sock in slow:
                    sock.sendall(b"a")  # never the blank line that ends the head
                response, elapsed = timed_get(client, "/v1/discovery/services")
                assert response.status_code == 200, response.text
                times.append(elapsed)
                if round_ % 3 == 0:
                    assert_still_serving(server)
        assert_prompt(times, "during slowloris")
        for sock in slow:  # none of them got an answer: their heads never ended
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        for sock in slow:
            sock.close()
    assert_still_serving(server)


# ------------------------------------------------------ idle connections


def test_ten_thousand_idle_connections(server: ServerProcess, open_file_limit: int) -> None:
    count = min(IDLE_CONNECTIONS, open_file_limit - FD_HEADROOM)
    # With a hard RLIMIT_NOFILE under 10,200 this uses as many as the limit allows.
    assert count >= 500, f"RLIMIT_NOFILE {open_file_limit} leaves room for too few sockets"
    server_limit = process_open_file_limit(server.proc.pid)
    assert server_limit >= count + 100, f"server RLIMIT_NOFILE is only {server_limit}"
    before = open_sockets(server.proc.pid)
    idle = open_connections(server.sock, server.port, count)
    try:
        # Every connection was accepted (the accept queue drained); the server
        # may already be timing out the first ones (keep-alive timeout, 5 s).
        times: list[float] = []
        with httpx.Client(base_url=server.url, headers=AUTH, verify=tls_context()) as client:
            for _ in range(20):
                for path in ("/health", "/v1/discovery/services"):
                    response, elapsed = timed_get(client, path)
                    assert response.status_code == 200, response.text
                    times.append(elapsed)
        assert_prompt(times, f"with {count} idle connections")
        assert_still_serving(server)
        # Each idle connection gets its timeout: the server closes them all
        # (an idle peer cannot hold a file descriptor for ever).
        wait_for(
            lambda: open_sockets(server.proc.pid) <= before + 20,
            30,
            f"the server to time out {count} idle connections",
            interval=0.5,
        )
        for conn in idle[:: max(1, count // 50)]:  # never answered, now closed: EOF
            conn.setblocking(True)
            conn.settimeout(5)
            assert conn.recv(1) == b""
    finally:
        for conn in idle:
            conn.close()
    # Closing ten thousand at once is a burst of work; then back to prompt answers.
    wait_for(_serves_promptly(server), 20, "prompt answers after the idle connections closed")
    assert_still_serving(server)


def _serves_promptly(server: ServerProcess) -> Callable[[], bool]:
    def check() -> bool:
        try:
            assert_still_serving(server)
        except (AssertionError, httpx.HTTPError):
            return False
        return True

    return check


# ------------------------------------------------------------------ garbage

_rng = random.Random(4242)
GARBAGE = {
    "random-bytes": bytes(_rng.randrange(256) for _ in range(4096)),
    "tls-client-hello": bytes.fromhex("16030100a5010000a10303")
    + bytes(_rng.randrange(256) for _ in range(160)),
    "nul-bytes": b"\x00" * 2048,
    "http09": b"GET /health\r\n\r\n",
    "bad-method": b"G(T /health HTTP/1.1\r\nHost: x\r\n\r\n",
    "control-in-target": b"GET /he\x01alth HTTP/1.1\r\nHost: x\r\n\r\n",
    "raw-utf8-in-target": "GET /v1/discovery/services/é HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    "header-without-colon": b"GET /health HTTP/1.1\r\nHost: x\r\nbroken\r\n\r\n",
    "negative-content-length": b"POST /v1/discovery/register HTTP/1.1\r\nHost: x\r\n"
    + AUTH_LINE
    + b"Content-Type: application/json\r\nContent-Length: -5\r\n\r\n{}",
    "huge-content-length": b"POST /v1/discovery/register HTTP/1.1\r\nHost: x\r\n"
    + AUTH_LINE
    + b"Content-Type: application/json\r\nContent-Length: 99999999999999999999999\r\n\r\n{}",
    "bad-chunk-size": b"POST /v1/discovery/heartbeat HTTP/1.1\r\nHost: x\r\n"
    + AUTH_LINE
    + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
    "content-length-and-chunked": b"POST /v1/discovery/heartbeat HTTP/1.1\r\nHost: x\r\n"
    + AUTH_LINE
    + b"Content-Type: application/json\r\nContent-Length: 5\r\n"
    + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunked-body-over-limit": b"POST /v1/discovery/register HTTP/1.1\r\nHost: x\r\n"
    + AUTH_LINE
    + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    + (b"10000\r\n" + b" " * 65536 + b"\r\n") * 3
    + b"0\r\n\r\n",
    "latin1-token": b"GET /v1/discovery/services HTTP/1.1\r\nHost: x\r\n"
    + b"Authorization: Bearer \xe9\xff\x00\r\n\r\n",
    "h2-preface-then-junk": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64,
}


@pytest.mark.parametrize("payload", list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_instead_of_http(server: ServerProcess, payload: bytes) -> None:
    raw, _ = raw_exchange(server.port, payload, timeout=1.0)
    for match in raw.split(b"HTTP/1.1 ")[1:]:
        code = int(match[:3])
        assert code < 500, f"5xx for garbage: {raw[:400]!r}"
        if code >= 400 and b"content-type: application/json" in raw.lower():
            assert b'"success":false' in raw, raw[:400]
    assert_still_serving(server)
    log = server.stderr()
    assert "Traceback" not in log and "internal_error" not in log, log[-4000:]


def test_absolute_form_request_target(
    server: ServerProcess, request: pytest.FixtureRequest
) -> None:
    """RFC 9112 3.2.2: a server MUST accept the absolute-form of the request target."""
    target = f"http://127.0.0.1:{server.port}/health".encode()
    raw, _ = raw_exchange(server.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n", 1.0)
    assert status_of(raw) == 200, raw[:300]
    assert_still_serving(server)


# ------------------------------------------ resources of clients that left


@pytest.fixture(scope="module")
def leak_server(frontend: str, open_file_limit: int) -> Iterator[ServerProcess]:
    """A fresh server (nothing else has touched its sockets), few blocking-query slots."""
    env = base_env(SERVICE_DISCOVERY_MAX_BLOCKING_QUERIES="8")
    with kept_socket() as sock, serving_on(frontend, env, sock) as srv:
        yield srv


def test_closed_connections_are_released(leak_server: ServerProcess) -> None:
    pid = leak_server.proc.pid
    before = open_sockets(pid)
    for _ in range(100):  # connect and close without a word (a TCP health check)
        socket.create_connection(("127.0.0.1", leak_server.port), timeout=5).close()
    for _ in range(50):  # one request, then close (curl)
        raw = one_request(leak_server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(raw) == 200
    wait_for(  # at once would be right; 6 s also admits a keep-alive timeout of 5 s
        lambda: open_sockets(pid) <= before + 5,
        6,
        f"the server to let go of 150 closed connections ({open_sockets(pid) - before} at first)",
        interval=0.1,
    )
    assert_still_serving(leak_server)


def test_disconnected_blocking_query_frees_its_slot(
    leak_server: ServerProcess, request: pytest.FixtureRequest
) -> None:
    """A watcher that gives up (its read timeout < wait) must not keep its parked slot."""
    url = leak_server.url
    index = int(
        httpx.get(f"{url}/v1/discovery/services/ghost", headers=AUTH).headers["x-discovery-index"]
    )
    query = f"GET /v1/discovery/services/ghost?index={index}&wait=30s HTTP/1.1\r\n".encode()
    watchers = [socket.create_connection(("127.0.0.1", leak_server.port)) for _ in range(8)]
    try:
        for sock in watchers:
            sock.sendall(query + b"Host: x\r\n" + AUTH_LINE + b"\r\n")
        wait_for(lambda: metric(url, "sd_blocking_queries") == 8, 5, "8 parked queries")
    finally:
        for sock in watchers:
            sock.close()
    wait_for(
        lambda: metric(url, "sd_blocking_queries") == 0,
        2,
        "the abandoned blocking queries to be released",
    )
    response = httpx.get(  # a new watcher gets a slot (not 503 overloaded)
        f"{url}/v1/discovery/services/ghost/healthy",
        params={"index": index, "wait": "100ms"},
        headers=AUTH,
        timeout=5,
    )
    assert response.status_code == 200, response.text
    assert_still_serving(leak_server)
