"""A real registry in a subprocess, and a real health endpoint in a thread, for the SDK tests.

The registry is started from the project (``python -m frontends serve``) on a
socket this process binds to 127.0.0.1 port 0 and hands over with
``pass_fds``, so there is no port race, and a restart can hand the same
listening socket to the next process: connections made while no process
serves it wait in the backlog instead of being refused.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

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
    """One registry server on a loopback socket; restartable on the same socket."""

    def __init__(self, frontend: str, env: Mapping[str, str] | None = None) -> None:
        self.frontend = frontend
        self.env = {**FAST_SETTINGS, **(env or {})}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()

    @property
    def ttl(self) -> float:
        return float(self.env["SERVICE_REGISTRATION_TTL_SECONDS"])

    def start(self, timeout: float = 30.0) -> None:
        assert self.process is None, "already running"
        fd = self.sock.fileno()
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "frontends",
                "serve",
                "--frontend",
                self.frontend,
                "--fd",
                str(fd),
            ],
            pass_fds=[fd],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"registry exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"registry not ready after {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not exited after 10 s. Keeps the socket."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and close the socket: the registry is now refused."""
        self.stop()
        self.sock.close()
        self._log.close()

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-5000:]


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

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
