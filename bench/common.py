"""What every scenario script shares: processes, pinning, wrk, a small HTTP client, tables.

Every server a scenario starts binds 127.0.0.1 only (a pre-bound socket handed
over with `--fd`, or a free port for etcd), runs in its own process
(`conformance.server_process`, the one process helper) with
`LOG_LEVEL=WARNING`, and is stopped when the scenario ends, failure or not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from conformance.server_process import ChildProcess, ServerProcess, child_environment

ROOT = Path(__file__).resolve().parent.parent
WRK_DIR = Path(__file__).resolve().parent / "wrk"
PYTHON = sys.executable
SECRET = "bench-secret-0123456789abcdef"
AUTH = f"Bearer {SECRET}"
T = TypeVar("T")


class BenchError(RuntimeError):
    """A scenario could not produce a valid figure (a server died, wrong answers...)."""


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


def _child_setup(cpus: set[int] | None) -> Callable[[], None]:
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
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise BenchError(f"{self.name}: no VmRSS")

    def cpu_seconds(self) -> float:
        """User plus system CPU time used so far."""
        return cpu_seconds(self.pid)

    def runqueue_seconds(self) -> float:
        """Time its threads were ready to run but waited for a CPU (other jobs had it)."""
        total = 0
        for task in os.listdir(f"/proc/{self.pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{self.pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
        return total / 1e9

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s), whatever the exit code: a figure is already taken."""
        self.child.shutdown()

    def check_alive(self) -> None:
        if self.child.proc.poll() is not None:
            raise BenchError(f"{self.name} exited:\n{self.child.describe()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` has used (its threads included), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the ")" closing the command name: state is field 0, utime 11, stime 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
            preexec_fn=_child_setup(cpus),
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


def http_get(
    port: int, path: str, *, auth: bool = False, timeout: float = 30.0
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": AUTH} if auth else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


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
    label = name or (
        f"registry-{frontend}-{loop}"
        if frontend in ("quart", "quart-uvicorn")
        else f"registry-{frontend}"
    )
    server = ServerProcess(
        frontend,
        registry_settings(env),
        ["--loop", loop] if frontend in ("quart", "quart-uvicorn") else [],
        module=module,
        name=label,
        backlog=BACKLOG,
        preexec_fn=_child_setup(PIN.server),
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
    argv = [PYTHON, "-m", "bench.bare_apps", "serve", stack]
    if stack in ("quart", "raw"):
        argv += ["--loop", loop]
    if store:
        argv.append("--store")
    label = name or (f"bare-{stack}-{loop}" if stack == "quart" else f"bare-{stack}")
    proc = run.spawn(label, argv, cpus=PIN.server)
    if ready:
        wait_ready(proc)
    return proc


def start_fake_instances(run: Run, *, cpus: set[int] | None = None) -> Proc:
    """The fake-peer server (`conformance.fake_peers`): `/h/...` health paths answer
    `200 {"status":"healthy"}` and `/_window` reports how often each was probed."""
    argv = [PYTHON, "-m", "conformance.fake_peers"]
    proc = run.spawn("fake-instances", argv, cpus=cpus if cpus is not None else PIN.client)
    wait_ready(proc, "/_ready")
    return proc


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


def etcd_version() -> str:
    binary = shutil.which("etcd")
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].removeprefix("etcd Version: ").strip() if out else "?"


# ---------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    bad_status: int
    server_cpu_s: float | None = None
    server_wait_s: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def wait_share(self) -> float:
        """Share of the run the server was runnable but another job had its CPU."""
        if self.server_wait_s is None or not self.seconds:
            return float("nan")
        return self.server_wait_s / self.seconds

    @property
    def cpu_us(self) -> float:
        """Server CPU time (user + system) per answered request, in microseconds."""
        if self.server_cpu_s is None or not self.requests:
            return float("nan")
        return self.server_cpu_s / self.requests * 1e6


def wrk(
    url: str,
    script: str,
    script_args: Sequence[str] = (),
    *,
    duration: int,
    connections: int = 64,
    threads: int = 1,
    server: Proc | None = None,
) -> WrkResult:
    """One wrk run (pinned to the client CPUs); refuses results with wrong answers.

    With `server`, also the CPU time that process used meanwhile: on a shared,
    noisy machine CPU per request is steadier than requests per second,
    which depend on how much of its core the server was given.
    """
    if shutil.which("wrk") is None:
        raise BenchError("wrk not found: apt-get install -y wrk")
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_DIR / script),
        url,
        "--",
        *script_args,
    ]
    cpu_before = server.cpu_seconds() if server is not None else 0.0
    wait_before = server.runqueue_seconds() if server is not None else 0.0
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=duration + 60,
        preexec_fn=_child_setup(PIN.client),
    )
    cpu = server.cpu_seconds() - cpu_before if server is not None else None
    wait = server.runqueue_seconds() - wait_before if server is not None else None
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            break
    else:
        raise BenchError(f"wrk gave no result ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        bad_status=data["status"],
        server_cpu_s=cpu,
        server_wait_s=wait,
    )
    if result.requests == 0 or result.bad_status > 0:
        raise BenchError(
            f"wrk {url} {' '.join(script_args)}: {result.bad_status} non-2xx answers "
            f"of {result.requests}"
        )
    return result


# -------------------------------------------------------------- HTTP client


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Conn:
    """One keep-alive HTTP/1.1 connection (asyncio streams); enough for set-up and probing.

    Hypercorn closes a keep-alive connection after 1,000 requests
    (`keep_alive_max_requests`), as servers may: a request that finds the
    connection closed before any byte of its answer is sent again on a new one.
    """

    def __init__(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.port = port
        self._reader = reader
        self._writer = writer
        self.closing = False  # the last answer said `connection: close`

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
        return cls(port, reader, writer)

    async def reopen(self) -> None:
        await self.close()
        self._reader, self._writer = await asyncio.open_connection(
            "127.0.0.1", self.port, limit=2**24
        )
        self.closing = False

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    def send(self, method: str, path: str, body: bytes | None = None, *, auth: bool = True) -> None:
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        if auth:
            head.append(f"Authorization: {AUTH}")
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))

    async def receive(self) -> Response:
        reader = self._reader
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            # In pieces: `readexactly` of more than twice the stream's limit
            # waits forever (reading pauses at that size), and listings of
            # 100,000 instances are tens of MiB.
            remaining = int(headers["content-length"])
            pieces: list[bytes] = []
            while remaining:
                piece = await reader.read(min(remaining, 1 << 20))
                if not piece:
                    raise asyncio.IncompleteReadError(b"".join(pieces), remaining)
                pieces.append(piece)
                remaining -= len(piece)
            body = b"".join(pieces)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        else:
            body = b""
        if headers.get("connection", "").lower() == "close":
            self.closing = True
        return Response(status, headers, body)

    async def request(
        self, method: str, path: str, body: bytes | None = None, *, auth: bool = True
    ) -> Response:
        for attempt in (1, 2):
            if self.closing:
                await self.reopen()
            try:
                self.send(method, path, body, auth=auth)
                await self._writer.drain()
                return await self.receive()
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                if attempt == 2 or (
                    isinstance(error, asyncio.IncompleteReadError) and error.partial
                ):
                    raise
                self.closing = True
        raise AssertionError("unreachable")


async def post_all(
    port: int,
    path: str,
    bodies: Sequence[bytes],
    *,
    connections: int = 16,
    depth: int = 16,
    expect: int = 200,
) -> float:
    """POST every body (pipelined `depth` deep on `connections` connections); seconds taken.

    Bodies must be safe to send twice (registrations are): after a closed
    connection the unanswered rest of a batch is sent again on a new one.
    """

    async def worker(part: Sequence[bytes]) -> None:
        conn = await Conn.open(port)
        try:
            at = 0
            stalls = 0
            while at < len(part):
                if conn.closing:
                    await conn.reopen()
                chunk = part[at : at + depth]
                before = at
                for body in chunk:
                    conn.send("POST", path, body)
                try:
                    for _ in chunk:
                        response = await conn.receive()
                        if response.status != expect:
                            raise BenchError(
                                f"POST {path}: {response.status} {response.body[:300]!r}"
                            )
                        at += 1
                        if conn.closing:
                            break
                except (asyncio.IncompleteReadError, ConnectionError):
                    conn.closing = True
                stalls = 0 if at > before else stalls + 1
                if stalls > 5:
                    raise BenchError(f"POST {path}: the server keeps closing the connection")
        finally:
            await conn.close()

    started = time.perf_counter()
    size = -(-len(bodies) // connections)
    async with asyncio.TaskGroup() as group:
        for i in range(connections):
            part = bodies[i * size : (i + 1) * size]
            if part:
                group.create_task(worker(part))
    return time.perf_counter() - started


async def _abandon_late(
    pending: dict[asyncio.Task[None], float], deadline: float, latencies: list[float]
) -> None:
    """Wait until `deadline` (loop time) for the requests in flight (task -> when it was
    due), then cancel the rest, counting each with its latency so far (a lower bound)."""
    loop = asyncio.get_running_loop()
    if pending:
        await asyncio.wait(list(pending), timeout=max(0.0, deadline - loop.time()))
    for task, due in list(pending.items()):
        task.cancel()
        latencies.append(loop.time() - due)
    for task in list(pending):
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def open_loop(
    port: int,
    requests: Sequence[tuple[str, str, bytes | None]],
    *,
    rate: float,
    seconds: float,
    connections: int = 8,
    grace: float = 2.0,
) -> list[float]:
    """Send `requests` in turn at a fixed rate; latency of each, from when it was due.

    Open loop: a slow answer does not delay the schedule, it only makes the
    next requests wait for a free connection, and that wait counts too (no
    coordinated omission). Requests still unanswered `grace` seconds after
    the last one was due are abandoned and counted with their latency so far
    (a lower bound). Any answer but 2xx raises.
    """
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    opened = [await Conn.open(port) for _ in range(connections)]
    for conn in opened:
        idle.put_nowait(conn)
    latencies: list[float] = []
    pending: dict[asyncio.Task[None], float] = {}
    errors: list[BaseException] = []

    def finished(task: asyncio.Task[None]) -> None:
        pending.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            errors.append(task.exception())  # type: ignore[arg-type]

    async def one(conn: Conn, due: float, method: str, path: str, body: bytes | None) -> None:
        response = await conn.request(method, path, body)
        latencies.append(loop.time() - due)
        idle.put_nowait(conn)
        if not 200 <= response.status < 300:
            raise BenchError(f"{method} {path}: {response.status} {response.body[:200]!r}")

    start = loop.time()
    end = start + seconds
    try:
        for n in range(int(rate * seconds)):
            due = start + n / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                conn = await asyncio.wait_for(idle.get(), max(0.0, end + grace - loop.time()))
            except TimeoutError:
                latencies.append(loop.time() - due)  # never even sent: a lower bound
                continue
            task = asyncio.create_task(one(conn, due, *requests[n % len(requests)]))
            pending[task] = due
            task.add_done_callback(finished)
        await _abandon_late(pending, end + grace, latencies)
    finally:
        for conn in opened:
            await conn.close()
    if errors:
        raise BenchError(f"API request failed: {errors[0]!r}")
    return latencies


def scrape_metrics(port: int) -> dict[str, float]:
    """`/metrics` as {'name{labels}': value}."""
    status, body = http_get(port, "/metrics")
    if status != 200:
        raise BenchError(f"/metrics answered {status}")
    values: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[key] = float(value)
    return values


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run a load generator's coroutine, on uvloop when it is installed (a faster client)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def register_body(
    service: str,
    instance: str,
    port: int,
    health: str = "/health",
    metadata: dict[str, str] | None = None,
) -> bytes:
    doc = {
        "service_name": service,
        "instance_id": instance,
        "host": "127.0.0.1",
        "port": port,
        "health_endpoint": health,
        "metadata": metadata if metadata is not None else {"version": "1.0.0", "zone": "a"},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def heartbeat_body(service: str, instance: str) -> bytes:
    return json.dumps(
        {"service_name": service, "instance_id": instance}, separators=(",", ":")
    ).encode()


# -------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stat:
    """Figures of the repetitions: median and spread (min-max)."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        items = tuple(values)
        if not items:
            raise BenchError("no values")
        return cls(items)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    def fmt(self, spec: str = ",.0f", unit: str = "") -> str:
        return f"{self.median:{spec}}{unit} ({self.lo:{spec}}-{self.hi:{spec}})"


def ratio_stat(ours: Sequence[float], base: Sequence[float]) -> Stat:
    """Per-repetition ratios (repetitions are paired: run back to back)."""
    return Stat.of(a / b for a, b in zip(ours, base, strict=True) if b)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table (so it pastes straight into docs/performance.md)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n### {title}\n")
    for n, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.flush()


def machine_line() -> str:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{now}; {os.cpu_count()} CPUs ({cpu}); Python {platform.python_version()}; "
        f"{PIN.describe()}"
    )


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def base_parser(description: str, *, frontends: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    if frontends:
        parser.add_argument("--frontend", choices=("quart", "trio", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="a smoke run, well under a minute")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin servers and load generators to CPUs"
    )
    return parser


def chosen_frontends(args: argparse.Namespace) -> list[str]:
    return ["quart", "trio"] if args.frontend == "both" else [args.frontend]


@contextlib.contextmanager
def scenario(args: argparse.Namespace, title: str) -> Iterator[Run]:
    """Common start of a scenario: pinning, limits, SIGTERM as a clean exit, the banner."""
    setup_pinning(not args.no_pin)
    raise_nofile()

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    print(f"## {title}\n\n{machine_line()}")
    sys.stdout.flush()
    with Run() as run:
        yield run
