"""The scenario runner the hostile matrix and the soak share.

Both drive one registry child process (`conformance.server_process`) beside
the peer server of `tests/soak/harness/peers.py`, through small httpx pools
(`Clients`), with an open-loop reader, and judge it by the same figures: the
statuses the registry gives each kind, its open fds and RSS when quiet
(`quiet_sample`), connections left to the peers' ports, and a clean exit on
SIGTERM. `run_scenario` starts and stops the processes around one driver
coroutine; `run_frontends` is the common command line loop; `CheckedResult.print_checks`
prints a result's (figure, value, target, met) rows.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import itertools
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx

from bench.common import print_table, verdict
from bench.scenario_cli import machine_line
from conformance.client import instance_body
from conformance.process_figures import open_fds, rss_kib
from conformance.server_process import ServerProcess, start_server

from .peers import PeersProcess, split_ports, start_peers

SECRET = "hostile-matrix-secret-0123456789"
HEADERS = {"authorization": f"Bearer {SECRET}"}
#: How long the load generator keeps an idle API connection: well under the
#: registry's 5 s keep-alive timeout (frontends/servers/hypercorn/config.py), so
#: the generator never sends a request on a connection the registry is closing
#: at that very moment (a keep-alive race of the client's own making, seen as
#: "Server disconnected without sending a response" under load, when the
#: generator's event loop lags behind the registry's clock).
CLIENT_KEEPALIVE_EXPIRY = 2.0
FRONTENDS = ("quart", "trio")


# ------------------------------------------------------------------ helpers


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


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


def percentile_ms(seconds: Sequence[float], share: float) -> float:
    """`percentile` of latencies in seconds, in milliseconds (as every report shows them)."""
    return percentile(seconds, share) * 1000


def registry_env(**settings: str) -> dict[str, str]:
    env = {"SERVICE_DISCOVERY_SECRET": SECRET, "LOG_LEVEL": "WARNING"}
    env.update(settings)
    return env


async def statuses(clients: Clients, url: str, errors: list[str]) -> dict[tuple[str, str], str]:
    """(service, instance id) -> status of every registered instance; {} and an error on failure."""
    try:
        response = await clients.request("GET", f"{url}/v1/discovery/services")
    except httpx.HTTPError as failure:
        errors.append(failure_text("GET /v1/discovery/services", failure))
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
        except httpx.HTTPError as failure:
            self.errors.append(failure_text(f"GET {path}", failure))
            return
        self.latencies.append(time.monotonic() - due)
        if response.status_code != 200:
            self.errors.append(f"GET {path}: {response.status_code} {response.text[:200]}")

    async def run(self, stop: asyncio.Event) -> None:
        async def fire(n: int, due: float) -> None:
            await self._one(self.paths[n % len(self.paths)], due)

        await open_loop(self.rate, time.monotonic(), fire, stop)


def sentinels(ports: Sequence[int], service: str = "hm-sentinel") -> list[dict[str, Any]]:
    """One healthy instance per keep-alive peer port, registered for the whole run.

    The registry keeps probing while the driver waits for quiet (a probe
    client may expire idle connections only when it next probes), and the
    sentinels' own connections are there before the baseline is taken.
    """
    return [
        instance_body(service, f"sentinel-{n}", port, health_endpoint=f"/healthy/{service}-{n}")
        for n, port in enumerate(split_ports(ports)[0])
    ]


def peer_instance(
    service: str, instance_id: str, port: int, health: str, kind: str
) -> dict[str, Any]:
    """A registration of a peer on 127.0.0.1 with its `kind` in the metadata."""
    return instance_body(
        service, instance_id, port, health_endpoint=health, metadata={"kind": kind}
    )


def failure_text(what: str, failure: httpx.HTTPError) -> str:
    """One line for a request that got no response at all."""
    cause = failure.__cause__ or failure.__context__
    return f"{what}: {type(failure).__name__} {failure} (cause {cause!r})"


async def open_loop(
    rate: float,
    start: float,
    fire: Callable[[int, float], Coroutine[Any, Any, None]],
    stop: asyncio.Event,
    end: float = math.inf,
) -> None:
    """Call `fire(n, due)` for n = 0, 1, ... at `rate` per second from `start`, until
    `end` or `stop`, each in a task of its own: a slow answer never delays the schedule
    (no coordinated omission). Waits (30 s at most) for the tasks still running."""
    tasks: set[asyncio.Task[None]] = set()
    for n in itertools.count():
        due = start + n / rate
        if due >= end:
            break
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, due - time.monotonic())):
                await stop.wait()
        if stop.is_set():
            break
        task = asyncio.create_task(fire(n, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)


async def poll_statuses(
    clients: Clients,
    url: str,
    errors: list[str],
    done: Callable[[dict[tuple[str, str], str], float], bool],
    deadline: float,
    every: float,
) -> dict[tuple[str, str], str]:
    """Read every status each `every` s until `done(statuses, now)` or `deadline`; the last read."""
    while True:
        seen = await statuses(clients, url, errors)
        now = time.monotonic()
        if done(seen, now) or now >= deadline:
            return seen
        await asyncio.sleep(every)


def wrong_statuses(
    seen: dict[tuple[str, str], str], kinds: dict[tuple[str, str], str], expected: dict[str, str]
) -> dict[str, int]:
    """`kind:status` -> count, for the instances (key -> kind) not in their kind's status."""
    wrong: collections.Counter[str] = collections.Counter()
    for key, kind in kinds.items():
        status = seen.get(key, "missing")
        if status != expected[kind]:
            wrong[f"{kind}:{status}"] += 1
    return dict(wrong)


@dataclass(frozen=True)
class QuietSample:
    """The registry's fds (without API or kept-alive probe connections; all) and RSS."""

    fds: int
    fds_total: int
    rss: float


def sample_now(server: ServerProcess, peers: PeersProcess) -> QuietSample:
    pid = server.pid
    return QuietSample(quiet_fds(pid, server.port, peers.ports), open_fds(pid), rss_mib(pid))


async def quiet_sample(
    server: ServerProcess, peers: PeersProcess, interval: float, probe_timeout: float
) -> QuietSample:
    """`sample_now` once quiet: every probe in flight ended (see `quiet_wait`)."""
    await asyncio.sleep(quiet_wait(interval, probe_timeout))
    return sample_now(server, peers)


# ------------------------------------------------------------------ running


Check = tuple[str, str, str, bool]


def exit_check(ok: bool) -> Check:
    return ("clean exit on SIGTERM", "exit 0" if ok else "failed", "exit 0", ok)


class CheckedResult(ABC):
    """A scenario result judged by its checks: what the service did, what it cost, its exit.

    Every scenario reports its checks the same way; a subclass lists its own two kinds.
    """

    exit_ok: bool

    @abstractmethod
    def _service_checks(self) -> list[Check]:
        """What the service did: answers, statuses, wakes."""

    @abstractmethod
    def _resource_checks(self) -> list[Check]:
        """What it cost: descriptors, memory, connections left open."""

    def checks(self) -> list[Check]:
        """(figure, value, target, met) for every target of the issue."""
        return self._service_checks() + self._resource_checks() + [exit_check(self.exit_ok)]

    def passed(self) -> bool:
        return all(ok for *_, ok in self.checks())

    def print_checks(self, title: str) -> None:
        rows = [[a, b, t, verdict(ok)] for a, b, t, ok in self.checks()]
        print_table(title, ["figure", "value", "target", ""], rows)


def print_peer_stats(stats: dict[str, Any], *, connections: bool = False) -> None:
    line = (
        f"peer server: {sum(stats['requests'].values())} probes received, "
        f"{stats['bytes_sent'] / 2**20:.0f} MiB sent, {stats['resets']} resets"
    )
    if connections:
        line += f", at most {stats['max_open_connections']} connections open at once"
    print(line)


class ScenarioResult(Protocol):
    frontend: str
    exit_ok: bool
    server_log: list[str]

    def note_error(self, text: str) -> None: ...

    def report(self) -> None: ...

    def passed(self) -> bool: ...


R = TypeVar("R", bound=ScenarioResult)
C = TypeVar("C")
T = TypeVar("T")


def run_scenario(
    frontend: str,
    settings: dict[str, str],
    ports: int,
    drive: Callable[[ServerProcess, PeersProcess], Coroutine[Any, Any, R]],
) -> R:
    """Start the peers and a registry (`settings`), run `drive`, stop both; its result.

    The registry must exit 0 on SIGTERM: a failure to is a failed check and an error.
    """
    with start_peers(ports) as peers:
        server = start_server(frontend, registry_env(**settings))
        try:
            result = asyncio.run(drive(server, peers))
            result.server_log = server_problems(server)
            try:
                server.stop()
            except AssertionError as failure:
                result.exit_ok = False
                result.note_error(str(failure)[:2000])
        finally:
            server.cleanup()
    return result


def option(default: T, help: str, *, flag: str | None = None) -> T:
    """A config field that is also a command-line option: `--name` (or `flag`), of the
    default's type, with `help`. Declared once, so the field's default is the option's."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag})


def scenario_parser(description: str, config: type[object]) -> argparse.ArgumentParser:
    """`--frontend`, and an option for every `option()` field of the `config` dataclass."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--frontend", choices=[*FRONTENDS, "both"], default="both")
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        if "help" in f.metadata:
            flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
            kind = type(f.default)
            parser.add_argument(
                flag, dest=f.name, type=kind, default=f.default, help=f.metadata["help"]
            )
    return parser


def config_from(cls: Callable[..., C], args: argparse.Namespace, **overrides: Any) -> C:
    """A config dataclass from the parsed options of the same names (`overrides` win)."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    return cls(**{**{n: getattr(args, n) for n in names if hasattr(args, n)}, **overrides})


def run_frontends(frontend: str, run_one: Callable[[str], ScenarioResult]) -> int:
    """Run on each chosen frontend (`both`: quart, then trio), reporting as each ends;
    exit status 0 when every one passed."""
    frontends = FRONTENDS if frontend == "both" else (frontend,)
    print(f"machine: {machine_line()}", flush=True)
    results = []
    for name in frontends:
        result = run_one(name)
        result.report()
        results.append(result)
    print()
    for result in results:
        print(f"{result.frontend}: {verdict(result.passed())}")
    return 0 if all(r.passed() for r in results) else 1
