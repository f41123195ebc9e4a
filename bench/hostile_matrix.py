"""The hostile-instance matrix, per frontend.

    python -m bench.hostile_matrix [--frontend quart|trio|both] [--per-kind N] [--rounds R]

Hundreds of instances whose `/health` hangs, trickles one byte a second,
sends 5 MiB, redirects, resets the connection, returns invalid JSON or
answers slowly under the timeout (`bench/hostile_peers.py`, one asyncio
process), registered beside as many healthy ones, with
`HEALTH_CHECK_INTERVAL_SECONDS=2` and `HEALTH_CHECK_TIMEOUT_SECONDS=1`.

Each round registers a fresh set (`--per-kind` of every kind, instance ids
tagged with the round), waits until every status is the expected one, keeps
watching for `--observe` intervals (a status that moves away is a
mismatch), then unregisters the round and lets the registry go quiet. The
figures:

- statuses: each instance against its kind's expected status (last sample of
  each round), plus every mismatch seen after settling;
- schedule: from the peer server's own per-path request log, the longest gap
  between registration, each probe and the end of the observation, per
  instance; lateness = longest gap - interval (a hostile neighbour must not
  delay a healthy instance's probes);
- API latency: an open-loop reader (`--read-rate` per second,
  `GET /v1/discovery/services/{name}` and `.../healthy` in turn), timed from
  the moment each request was due;
- stray probes: probes that reached an instance more than 0.5 s after it was
  unregistered;
- the server's open file descriptors (`/proc/<pid>/fd`, without the
  accepted API connections, whose number the clients decide) and RSS
  (`VmRSS`), measured when quiet: before the first round and after each
  round, once every probe in flight has ended (healthy sentinel instances
  stay registered throughout, so the probe client keeps probing). The fds
  leave out the accepted API connections and the probe client's kept-alive
  connections to the healthy kinds' ports, two pools the clients size
  (printed too). Growth is measured from the first round to the last, so
  the one-off cost of warming up is not counted as a leak;
- leaked probe connections: the kinds whose connection can never be reused
  (hang, trickle, trickle_body, huge, reset) use peer ports of their own
  (`bench.hostile_peers.split_ports`), so once a round is unregistered the
  registry must hold no socket to those ports at all, whatever its probe
  client keeps alive to the others (an idle pool the client bounds, like the
  API connections the clients decide; counted and printed).

After the rounds, ten fresh healthy instances must turn healthy (a probe
client that lost its connection slots to the hostile rounds would fail
them without reaching the peer), and the registry's sockets still connected
to a peer port are counted.

`MAX_CONCURRENT_HEALTH_CHECKS` defaults to 256 here: a hung or trickling
peer holds a probe slot for the whole timeout, so the slots needed are about
(hung instances x timeout + slow instances x delay) / interval, 175 for the
default matrix; docs/reliability.md has what happens at the registry's
default of 100, and at 256.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import itertools
import math
import os
import platform
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import print_table, verdict
from bench.hostile_peers import EXPECTED, KINDS, PeersProcess, port_for, split_ports, start_peers
from conformance.server_process import ServerProcess, start_server

SECRET = "hostile-matrix-secret-0123456789"
HEADERS = {"authorization": f"Bearer {SECRET}"}
#: How long the load generator keeps an idle API connection: well under the
#: registry's 5 s keep-alive timeout (frontends/shared/hypercorn_setup.py), so
#: the generator never sends a request on a connection the registry is closing
#: at that very moment (a keep-alive race of the client's own making, seen as
#: "Server disconnected without sending a response" under load, when the
#: generator's event loop lags behind the registry's clock).
CLIENT_KEEPALIVE_EXPIRY = 2.0
STRAY_GRACE = 0.5
FRESH_INSTANCES = 10
FRONTENDS = ("quart", "trio")


# ------------------------------------------------------------------ helpers


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` has used (its threads included), from /proc/<pid>/stat.

    Sampled per window, it tells whether the registry or the load generator
    was the one short of CPU when latencies rose on a small machine.
    """
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the ")" closing the command name: state is field 0, utime 11, stime 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def _tcp_rows(pid: int) -> Iterator[tuple[str, str, str, str]]:
    """(local, remote, state, inode) of the TCP sockets `pid` holds, in /proc/net/tcp's hex form."""
    inodes = _socket_inodes(pid)
    with open(f"/proc/{pid}/net/tcp", encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[9] in inodes:
                yield fields[1], fields[2], fields[3], fields[9]


def connections_to(pid: int, ports: Sequence[int]) -> int:
    """How many of `pid`'s TCP sockets are connected to one of `ports` on 127.0.0.1."""
    wanted = {f"0100007F:{port:04X}" for port in ports}
    return sum(1 for _, remote, _, _ in _tcp_rows(pid) if remote in wanted)


def client_connections(pid: int, port: int) -> int:
    """Accepted connections on `port` that `pid` holds (any state but LISTEN)."""
    local = f"0100007F:{port:04X}"
    return sum(1 for here, _, state, _ in _tcp_rows(pid) if here == local and state != "0A")


def describe_fds(pid: int, port: int, peer_ports: Sequence[int]) -> dict[str, int]:
    """What `pid`'s open fds are, counted by kind (for reports when a count grows)."""
    states = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}
    sockets: dict[str, str] = {}
    local_api = f"0100007F:{port:04X}"
    peers = {f"0100007F:{p:04X}" for p in peer_ports}
    for here, remote, state, inode in _tcp_rows(pid):
        name = states.get(state, f"state {state}")
        if here == local_api:
            sockets[inode] = f"API {name}"
        elif remote in peers:
            sockets[inode] = f"probe {name}"
        else:
            sockets[inode] = f"tcp {name}"
    kinds: collections.Counter[str] = collections.Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            kinds[sockets.get(target[8:-1], "other socket")] += 1
        elif target.startswith("/"):
            kinds["file"] += 1
        else:
            kinds[target.split(":", 1)[0] + ":" + target.split(":", 1)[-1][:20]] += 1
    return dict(sorted(kinds.items()))


def server_problems(server: ServerProcess, limit: int = 20) -> list[str]:
    """The registry's WARNING and ERROR log lines (and tracebacks), last `limit` of them."""
    lines = [
        line
        for line in server.stderr().splitlines()
        if "level=WARNING" in line or "level=ERROR" in line or "Traceback" in line
    ]
    return lines[-limit:]


def own_fds(pid: int, port: int) -> int:
    """Open fds minus the accepted API connections, whose number the clients decide."""
    return open_fds(pid) - client_connections(pid, port)


def quiet_wait(interval: float, timeout: float) -> float:
    """How long to wait after unregistering before a "quiet" measure: every probe that
    was in flight has ended (timeout) and the sentinels were probed again (interval)."""
    return timeout + interval + 1.0


def quiet_fds(pid: int, port: int, peer_ports: Sequence[int]) -> int:
    """The registry's fds, without its accepted API connections and its kept-alive probe
    connections to the keep-alive peer ports.

    Both are pools whose size the other side or the client's policy decides
    (how many connections the API clients open; how many idle connections,
    and for how long, the probe client keeps), so they are counted apart and
    printed. What remains (listening socket, files, pipes, the event loop's
    own fds, and any other socket) must not grow; connections to the closing
    kinds' ports are checked separately and must be 0.
    """
    return own_fds(pid, port) - connections_to(pid, split_ports(peer_ports)[0])


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))
    return ordered[rank]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{datetime.date.today().isoformat()}, {cpu}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def registry_env(**settings: str) -> dict[str, str]:
    env = {"SERVICE_DISCOVERY_SECRET": SECRET, "LOG_LEVEL": "WARNING"}
    env.update(settings)
    return env


@contextlib.contextmanager
def registry(frontend: str, env: dict[str, str]) -> Iterator[ServerProcess]:
    """A registry child process; SIGTERM and exit code 0 required at the end."""
    server = start_server(frontend, env)
    try:
        yield server
        server.stop()
    finally:
        server.cleanup()


async def statuses(clients: Clients, url: str, errors: list[str]) -> dict[tuple[str, str], str]:
    """(service, instance id) -> status of every registered instance; {} and an error on failure."""
    try:
        response = await clients.request("GET", f"{url}/v1/discovery/services")
    except httpx.HTTPError as failure:
        errors.append(f"GET /v1/discovery/services: {type(failure).__name__} {failure}")
        return {}
    if response.status_code != 200:
        errors.append(f"GET /v1/discovery/services: {response.status_code}")
        return {}
    return {
        (name, instance["instance_id"]): instance["status"]
        for name, instances in response.json()["services"].items()
        for instance in instances
    }


class Clients:
    """A few small httpx pools, each handed out at most `per` times at once.

    httpcore's pool costs O(queued requests x connections) per request event,
    so a single pool with many requests in flight or queued costs
    milliseconds of CPU per request (measured: ~5 ms at 32 in flight, ~1.5 ms
    with pools of 4), and the load generator shares the machine with the
    registry. Here requests wait for a slot in an asyncio.Semaphore instead,
    so httpcore never queues. Idle connections expire after
    `CLIENT_KEEPALIVE_EXPIRY`, well before the registry's keep-alive timeout
    would close them under a request.
    """

    def __init__(self, count: int, per: int = 4, timeout: float = 30.0) -> None:
        self._clients = [
            httpx.AsyncClient(
                headers=HEADERS,
                timeout=timeout,
                trust_env=False,
                limits=httpx.Limits(
                    max_connections=per,
                    max_keepalive_connections=per,
                    keepalive_expiry=CLIENT_KEEPALIVE_EXPIRY,
                ),
            )
            for _ in range(count)
        ]
        self.size = count * per
        self._free = collections.deque(client for client in self._clients for _ in range(per))
        self._slots = asyncio.Semaphore(self.size)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client with a free connection, for as long as the block runs."""
        async with self._slots:
            client = self._free.popleft()
            try:
                yield client
            finally:
                self._free.append(client)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async with self.slot() as client:
            return await client.request(method, url, **kwargs)

    async def warm(self, url: str) -> None:
        """Open every connection the pools may use (before a baseline is measured)."""

        async def hold() -> None:
            async with self.slot() as client:
                await client.get(url)
                await asyncio.sleep(0.2)

        await asyncio.gather(*(hold() for _ in range(self.size)))

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


class Reader:
    """Open-loop GETs at a fixed rate, each timed from the moment it was due."""

    def __init__(self, clients: Clients, url: str, paths: Sequence[str], rate: float):
        self.clients, self.url, self.paths, self.rate = clients, url, paths, rate
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def _one(self, path: str, due: float) -> None:
        try:
            response = await self.clients.request("GET", self.url + path)
        except httpx.HTTPError as error:
            self.errors.append(f"GET {path}: {type(error).__name__} {error}")
            return
        self.latencies.append(time.monotonic() - due)
        if response.status_code != 200:
            self.errors.append(f"GET {path}: {response.status_code} {response.text[:200]}")

    async def run(self, stop: asyncio.Event) -> None:
        start = time.monotonic()
        for n in range(10**9):
            due = start + n / self.rate
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, due - time.monotonic())):
                    await stop.wait()
            if stop.is_set():
                break
            task = asyncio.create_task(self._one(self.paths[n % len(self.paths)], due))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)


def sentinels(ports: Sequence[int], service: str = "hm-sentinel") -> list[dict[str, Any]]:
    """One healthy instance per keep-alive peer port, registered for the whole run.

    The registry keeps probing while the driver waits for quiet (a probe
    client may expire idle connections only when it next probes), and the
    sentinels' own connections are there before the baseline is taken.
    """
    return [
        {
            "service_name": service,
            "instance_id": f"sentinel-{n}",
            "host": "127.0.0.1",
            "port": port,
            "health_endpoint": f"/healthy/{service}-{n}",
        }
        for n, port in enumerate(split_ports(ports)[0])
    ]


# ------------------------------------------------------------------ the matrix


@dataclass
class MatrixConfig:
    per_kind: int = 100
    rounds: int = 3
    interval: float = 2.0
    timeout: float = 1.0
    concurrency: int = 256
    observe_intervals: int = 3
    read_rate: float = 50.0
    ports: int = 8
    slow_delay: float | None = None  # timeout / 2 when None
    lateness_slack: float = 0.5
    p99_target_ms: float = 100.0
    fd_slack: int = 8
    rss_slack_mib: float = 16.0

    @property
    def delay(self) -> float:
        return self.slow_delay if self.slow_delay is not None else self.timeout / 2

    def slots_needed(self) -> float:
        held = 3 * self.per_kind * self.timeout + self.per_kind * self.delay
        return held / self.interval


@dataclass
class KindFigures:
    kind: str
    expected: str
    actual: collections.Counter[str] = field(default_factory=collections.Counter)
    mismatches: int = 0
    probes: int = 0
    max_gap: float = 0.0
    settle: float = 0.0


@dataclass
class RoundFigures:
    number: int
    settled_after: float | None
    fds: int
    rss: float
    stray_probes: int
    probe_connections: int = 0
    fds_total: int = 0
    #: Registry sockets to the closing kinds' ports when quiet: leaked connections.
    closing_connections: int = 0


@dataclass
class MatrixResult:
    frontend: str
    config: MatrixConfig
    kinds: dict[str, KindFigures]
    rounds: list[RoundFigures]
    fds_baseline: int
    fds_baseline_total: int
    rss_baseline: float
    read_latencies: list[float]
    write_latencies: list[float]
    errors: list[str]
    peer_stats: dict[str, Any]
    elapsed: float
    fresh: tuple[int, int] = (0, 0)
    exit_ok: bool = True

    @property
    def status_mismatches(self) -> int:
        return sum(k.mismatches for k in self.kinds.values())

    @property
    def wrong_final(self) -> int:
        return sum(n for k in self.kinds.values() for s, n in k.actual.items() if s != k.expected)

    def lateness(self, kinds: Sequence[str]) -> float:
        worst = max((self.kinds[k].max_gap for k in kinds), default=0.0)
        return max(0.0, worst - self.config.interval)

    @property
    def healthy_kinds(self) -> list[str]:
        return [k for k in self.kinds if EXPECTED[k] == "healthy"]

    @property
    def completed(self) -> bool:
        return len(self.rounds) == self.config.rounds

    @property
    def fd_growth(self) -> int:
        return self.rounds[-1].fds - self.rounds[0].fds if self.rounds else 0

    @property
    def rss_growth(self) -> float:
        return self.rounds[-1].rss - self.rounds[0].rss if self.rounds else 0.0

    @property
    def closing_connections(self) -> int:
        return sum(r.closing_connections for r in self.rounds)

    @property
    def stray_probes(self) -> int:
        return sum(r.stray_probes for r in self.rounds)

    @property
    def read_p99_ms(self) -> float:
        return percentile(self.read_latencies, 0.99) * 1000

    def checks(self) -> list[tuple[str, str, str, bool]]:
        """(figure, value, target, met) for every target of the issue."""
        c = self.config
        late = self.lateness(["healthy"])
        late_all = self.lateness(self.healthy_kinds)
        r = self.rounds or [RoundFigures(0, None, -1, -1.0, 0)]
        return [
            (
                "rounds completed",
                f"{len(self.rounds)} of {c.rounds}",
                "all",
                self.completed,
            ),
            (
                "final status, every instance",
                f"{self.wrong_final} wrong",
                "0 wrong",
                self.wrong_final == 0,
            ),
            (
                "status mismatches after settling",
                str(self.status_mismatches),
                "0",
                self.status_mismatches == 0,
            ),
            (
                "healthy probe lateness (max gap - interval)",
                f"{late * 1000:.0f} ms (all healthy kinds {late_all * 1000:.0f} ms)",
                f"<= {c.lateness_slack * 1000:.0f} ms",
                late_all <= c.lateness_slack,
            ),
            (
                "API reads p50 / p99",
                f"{percentile(self.read_latencies, 0.5) * 1000:.1f} / {self.read_p99_ms:.1f} ms "
                f"({len(self.read_latencies)} reads)",
                f"p99 < {c.p99_target_ms:.0f} ms",
                self.read_p99_ms < c.p99_target_ms,
            ),
            (
                "API writes p99 (register/unregister bursts)",
                f"{percentile(self.write_latencies, 0.99) * 1000:.1f} ms",
                "(reported)",
                True,
            ),
            ("API errors", str(len(self.errors)), "0", not self.errors),
            (
                f"after the rounds: {FRESH_INSTANCES} fresh healthy instances healthy / probed",
                f"{self.fresh[0]} / {self.fresh[1]}",
                f"{FRESH_INSTANCES} / {FRESH_INSTANCES}",
                self.fresh == (FRESH_INSTANCES, FRESH_INSTANCES),
            ),
            ("stray probes after unregister", str(self.stray_probes), "0", self.stray_probes == 0),
            (
                "probe connections to hang/trickle/huge/reset ports when quiet, every round",
                str(self.closing_connections),
                "0",
                self.closing_connections == 0,
            ),
            (
                "kept-alive probe connections when quiet (after the last round)",
                str(r[-1].probe_connections),
                "(reported: the probe client's idle pool)",
                True,
            ),
            (
                "fds without API or kept-alive probe connections: baseline / round 1 / last",
                f"{self.fds_baseline} / {r[0].fds} / {r[-1].fds} "
                f"(all fds {self.fds_baseline_total} / {r[0].fds_total} / {r[-1].fds_total})",
                f"growth <= {c.fd_slack}",
                self.fd_growth <= c.fd_slack,
            ),
            (
                "RSS MiB: baseline / after round 1 / after last",
                f"{self.rss_baseline:.1f} / {r[0].rss:.1f} / {r[-1].rss:.1f}",
                f"growth <= {c.rss_slack_mib:.0f} MiB",
                self.rss_growth <= c.rss_slack_mib,
            ),
            (
                "clean exit on SIGTERM",
                "exit 0" if self.exit_ok else "failed",
                "exit 0",
                self.exit_ok,
            ),
        ]

    def passed(self) -> bool:
        return all(ok for *_, ok in self.checks())

    def report(self) -> None:
        c = self.config
        total = c.per_kind * len(self.kinds)
        title = (
            f"hostile matrix, {self.frontend}: {len(self.kinds)} kinds x {c.per_kind} = {total} "
            f"instances, {c.rounds} rounds, interval {c.interval:g} s, timeout {c.timeout:g} s, "
            f"slow delay {c.delay:g} s, MAX_CONCURRENT_HEALTH_CHECKS {c.concurrency} "
            f"(~{c.slots_needed():.0f} needed), {self.elapsed:.0f} s"
        )
        rows = []
        for k in self.kinds.values():
            actual = ", ".join(f"{s} {n}" for s, n in sorted(k.actual.items()))
            late = max(0.0, k.max_gap - c.interval)
            ok = k.actual.get(k.expected, 0) == c.per_kind * c.rounds and k.mismatches == 0
            if k.expected == "healthy":
                ok = ok and late <= c.lateness_slack
            rows.append(
                [
                    k.kind,
                    k.expected,
                    actual,
                    k.mismatches,
                    f"{k.settle:.1f}",
                    k.probes,
                    f"{k.max_gap:.2f}",
                    f"{late * 1000:.0f}",
                    verdict(ok),
                ]
            )
        print_table(
            title,
            [
                "kind",
                "expected",
                "actual (all rounds)",
                "flaps",
                "settle s",
                "probes",
                "max gap s",
                "late ms",
                "",
            ],
            rows,
        )
        print_table(
            f"{self.frontend}: targets",
            ["figure", "value", "target", ""],
            [[a, b, t, verdict(ok)] for a, b, t, ok in self.checks()],
        )
        rounds = [
            [
                r.number,
                "-" if r.settled_after is None else f"{r.settled_after:.1f}",
                r.fds,
                r.fds_total,
                f"{r.rss:.1f}",
                r.stray_probes,
                r.probe_connections,
                r.closing_connections,
            ]
            for r in self.rounds
        ]
        print_table(
            f"{self.frontend}: per round (fds and RSS when quiet, after the round)",
            [
                "round",
                "all settled after s",
                "own fds",
                "all fds",
                "RSS MiB",
                "stray probes",
                "kept-alive probe conns",
                "conns to closing kinds",
            ],
            rounds,
        )
        s = self.peer_stats
        print(
            f"peer server: {sum(s['requests'].values())} probes received, "
            f"{s['bytes_sent'] / 2**20:.0f} MiB sent, {s['resets']} resets, "
            f"at most {s['max_open_connections']} connections open at once"
        )
        for error in self.errors[:10]:
            print(f"  error: {error}")


class Matrix:
    def __init__(
        self, frontend: str, config: MatrixConfig, server: ServerProcess, peers: PeersProcess
    ):
        self.frontend, self.c, self.server, self.peers = frontend, config, server, peers
        self.url = server.url
        self.pid = server.proc.pid
        self.kinds = {k: KindFigures(k, EXPECTED[k]) for k in KINDS}
        self.errors: list[str] = []
        self.read_latencies: list[float] = []
        self.write_latencies: list[float] = []
        self.writers = Clients(2)
        self.readers = Clients(2)

    def instances(self, round_no: int) -> list[dict[str, Any]]:
        c = self.c
        bodies = []
        for kind in KINDS:
            for i in range(c.per_kind):
                tag = f"r{round_no}-{i}"
                endpoint = f"/{kind}/{tag}" + (f"?delay={c.delay:g}" if kind == "slow" else "")
                bodies.append(
                    {
                        "service_name": f"hm-{kind}",
                        "instance_id": tag,
                        "host": "127.0.0.1",
                        "port": port_for(kind, i, self.peers.ports),
                        "health_endpoint": endpoint,
                        "metadata": {"kind": kind},
                    }
                )
        return bodies

    async def _write(self, method: str, path: str, body: dict[str, Any] | None) -> float:
        started = time.monotonic()
        try:
            response = await self.writers.request(method, self.url + path, json=body)
        except httpx.HTTPError as error:
            self.errors.append(f"{method} {path}: {type(error).__name__} {error}")
            return time.monotonic()
        done = time.monotonic()
        self.write_latencies.append(done - started)
        if response.status_code != 200:
            self.errors.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return done

    async def _all(self, calls: list[tuple[str, str, dict[str, Any] | None]]) -> list[float]:
        gate = asyncio.Semaphore(8)

        async def one(method: str, path: str, body: dict[str, Any] | None) -> float:
            async with gate:
                return await self._write(method, path, body)

        return list(await asyncio.gather(*(one(*call) for call in calls)))

    async def quiet_sample(self) -> tuple[int, int, float]:
        """Own fds, all fds and RSS once quiet (see `quiet_fds`)."""
        await asyncio.sleep(quiet_wait(self.c.interval, self.c.timeout))
        fds = quiet_fds(self.pid, self.server.port, self.peers.ports)
        return fds, open_fds(self.pid), rss_mib(self.pid)

    async def run_round(self, number: int) -> RoundFigures:
        c = self.c
        bodies = self.instances(number)
        expected = {(b["service_name"], b["instance_id"]): b["metadata"]["kind"] for b in bodies}
        done = await self._all([("POST", "/v1/discovery/register", body) for body in bodies])
        registered_at = dict(zip(expected, done, strict=True))
        registered = max(done)
        stop = asyncio.Event()
        paths = [
            f"/v1/discovery/services/hm-{kind}{suffix}"
            for kind in KINDS
            for suffix in ("", "/healthy")
        ]
        reader = Reader(self.readers, self.url, paths, c.read_rate)
        reading = asyncio.create_task(reader.run(stop))
        try:
            return await self._observe_round(
                number, expected, registered_at, registered, stop, reader, reading
            )
        finally:
            stop.set()
            if not reading.done():
                reading.cancel()

    async def _observe_round(
        self,
        number: int,
        expected: dict[tuple[str, str], str],
        registered_at: dict[tuple[str, str], float],
        registered: float,
        stop: asyncio.Event,
        reader: Reader,
        reading: asyncio.Task[None],
    ) -> RoundFigures:
        c = self.c

        # Settle: until every status is the expected one.
        settle_deadline = registered + 3 * c.interval + c.timeout + 2.0
        settled_after: float | None = None
        per_kind_settle: dict[str, float] = {}
        seen: dict[tuple[str, str], str] = {}
        while time.monotonic() < settle_deadline:
            seen = await statuses(self.writers, self.url, self.errors)
            now = time.monotonic()
            for kind in KINDS:
                if kind not in per_kind_settle and all(
                    seen.get(key) == EXPECTED[k] for key, k in expected.items() if k == kind
                ):
                    per_kind_settle[kind] = now - registered
            if len(per_kind_settle) == len(KINDS):
                settled_after = now - registered
                break
            await asyncio.sleep(0.25)
        for kind, figures in self.kinds.items():
            figures.settle = max(figures.settle, per_kind_settle.get(kind, float("inf")))

        # Observe: statuses must stay put; probes must stay on schedule.
        observe_end = time.monotonic() + c.observe_intervals * c.interval
        while True:
            seen = await statuses(self.writers, self.url, self.errors)
            for key, kind in expected.items():
                if seen.get(key) != EXPECTED[kind]:
                    self.kinds[kind].mismatches += 1
            if time.monotonic() >= observe_end:
                break
            await asyncio.sleep(min(1.0, max(0.0, observe_end - time.monotonic())))
        observed = time.monotonic()
        for key, kind in expected.items():
            self.kinds[kind].actual[seen.get(key, "missing")] += 1
        stop.set()
        await reading
        self.read_latencies += reader.latencies
        self.errors += reader.errors

        _, log = self.peers.log()
        for key, kind in expected.items():
            times = [t for t in log.get(f"/{kind}/{key[1]}", []) if t <= observed]
            marks = [registered_at[key], *times, observed]
            gap = max(b - a for a, b in itertools.pairwise(marks))
            figures = self.kinds[kind]
            figures.max_gap = max(figures.max_gap, gap)
            figures.probes += len(times)

        done = await self._all(
            [
                ("DELETE", f"/v1/discovery/unregister/{service}/{instance}", None)
                for service, instance in expected
            ]
        )
        unregistered_at = dict(zip(expected, done, strict=True))
        fds, fds_total, rss = await self.quiet_sample()
        _, log = self.peers.log()
        stray = sum(
            1
            for key, kind in expected.items()
            for t in log.get(f"/{kind}/{key[1]}", [])
            if t > unregistered_at[key] + STRAY_GRACE
        )
        keep_alive, closing = split_ports(self.peers.ports)
        return RoundFigures(
            number,
            settled_after,
            fds,
            rss,
            stray,
            probe_connections=connections_to(self.pid, keep_alive),
            fds_total=fds_total,
            closing_connections=connections_to(self.pid, closing),
        )

    async def recovery(self) -> tuple[int, int]:
        """Fresh healthy instances after the rounds: (how many turned healthy, how many probed).

        A probe client that lost connection slots to the hostile rounds would
        fail these probes without ever reaching the peer.
        """
        c = self.c
        bodies = [
            {
                "service_name": "hm-fresh",
                "instance_id": f"fresh-{i}",
                "host": "127.0.0.1",
                "port": port_for("healthy", i, self.peers.ports),
                "health_endpoint": f"/healthy/fresh-{i}",
            }
            for i in range(FRESH_INSTANCES)
        ]
        await self._all([("POST", "/v1/discovery/register", body) for body in bodies])
        deadline = time.monotonic() + 2 * c.interval + c.timeout + 1.0
        healthy = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            seen = await statuses(self.writers, self.url, self.errors)
            healthy = sum(
                1 for key, status in seen.items() if key[0] == "hm-fresh" and status == "healthy"
            )
            if healthy == FRESH_INSTANCES:
                break
        _, log = self.peers.log("/healthy/fresh-")
        await self._all(
            [
                ("DELETE", f"/v1/discovery/unregister/hm-fresh/{b['instance_id']}", None)
                for b in bodies
            ]
        )
        return healthy, len(log)

    async def run(self) -> MatrixResult:
        started = time.monotonic()
        try:
            await self._all(
                [("POST", "/v1/discovery/register", body) for body in sentinels(self.peers.ports)]
            )
            # Open every client connection the run will use before the baseline.
            await self.writers.warm(f"{self.url}/health")
            await self.readers.warm(f"{self.url}/health")
            fds0, fds0_total, rss0 = await self.quiet_sample()
            rounds: list[RoundFigures] = []
            # A registry that stops answering must not hang the run.
            budget = self.c.rounds * (90 + 6 * self.c.interval) + 60
            try:
                async with asyncio.timeout(budget):
                    for number in range(1, self.c.rounds + 1):
                        rounds.append(await self.run_round(number))
                    fresh = await self.recovery()
            except TimeoutError:
                fresh = (0, 0)
                self.errors.append(f"run aborted after {budget:.0f} s: the registry stalled")
        finally:
            await self.writers.aclose()
            await self.readers.aclose()
        return MatrixResult(
            frontend=self.frontend,
            config=self.c,
            kinds=self.kinds,
            rounds=rounds,
            fds_baseline=fds0,
            fds_baseline_total=fds0_total,
            rss_baseline=rss0,
            read_latencies=self.read_latencies,
            write_latencies=self.write_latencies,
            errors=self.errors,
            peer_stats=self.peers.stats(),
            elapsed=time.monotonic() - started,
            fresh=fresh,
        )


def run_matrix(frontend: str, config: MatrixConfig) -> MatrixResult:
    """Start the peers and a registry, run every round, stop both; the figures."""
    env = registry_env(
        HEALTH_CHECK_INTERVAL_SECONDS=f"{config.interval:g}",
        HEALTH_CHECK_TIMEOUT_SECONDS=f"{config.timeout:g}",
        MAX_CONCURRENT_HEALTH_CHECKS=str(config.concurrency),
        SERVICE_REGISTRATION_TTL_SECONDS="3600",
    )
    with start_peers(config.ports) as peers:
        server = start_server(frontend, env)
        try:
            result = asyncio.run(Matrix(frontend, config, server, peers).run())
            try:
                server.stop()
            except AssertionError as failure:
                result.exit_ok = False
                result.errors.append(str(failure)[:2000])
        finally:
            server.cleanup()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frontend", choices=[*FRONTENDS, "both"], default="both")
    parser.add_argument("--per-kind", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--observe", type=int, default=3, help="intervals watched per round")
    parser.add_argument("--read-rate", type=float, default=50.0)
    parser.add_argument("--ports", type=int, default=8, help="ports of the peer server")
    args = parser.parse_args(argv)
    if args.per_kind < 1 or args.rounds < 1 or not 0 < args.timeout <= args.interval:
        parser.error("need --per-kind >= 1, --rounds >= 1, 0 < --timeout <= --interval")
    if args.ports < 2:
        parser.error("need --ports >= 2 (keep-alive kinds and closing kinds on ports of their own)")
    config = MatrixConfig(
        per_kind=args.per_kind,
        rounds=args.rounds,
        interval=args.interval,
        timeout=args.timeout,
        concurrency=args.concurrency,
        observe_intervals=args.observe,
        read_rate=args.read_rate,
        ports=args.ports,
    )
    frontends = FRONTENDS if args.frontend == "both" else (args.frontend,)
    print(f"machine: {machine()}")
    results = [run_matrix(frontend, config) for frontend in frontends]
    for result in results:
        result.report()
    print()
    for result in results:
        print(f"{result.frontend}: {verdict(result.passed())}")
    return 0 if all(r.passed() for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
