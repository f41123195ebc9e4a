"""A real registry in a subprocess, and a real health endpoint in a thread, for the SDK tests.

The registry is started from the project (``python -m frontends serve``, by
`conformance.server_process`) on a socket this process binds to 127.0.0.1
port 0 and hands over, so there is no port race, and a restart can hand the
same listening socket to the next process: connections made while no process
serves it wait in the backlog instead of being refused.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from conformance.server_process import ServerProcess, listening_socket

SECRET = "sdk-test-secret"
ROOT = Path(__file__).resolve().parents[2]

FAST_SETTINGS = {
    "SERVICE_DISCOVERY_SECRET": SECRET,
    "SERVICE_REGISTRATION_TTL_SECONDS": "2",
    "HEALTH_CHECK_INTERVAL_SECONDS": "0.2",
    "HEALTH_CHECK_TIMEOUT_SECONDS": "0.2",
    "SELF_PRESERVATION_THRESHOLD": "0",
    "SERVICE_DISCOVERY_STATE_FILE": "",  # a restart must really forget
}


class RegistryProcess:
    """One registry server on a loopback socket; restartable on the same socket.

    Each start is a `conformance.server_process.ServerProcess` on the socket
    this object keeps, so the URL outlives the restarts.
    """

    def __init__(self, frontend: str, env: Mapping[str, str] | None = None) -> None:
        self.frontend = frontend
        self.env = {**FAST_SETTINGS, **(env or {})}
        self.sock = listening_socket()
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: ServerProcess | None = None
        self._last_output = ""

    @property
    def ttl(self) -> float:
        return float(self.env["SERVICE_REGISTRATION_TTL_SECONDS"])

    def start(self, timeout: float = 30.0) -> None:
        assert self.server is None, "already running"
        self.server = ServerProcess(self.frontend, self.env, sock=self.sock)
        try:
            self.server.wait_ready(timeout)
        except BaseException:
            self._forget()
            raise

    def stop(self) -> None:
        """SIGTERM, and exit 0 required (SIGKILL after 10 s). Keeps the socket."""
        if self.server is None:
            return
        try:
            self.server.stop()
        finally:
            self._forget()

    def _forget(self) -> None:
        assert self.server is not None
        self._last_output = self.server.describe()
        self.server.cleanup()
        self.server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and close the socket: the registry is now refused."""
        try:
            self.stop()
        finally:
            self.sock.close()

    def output(self) -> str:
        """What the running (or else the last) server said."""
        return self.server.describe() if self.server is not None else self._last_output


@contextmanager
def running_registry(
    frontend: str, env: Mapping[str, str] | None = None
) -> Iterator[RegistryProcess]:
    """A started `RegistryProcess`, closed (server stopped, socket closed) on the way out:
    the body of every real-registry fixture."""
    server = RegistryProcess(frontend, env)
    with closing(server):
        server.start()
        yield server


def eventually(condition: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    """Poll a real registry's state every 50 ms; fail after ``limit`` seconds.

    A real process has no fake clock to jump, so its tests wait, but only as
    long as the state takes to settle.
    """
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not true after {limit} s")
        time.sleep(0.05)


class HealthEndpoint:
    """A tiny HTTP server in a thread answering the registry's probes.

    ``healthy`` switches its answer between 200 ``healthy`` and 503.
    """

    def __init__(self, load: float = 0.2) -> None:
        self.healthy = True
        self.load = load
        self.probes = 0
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.probes += 1
                body: dict[str, Any] = {
                    "status": "healthy" if endpoint.healthy else "unhealthy",
                    "load_percentage": endpoint.load,
                }
                raw = json.dumps(body).encode()
                self.send_response(200 if endpoint.healthy else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def instance(self, service_name: str, instance_id: str) -> dict[str, Any]:
        """Registration fields of an instance the registry will probe here (on loopback)."""
        return {
            "service_name": service_name,
            "instance_id": instance_id,
            "host": "127.0.0.1",
            "port": self.port,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
