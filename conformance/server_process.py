"""Start and stop the registry (or any server) as a real child process, the way it is deployed.

The one process helper of the conformance suite, the unit tests (tests/sdk,
tests/reliability, tests/soak) and the benchmarks. The server is started with
``python -m frontends serve --frontend F --fd N`` on a socket this process has
already bound to 127.0.0.1 port 0 and put in listen mode, so nothing races for
fixed ports and the server is reachable the moment it starts accepting.
Configuration is by environment variables only; everything the registry reads
is first removed from the inherited environment, so a developer's shell cannot
change what is tested or measured.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import httpx

from conformance.client import tls_context
from frontends.outbound.cluster_settings import CLUSTER_VARIABLES
from frontends.runtime.dns_settings import DNS_VARIABLES

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
    "SERVICE_DISCOVERY_GC_YOUNG_THRESHOLD",
    "HEALTH_CHECK_ALLOWED_NETWORKS",
    "SERVICE_DISCOVERY_PROBE_CLIENT",
    "HEALTH_CHECK_FIRST_PROBES_PER_SECOND",
    "HEALTH_CHECK_FIRST_RETRY_SECONDS",
    "HEALTH_CHECK_RESOLVER_THREADS",
    "SERVICE_DISCOVERY_MAX_WATCH_STREAMS",
    "SERVICE_DISCOVERY_WATCH_KEEPALIVE_SECONDS",
    "SERVICE_DISCOVERY_FILTER_CACHE_BYTES",
    "SERVICE_DISCOVERY_MAX_FILTER_PAIRS",
    "SERVICE_DISCOVERY_WATCH_MAX_SERVICES",
    "SERVICE_DISCOVERY_MAX_METADATA_BYTES",
    # Cluster mode and the DNS interface: off unless a test asks.
    *CLUSTER_VARIABLES,
    *DNS_VARIABLES,
)

#: How long a server may take to answer GET /health after it is spawned.
READY_TIMEOUT_SECONDS = 15.0

#: How long a server may take to exit after SIGTERM before the suite kills it.
STOP_TIMEOUT_SECONDS = 10.0


def child_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """The inherited environment minus registry settings, plus ``overrides``.

    No state file unless a test asks for one: a test server must never load
    or leave a snapshot in the per-user default location. A test of that
    default names its own ``XDG_STATE_HOME`` (a temporary directory) instead.
    """
    env = {key: value for key, value in os.environ.items() if key not in CONFIG_VARIABLES}
    if "XDG_STATE_HOME" not in overrides:
        env["SERVICE_DISCOVERY_STATE_FILE"] = ""
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if part
    )
    env.update(overrides)
    return env


def listening_socket(backlog: int = 128) -> socket.socket:
    """A TCP socket bound to 127.0.0.1, port chosen by the kernel, listening.

    TCP_NODELAY is set here so the accepted connections inherit it (Linux).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock


@contextmanager
def kept_socket(backlog: int = 128) -> Iterator[socket.socket]:
    """A listening 127.0.0.1 socket (port 0) the caller keeps across server restarts."""
    sock = listening_socket(backlog)
    try:
        yield sock
    finally:
        sock.close()


class ChildProcess:
    """One server child process, serving on an inherited listening socket (or a port it binds).

    Its stdout and stderr go to files, not pipes, so a chatty server can never
    block on a full pipe and everything it said can be read at any time.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        sock: socket.socket | None = None,
        port: int | None = None,
        backlog: int = 128,
        preexec_fn: Callable[[], None] | None = None,
        new_session: bool = False,
        extra_listeners: int = 0,
    ) -> None:
        """`argv` gets ``--fd N`` appended: `sock`, a listening socket the caller
        keeps (and closes), so a restarted server can inherit the same one, or by
        default a fresh one whose copy here is closed once the child holds it.
        With `port`, the child binds that port itself and gets no socket.
        `extra_listeners` more fresh sockets follow, one ``--fd`` each, for a
        server listening on several ports (`ports` lists them all)."""
        self.name = name
        self._logdir = tempfile.TemporaryDirectory(prefix=f"sd-{name.replace(' ', '-')}-")
        self.stdout_path = Path(self._logdir.name) / "stdout.log"
        self.stderr_path = Path(self._logdir.name) / "stderr.log"
        fresh: list[socket.socket] = []
        if port is None and sock is None:
            sock = listening_socket(backlog)
            fresh.append(sock)
        extra = [listening_socket(backlog) for _ in range(extra_listeners)]
        fresh += extra
        listeners = [sock, *extra] if sock is not None else extra
        argv = [*argv, *(arg for s in listeners for arg in ("--fd", str(s.fileno())))]
        self.sock = sock
        self.port: int = sock.getsockname()[1] if sock is not None else port or 0
        self.ports: list[int] = [self.port, *(s.getsockname()[1] for s in extra)]
        self.url = f"http://127.0.0.1:{self.port}"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                list(argv),
                cwd=REPO_ROOT,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=[s.fileno() for s in listeners],
                preexec_fn=preexec_fn,
                start_new_session=new_session,
            )
        for listener in fresh:
            # The child holds its own copy; ours would only keep the port alive
            # after the child is gone.
            listener.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stdout(self) -> str:
        """Everything the server wrote to stdout so far."""
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        """The server's output, for assertion messages."""
        return (
            f"[{self.name}, exit code {self.proc.poll()}]\n"
            f"--- stderr ---\n{self.stderr()[-8000:]}\n--- stdout ---\n{self.stdout()[-4000:]}"
        )

    def check_alive(self) -> None:
        """Fail, with the server's output, if the process has ended."""
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited\n{self.describe()}")

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS, path: str = "/health") -> None:
        """Poll GET `path` until it answers 200; fail with the server's output."""
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        with httpx.Client(timeout=2.0, verify=tls_context(), trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited before it was ready\n{self.describe()}")
                try:
                    response = client.get(f"{self.url}{path}")
                except httpx.HTTPError as exc:
                    last_error = repr(exc)
                else:
                    if response.status_code == 200:
                        return
                    last_error = f"GET {path} answered {response.status_code}: {response.text}"
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
        its caller, and the failure is reported with the server's output.
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

    def shutdown(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM, and SIGKILL after `timeout` s; whatever the exit code (benchmarks, restarts)."""
        self.terminate()
        if self.wait_exit(timeout) is None:
            self.kill()

    def cleanup(self) -> None:
        """Make sure the process is gone and the log directory removed."""
        try:
            if self.proc.poll() is None:
                self.kill()
        finally:
            self._logdir.cleanup()


def start_fake_peers(
    listeners: int = 1,
    *,
    backlog: int = 128,
    preexec_fn: Callable[[], None] | None = None,
    new_session: bool = False,
) -> ChildProcess:
    """The fake-peer server (`conformance.fake_peers`) on `listeners` fresh sockets, ready.

    The one way the soak harness and the benchmarks run it in a process of its own.
    """
    child = ChildProcess(
        "fake peers",
        [sys.executable, "-m", "conformance.fake_peers"],
        child_environment({}),
        backlog=backlog,
        preexec_fn=preexec_fn,
        new_session=new_session,
        extra_listeners=listeners - 1,
    )
    try:
        child.wait_ready(path="/_ready")
    except BaseException:
        child.cleanup()
        raise
    return child


#: Server kinds beyond the frontends' names: `quart-uvicorn` is Quart served by uvicorn.
SERVER_KINDS = {"quart-uvicorn": ("--frontend", "quart", "--server", "uvicorn")}


def frontend_args(kind: str) -> tuple[str, ...]:
    """The `serve` arguments for a server kind (a frontend's name, or one of SERVER_KINDS)."""
    return SERVER_KINDS.get(kind, ("--frontend", kind))


class ServerProcess(ChildProcess):
    """One registry process: ``python -m frontends serve --frontend F --fd N``."""

    def __init__(
        self,
        frontend: str,
        env: Mapping[str, str],
        extra_args: Sequence[str] = (),
        *,
        sock: socket.socket | None = None,
        module: str = "frontends",
        name: str | None = None,
        backlog: int = 128,
        preexec_fn: Callable[[], None] | None = None,
        new_session: bool = False,
    ) -> None:
        """`module`: another launcher with the same CLI (`bench.traced_server`)."""
        self.frontend = frontend
        self.env = dict(env)
        argv = [sys.executable, "-m", module, "serve", *frontend_args(frontend), *extra_args]
        super().__init__(
            name or f"{frontend} server",
            argv,
            child_environment(env),
            sock=sock,
            backlog=backlog,
            preexec_fn=preexec_fn,
            new_session=new_session,
        )


def start_server(
    frontend: str,
    env: Mapping[str, str],
    extra_args: Sequence[str] = (),
    wait_ready: bool = True,
    *,
    sock: socket.socket | None = None,
) -> ServerProcess:
    """Spawn a server and (by default) wait until GET /health answers 200.

    The `cluster` kind is three nodes on one etcd (`conformance.cluster_process`),
    standing in for one server.
    """
    if frontend == "cluster" and sock is None:
        from conformance.cluster_process import start_cluster_server

        return cast(ServerProcess, start_cluster_server(env, extra_args, wait_ready))
    server = ServerProcess(frontend, env, extra_args, sock=sock)
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
    *,
    sock: socket.socket | None = None,
    stop_timeout: float = STOP_TIMEOUT_SECONDS,
) -> Iterator[ServerProcess]:
    """A ready server for the ``with`` body; SIGTERM and exit 0 required after it.

    The clean-exit check runs only when the body succeeded (a failing test
    should report its own failure, not a follow-on one), but the process is
    always gone afterwards.
    """
    server = start_server(frontend, env, extra_args, sock=sock)
    try:
        yield server
        server.stop(stop_timeout)
    finally:
        server.cleanup()
