"""HAProxy 2.6 (Debian's package) load balancing by the registry's DNS: a `resolvers`
section pointed at the DNS port, a `server-template` on the RFC 2782 SRV name.

One HAProxy process serves every server kind (a frontend, resolvers and backend
each); through it, requests reach every healthy instance, stop reaching a drained
one and a stopped one, and reach a new replica. The instances are small HTTP
servers in this process that answer with their own name. HAProxy's resolution
timers are short, and every check polls until it holds (no timed assertion).
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.consumers.dns_registries import KINDS, Registry, registry, tool_or_skip, until

SERVICE = "web"
SRV_NAME = f"_{SERVICE}._tcp.service.discovery"
REQUESTS_PER_LOOK = 30  # enough for a round-robin over every slot that answers


class Backend:
    """An HTTP server on 127.0.0.1 (port 0) answering every GET with its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        body = name.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.stopped = False

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def haproxy_config(sockets: dict[str, socket.socket], servers: dict[str, Registry]) -> str:
    parts = [
        "global\n  log stderr format raw local0 warning\n",
        "defaults\n  mode http\n  log global\n  timeout connect 1s\n  timeout client 10s\n"
        "  timeout server 10s\n  retries 2\n  option redispatch\n",
    ]
    for kind, server in servers.items():
        tag = kind.replace("-", "_")
        nameservers = "".join(
            f"  nameserver node{n} 127.0.0.1:{port}\n" for n, port in enumerate(server.dns_ports)
        )
        parts.append(
            f"resolvers registry_{tag}\n{nameservers}"
            "  accepted_payload_size 8192\n  resolve_retries 3\n"
            "  timeout resolve 200ms\n  timeout retry 200ms\n"
            "  hold valid 1s\n  hold obsolete 0s\n  hold nx 1s\n  hold other 1s\n"
            "  hold refused 1s\n  hold timeout 1s\n"
        )
        parts.append(
            f"backend instances_{tag}\n  balance roundrobin\n"
            f"  server-template {SERVICE} 10 {SRV_NAME} resolvers registry_{tag}"
            " resolve-prefer ipv4 init-addr none\n"
        )
        parts.append(
            f"frontend entry_{tag}\n  bind fd@{sockets[kind].fileno()}\n"
            f"  default_backend instances_{tag}\n"
        )
    return "".join(parts)


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, tuple[Registry, int]]]:
    """Every kind's registry (a kind that cannot start here is left out) and one HAProxy
    in front of them all: kind -> (registry, HAProxy's port for it)."""
    haproxy = tool_or_skip("haproxy")
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="sd-haproxy-") as folder:
        servers: dict[str, Registry] = {}
        for kind in KINDS:
            try:
                servers[kind] = stack.enter_context(registry(kind))
            except pytest.skip.Exception:  # the cluster without etcd: the others still run
                continue
        sockets = {}
        for kind in servers:
            sockets[kind] = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        config = Path(folder) / "haproxy.cfg"
        config.write_text(haproxy_config(sockets, servers))
        checked = subprocess.run(
            [haproxy, "-c", "-f", str(config)],
            capture_output=True, text=True, pass_fds=[s.fileno() for s in sockets.values()],
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        log = (Path(folder) / "haproxy.log").open("w")
        stack.enter_context(log)
        process = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)],
            stdout=log, stderr=log, pass_fds=[s.fileno() for s in sockets.values()],
        )  # fmt: skip
        try:
            yield {kind: (servers[kind], sockets[kind].getsockname()[1]) for kind in servers}
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def reached(port: int, client: httpx.Client) -> frozenset[str] | None:
    """The instances that answered a round of requests through HAProxy; None if any failed."""
    names = set()
    for _ in range(REQUESTS_PER_LOOK):
        try:
            response = client.get(f"http://127.0.0.1:{port}/")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        names.add(response.text)
    return frozenset(names)


@pytest.mark.parametrize("kind", KINDS)
def test_haproxy_follows_the_registry(stack: dict[str, tuple[Registry, int]], kind: str) -> None:
    if kind not in stack:
        pytest.skip(f"no {kind} registry here (see the skip reason of its start)")
    server, port = stack[kind]
    backends = {name: Backend(f"{kind}-{name}") for name in ("one", "two", "three", "four")}
    try:
        with httpx.Client(timeout=10, trust_env=False) as client:

            def reaches(*names: str) -> None:
                wanted = frozenset(backends[name].name for name in names)
                until(lambda: reached(port, client) == wanted, f"HAProxy reaching {names}")

            for name in ("one", "two", "three"):
                server.register(SERVICE, name, "127.0.0.1", backends[name].port)
            reaches("one", "two", "three")
            server.drain(SERVICE, "one")
            reaches("two", "three")
            backends["two"].stop()  # its probes fail: unhealthy, out of the answers
            reaches("three")
            server.register(SERVICE, "four", "127.0.0.1", backends["four"].port)
            reaches("three", "four")
    finally:
        for backend in backends.values():
            backend.stop()
