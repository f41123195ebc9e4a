"""Helpers of the reliability suite: servers on sockets the test keeps, raw sockets, metrics.

Servers are `conformance.server_process.ServerProcess`es (`python -m
frontends serve --frontend F --fd N` on a pre-bound 127.0.0.1 port-0 socket,
with the registry's settings scrubbed from the environment) started with
`sock=`: this process keeps its copy of the listening socket, so that

- a restarted server can inherit the *same* socket (the URL stays the same,
  and connections made while no process serves it wait in the backlog), and
- the test can read the socket's accept queue (`accept_queue`) to open
  thousands of connections as fast as the server accepts them.
"""

from __future__ import annotations

import re
import resource
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

from conformance import health_checker
from conformance.client import tls_context
from conformance.health_checker import ProbeTally as ProbeTally
from conformance.parked_connections import accept_queue as accept_queue
from conformance.parked_connections import open_connections as open_connections
from conformance.server_process import ServerProcess, serving
from conformance.server_process import kept_socket as kept_socket  # the suite imports it here

FRONTENDS = ["quart", "trio"]

#: Fresh per run, so nothing can pass by matching a default baked into a frontend.
SECRET = "rel-rw-" + secrets.token_hex(16)
READ_TOKEN = "rel-ro-" + secrets.token_hex(16)
AUTH = {"Authorization": f"Bearer {SECRET}"}
#: The same header as a raw-socket client writes it.
AUTH_LINE = f"Authorization: Bearer {SECRET}\r\n".encode()

#: Probes a day away: a server's registry only changes when a test changes it.
QUIET_INTERVAL = "86400"

#: How quickly a server must answer one request on loopback: generous, because
#: CI machines are shared; a starved or blocked server misses it by far.
PROMPT_SECONDS = 2.0

#: The median answer time a test under stress must keep (loopback, tiny bodies).
PROMPT_MEDIAN_SECONDS = 0.25


#: A valid WebSocket handshake: the API serves none (`400 websocket_not_supported`).
WEBSOCKET_UPGRADE = (
    b"GET /v1/discovery/services HTTP/1.1\r\nHost: x\r\n" + AUTH_LINE + b"Connection: Upgrade\r\n"
    b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


def json_post_head(path: str, content_length: int) -> bytes:
    """The head of an authenticated JSON POST as a raw client writes it, blank line included:
    the tests that send less (or other) than the Content-Length add the body themselves."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode()
        + AUTH_LINE
        + f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n".encode()
    )


def register_instance(url: str, service: str, instance: str, *, timeout: float = 5.0) -> None:
    """Register one instance at 127.0.0.1:9 (nothing answers a probe there); a 200 is required."""
    response = httpx.post(
        f"{url}/v1/discovery/register",
        json={"service_name": service, "instance_id": instance, "host": "127.0.0.1", "port": 9},
        headers=AUTH,
        timeout=timeout,
    )
    assert response.status_code == 200, response.text


def base_env(**overrides: str) -> dict[str, str]:
    """Both tokens, quiet probes that could only ever reach loopback, plus `overrides`.

    Every other setting is scrubbed from the child's environment by
    `conformance.server_process.child_environment`, so a developer's shell cannot leak in.
    """
    env: dict[str, str] = {}
    env.update(
        SERVICE_DISCOVERY_SECRET=SECRET,
        SERVICE_DISCOVERY_READ_TOKEN=READ_TOKEN,
        HEALTH_CHECK_INTERVAL_SECONDS=QUIET_INTERVAL,
        HEALTH_CHECK_FIRST_PROBES_PER_SECOND="0",
        HEALTH_CHECK_ALLOWED_NETWORKS="127.0.0.0/8,::1/128",
    )
    env.update(overrides)
    return env


def serving_on(
    frontend: str, env: Mapping[str, str], sock: socket.socket
) -> AbstractContextManager[ServerProcess]:
    """A ready server on `sock`; SIGTERM and exit 0 (within 30 s) required if the body succeeded."""
    return serving(frontend, env, sock=sock, stop_timeout=30)


def raise_open_file_limit(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit towards `wanted`; returns the new soft limit.

    Child processes inherit it, which is how the servers get the same limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def process_open_file_limit(pid: int) -> int:
    """The soft RLIMIT_NOFILE of another process, from /proc."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-files limit for pid {pid}")


def open_sockets(pid: int) -> int:
    """How many sockets process `pid` holds (connections plus listeners)."""
    count = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in fd_dir.iterdir():
        try:
            if entry.readlink().as_posix().startswith("socket:"):
                count += 1
        except OSError:
            continue  # closed while we looked
    return count


def metric(url: str, name: str) -> float:
    """One unlabelled sample of the server's `/metrics`."""
    text = httpx.get(f"{url}/metrics", timeout=5.0, verify=tls_context()).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} not in /metrics:\n{text[:2000]}"
    return float(match.group(1))


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, interval: float = 0.02
) -> None:
    """Call `condition()` until it is truthy; fail after `timeout` seconds saying `what`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def timed_get(
    client: httpx.Client, path: str, headers: Mapping[str, str] | None = None
) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = client.get(path, headers=dict(headers or {}))
    return response, time.monotonic() - start


def assert_still_serving(server: ServerProcess, within: float = PROMPT_SECONDS) -> None:
    """The process is alive, and `/health` and an authenticated read answer 200 within `within` s.

    Each request uses a fresh connection, as a new client would.
    """
    assert server.proc.poll() is None, f"server died\n{server.describe()}"
    for path, headers in (("/health", {}), ("/v1/discovery/services", AUTH)):
        with httpx.Client(base_url=server.url, timeout=within + 10, verify=tls_context()) as client:
            response, elapsed = timed_get(client, path, headers)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        assert response.headers["content-type"].startswith("application/json"), response.headers
        assert elapsed < within, f"GET {path} took {elapsed:.3f} s (limit {within} s)"
    assert server.proc.poll() is None, f"server died\n{server.describe()}"


def raw_exchange(port: int, data: bytes, timeout: float = 2.0) -> tuple[bytes, str]:
    """Send `data` on a fresh connection, read until EOF or `timeout`.

    Returns what the server sent and how it ended: `eof`, `reset` or `timeout`.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            return b"", "reset"  # refused mid-send: the server already closed
        received = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return bytes(received), "timeout"
            except OSError:
                return bytes(received), "reset"
            if not chunk:
                return bytes(received), "eof"
            received += chunk


def one_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send one request on a fresh connection, read exactly one response, then close.

    The connection is left for the *client* to close, as a browser or curl
    would (the response is delimited by Content-Length, which both frontends send).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed mid-response: {received!r}"
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        match = re.search(rb"(?im)^content-length: *(\d+)", head)
        assert match is not None, f"no Content-Length: {head!r}"
        while len(body) < int(match.group(1)):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed mid-body: {received!r}"
            body += chunk
        return head + b"\r\n\r\n" + body


def status_of(raw: bytes) -> int | None:
    """The status code of the first HTTP/1.x response in `raw`, if any."""
    match = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(match.group(1)) if match else None


def probing(
    url: str, interval: float = 0.05, path: str = "/health"
) -> AbstractContextManager[ProbeTally]:
    """A thread that GETs `path` every `interval` s while the body runs, `PROMPT_SECONDS` each."""
    return health_checker.probing(url, interval, path, timeout=PROMPT_SECONDS)


def read_response(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bytes, str]:
    """(head, body, ending) of one response on `sock`, then read on until EOF or `timeout`.

    `ending` says whether the server then closed the connection (`eof`/`reset`)
    or kept it open (`timeout`).
    """
    sock.settimeout(timeout)
    received = b""
    ending = "timeout"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                ending = "eof"
                break
            received += chunk
            head, sep, body = received.partition(b"\r\n\r\n")
            match = re.search(rb"(?im)^content-length: *(\d+)", head)
            if (
                sep
                and match
                and len(body) >= int(match.group(1))
                and b"connection: close" not in head.lower()
            ):
                break  # a complete response on a connection the server keeps
    except TimeoutError:
        pass
    except OSError:
        ending = "reset"
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body, ending


def labelled_metric(url: str, name: str, **labels: str) -> float:
    """One labelled sample of the server's `/metrics` (0 when absent)."""
    text = httpx.get(f"{url}/metrics", timeout=5.0, verify=tls_context()).text
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    match = re.search(rf"^{re.escape(name)}{{{re.escape(wanted)}}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0
