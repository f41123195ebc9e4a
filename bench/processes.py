"""The processes a scenario starts and measures: servers pinned to their CPU, /proc figures.

Every server binds 127.0.0.1 only (a pre-bound socket handed over with `--fd`,
or a free port for etcd), runs in its own process (`conformance.server_process`,
the one process helper) with `LOG_LEVEL=WARNING`, and is stopped when the
scenario's `Run` ends, failure or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.process_figures import cpu_seconds, rss_kib, runqueue_seconds
from conformance.server_process import (
    ChildProcess,
    ServerProcess,
    child_environment,
    start_fake_peers,
)

from .common import PYTHON, SECRET, BenchError
from .http_client import http_call

# ------------------------------------------------------------------ pinning


@dataclass
class Pinning:
    """CPU sets: servers on one core, load generators (wrk, Python clients) on the rest."""

    server: set[int] | None = None
    client: set[int] | None = None

    def describe(self) -> str:
        if self.server is None:
            return "not pinned"
        clients = sorted(self.client or ())
        return f"servers on CPU {sorted(self.server)}, load generators on CPU {clients}"


PIN = Pinning()


def setup_pinning(enabled: bool) -> None:
    """Pin this process (a load generator) to the client CPUs; servers get the first CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2:
        PIN.server = PIN.client = None
        return
    PIN.server = {cpus[0]}
    PIN.client = set(cpus[1:])
    os.sched_setaffinity(0, PIN.client)


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit; returns the new soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def child_setup(cpus: set[int] | None) -> Callable[[], None]:
    def setup() -> None:
        raise_nofile()
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


# --------------------------------------------------------------- processes


class Proc:
    """A server process this benchmark started (a `ChildProcess`), with its /proc figures."""

    def __init__(self, child: ChildProcess) -> None:
        self.child = child
        self.name = child.name
        self.port = child.port

    @property
    def pid(self) -> int:
        return self.child.pid

    def url(self, path: str = "/") -> str:
        return f"{self.child.url}{path}"

    def rss_kib(self) -> int:
        """Resident set size now, in KiB (VmRSS)."""
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        """User plus system CPU time used so far."""
        return cpu_seconds(self.pid)

    def runqueue_seconds(self) -> float:
        """Time its threads were ready to run but waited for a CPU (other jobs had it)."""
        return runqueue_seconds(self.pid)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s), whatever the exit code: a figure is already taken."""
        self.child.shutdown()

    def check_alive(self) -> None:
        if self.child.proc.poll() is not None:
            raise BenchError(f"{self.name} exited:\n{self.child.describe()}")


class Run(contextlib.ExitStack):
    """One scenario run: a temp dir and every process started, stopped on exit."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="sd-bench-"))
        self.callback(shutil.rmtree, self.tmp, True)

    def write_lines(self, name: str, lines: Iterable[str]) -> Path:
        path = self.tmp / name
        path.write_text("".join(f"{line}\n" for line in lines))
        return path

    def adopt(self, child: ChildProcess) -> Proc:
        """Stop `child` (SIGTERM, then SIGKILL) and remove its logs when the run ends."""
        self.callback(child.cleanup)
        self.callback(child.shutdown)
        return Proc(child)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        cpus: set[int] | None = None,
    ) -> Proc:
        """`argv` on a fresh pre-bound 127.0.0.1 socket (`--fd N`), or binding `port` itself."""
        child = ChildProcess(
            name,
            argv,
            env if env is not None else server_env(),
            port=port,
            backlog=BACKLOG,
            preexec_fn=child_setup(cpus),
            new_session=True,  # a terminal's Ctrl-C reaches us; we stop them
        )
        return self.adopt(child)


#: The listening sockets' backlog: load generators open hundreds of connections at once.
BACKLOG = 4096


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def registry_settings(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The benchmark's registry settings (`extra` wins)."""
    return {
        "SERVICE_DISCOVERY_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
        "SERVICE_REGISTRATION_TTL_SECONDS": "3600",
        **(extra or {}),
    }


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A child's whole environment: registry settings scrubbed, then the benchmark's."""
    return child_environment(registry_settings(extra))


def wait_ready(proc: Proc, path: str = "/health", timeout: float = 30.0) -> None:
    proc.child.wait_ready(timeout, path)


def start_registry(
    run: Run,
    frontend: str,
    *,
    loop: str = "asyncio",
    env: dict[str, str] | None = None,
    name: str | None = None,
    ready: bool = True,
    module: str = "frontends",
) -> Proc:
    """`python -m frontends serve --frontend F --fd N` on a pre-bound 127.0.0.1 socket.

    `ready=False` returns at once (start several, then `wait_ready` each);
    `module` runs another launcher with the same CLI (`bench.traced_server`).
    """
    loop_args = ["--loop", loop] if frontend in ("quart", "quart-uvicorn") else []
    label = name or "-".join(["registry", frontend, *loop_args[1:]])
    server = ServerProcess(
        frontend,
        registry_settings(env),
        loop_args,
        module=module,
        name=label,
        backlog=BACKLOG,
        preexec_fn=child_setup(PIN.server),
        new_session=True,
    )
    proc = run.adopt(server)
    if ready:
        wait_ready(proc)
    return proc


def start_bare(
    run: Run,
    stack: str,
    *,
    loop: str = "asyncio",
    store: bool = False,
    name: str | None = None,
    ready: bool = True,
) -> Proc:
    """The baseline app of `bench/bare_apps.py` on the same stack (`quart` or `trio`)."""
    argv = [PYTHON, "-m", "bench.bare_apps", "serve", stack, "--loop", loop]
    label = name or (f"bare-{stack}-{loop}" if stack == "quart" else f"bare-{stack}")
    proc = run.spawn(label, argv + ["--store"] * store, cpus=PIN.server)
    if ready:
        wait_ready(proc)
    return proc


def start_fake_instances(run: Run, *, cpus: set[int] | None = None) -> Proc:
    """The fake-peer server (`conformance.fake_peers`): `/h/...` health paths answer
    `200 {"status":"healthy"}` and `/_window` reports how often each was probed."""
    setup = child_setup(cpus if cpus is not None else PIN.client)
    return run.adopt(start_fake_peers(backlog=BACKLOG, preexec_fn=setup, new_session=True))


def start_etcd(run: Run) -> Proc:
    """etcd (Debian's etcd-server) on 127.0.0.1 with a temporary data dir in memory."""
    binary = shutil.which("etcd")
    if binary is None:
        raise BenchError("etcd not found: apt-get install -y etcd-server")
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    data = Path(tempfile.mkdtemp(prefix="sd-bench-etcd-", dir=base))
    run.callback(shutil.rmtree, data, True)
    client, peer = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    argv = [
        binary,
        "--name=bench",
        f"--data-dir={data}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=bench={peer_url}",
        "--logger=zap",
        "--log-level=error",
    ]
    proc = run.spawn("etcd", argv, port=client, env=child_environment({}), cpus=PIN.server)
    wait_ready(proc, "/health")
    return proc


def etcd_post(etcd: Proc, path: str, body: object) -> dict[str, Any]:
    """One call to etcd's JSON gateway; its answer's document."""
    answer = http_call(etcd.port, "POST", path, json.dumps(body).encode(), auth=False)
    document: dict[str, Any] = answer.ok(f"etcd {path}").json()
    return document


def etcd_version() -> str:
    binary = shutil.which("etcd")
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].removeprefix("etcd Version: ").strip() if out else "?"
