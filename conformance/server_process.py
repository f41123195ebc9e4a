"""Start and stop the registry as a real child process, the way it is deployed.

The server is started with ``python -m frontends serve --frontend F --fd N`` on
a socket this process has already bound to 127.0.0.1 port 0 and put in listen
mode, so tests never race for fixed ports and the server is reachable the
moment it starts accepting. Configuration is by environment variables only;
everything the registry reads is first removed from the inherited environment,
so a developer's shell cannot change what the suite tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from conformance.client import tls_context

#: Repository root: the child runs there so ``-m frontends`` imports this checkout.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Every variable the registry reads; scrubbed from the child's environment.
CONFIG_VARIABLES = (
    "SERVICE_DISCOVERY_SECRET",
    "SERVICE_DISCOVERY_READ_TOKEN",
    "HEALTH_CHECK_INTERVAL_SECONDS",
    "HEALTH_CHECK_TIMEOUT_SECONDS",
    "HEALTH_CHECK_SUCCESS_THRESHOLD",
    "HEALTH_CHECK_FAILURE_THRESHOLD",
    "MAX_CONCURRENT_HEALTH_CHECKS",
    "SERVICE_REGISTRATION_TTL_SECONDS",
    "DEREGISTER_UNHEALTHY_AFTER_SECONDS",
    "WATCH_LOAD_DELTA",
    "SELF_PRESERVATION_THRESHOLD",
    "SELF_PRESERVATION_MIN_INSTANCES",
    "SELF_PRESERVATION_MAX_SECONDS",
    "SERVICE_DISCOVERY_MAX_INSTANCES",
    "SERVICE_DISCOVERY_MAX_BODY_BYTES",
    "HEALTH_CHECK_MAX_BODY_BYTES",
    "LOG_LEVEL",
    "SERVICE_DISCOVERY_HOST",
    "SERVICE_DISCOVERY_PORT",
    "SERVICE_DISCOVERY_STATE_FILE",
    "SERVICE_DISCOVERY_SNAPSHOT_INTERVAL_SECONDS",
    "SERVICE_DISCOVERY_MAX_BLOCKING_QUERIES",
    "SERVICE_DISCOVERY_MAX_IN_FLIGHT_REQUESTS",
    "SHUTDOWN_GRACE_SECONDS",
    "HEALTH_CHECK_ALLOWED_NETWORKS",
    "SERVICE_DISCOVERY_PROBE_CLIENT",
)

#: How long a server may take to answer GET /health after it is spawned.
READY_TIMEOUT_SECONDS = 15.0

#: How long a server may take to exit after SIGTERM before the suite kills it.
STOP_TIMEOUT_SECONDS = 10.0


def child_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """The inherited environment minus registry settings, plus ``overrides``."""
    env = {key: value for key, value in os.environ.items() if key not in CONFIG_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if part
    )
    env.update(overrides)
    return env


def listening_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1, port chosen by the kernel, listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


class ServerProcess:
    """One registry process serving on an inherited listening socket.

    Its stdout and stderr go to files, not pipes, so a chatty server can never
    block on a full pipe and the test can read everything it said at any time.
    """

    def __init__(
        self,
        frontend: str,
        env: Mapping[str, str],
        extra_args: Sequence[str] = (),
        *,
        sock: socket.socket | None = None,
    ) -> None:
        """`sock`: serve on a listening socket the caller keeps (and closes), so a
        restarted server can inherit the same one; by default a fresh one whose
        copy here is closed once the child holds it."""
        self.frontend = frontend
        self.env = dict(env)
        self._logdir = tempfile.TemporaryDirectory(prefix=f"conformance-{frontend}-")
        self.stdout_path = Path(self._logdir.name) / "stdout.log"
        self.stderr_path = Path(self._logdir.name) / "stderr.log"
        kept = sock is not None
        if sock is None:
            sock = listening_socket()
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        fd = sock.fileno()
        args = [
            sys.executable,
            "-m",
            "frontends",
            "serve",
            "--frontend",
            frontend,
            "--fd",
            str(fd),
            *extra_args,
        ]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                args,
                cwd=REPO_ROOT,
                env=child_environment(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=[fd],
            )
        if not kept:
            # The child holds its own copy; ours would only keep the port alive
            # after the child is gone.
            sock.close()

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stdout(self) -> str:
        """Everything the server wrote to stdout so far."""
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        """The server's output, for assertion messages."""
        return (
            f"[{self.frontend} server, exit code {self.proc.poll()}]\n"
            f"--- stderr ---\n{self.stderr()[-8000:]}\n--- stdout ---\n{self.stdout()[-4000:]}"
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Poll GET /health until it answers 200; fail with the server's output."""
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        with httpx.Client(timeout=2.0, verify=tls_context()) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited before it was ready\n{self.describe()}")
                try:
                    response = client.get(f"{self.url}/health")
                except httpx.HTTPError as exc:
                    last_error = repr(exc)
                else:
                    if response.status_code == 200:
                        return
                    last_error = f"GET /health answered {response.status_code}: {response.text}"
                time.sleep(0.05)
        self.kill()
        raise AssertionError(
            f"server not ready within {timeout} s ({last_error})\n{self.describe()}"
        )

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the process to end by itself; ``None`` if it is still running."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self) -> None:
        """Send SIGTERM (the way every process manager stops a service)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and reap; used only when the server misbehaved."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM, then require exit code 0 within ``timeout`` seconds.

        A server that ignores SIGTERM is killed so that no process outlives
        the suite, and the failure is reported with the server's output.
        """
        self.terminate()
        code = self.wait_exit(timeout)
        if code is None:
            self.kill()
            raise AssertionError(
                f"server did not exit within {timeout} s of SIGTERM; killed\n{self.describe()}"
            )
        if code != 0:
            raise AssertionError(f"server exited with {code} after SIGTERM\n{self.describe()}")

    def cleanup(self) -> None:
        """Make sure the process is gone and the log directory removed."""
        try:
            if self.proc.poll() is None:
                self.kill()
        finally:
            self._logdir.cleanup()


def start_server(
    frontend: str,
    env: Mapping[str, str],
    extra_args: Sequence[str] = (),
    wait_ready: bool = True,
) -> ServerProcess:
    """Spawn a server and (by default) wait until GET /health answers 200."""
    server = ServerProcess(frontend, env, extra_args)
    if wait_ready:
        try:
            server.wait_ready()
        except BaseException:
            server.cleanup()
            raise
    return server


@contextmanager
def serving(
    frontend: str,
    env: Mapping[str, str],
    extra_args: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    """A ready server for the ``with`` body; SIGTERM and exit 0 required after it.

    The clean-exit check runs only when the body succeeded (a failing test
    should report its own failure, not a follow-on one), but the process is
    always gone afterwards.
    """
    server = start_server(frontend, env, extra_args)
    try:
        yield server
        server.stop()
    finally:
        server.cleanup()
