"""The soak: a fleet heartbeating, readers, watchers, hostile instances and restarts, per frontend.

    python -m bench.soak [--frontend quart|trio|both] [--seconds 600] [--instances 1000]

One asyncio load process (httpx, in small pools) drives a registry child
process for `--seconds`:

- `--instances` instances in `--services` services, each registering with a
  random phase and then heartbeating every `--heartbeat` seconds (TTL
  `--ttl`); each has its own health path on the peer server
  (`bench/hostile_peers.py`), a `--hostile-share` of them with a hostile
  kind (hang, trickle, 5 MiB, redirect, reset, ... in turn);
- readers: an open loop of `--read-rate` GETs per second over the read
  endpoints (one service, its healthy list, its Prometheus targets, now and
  then every service or the whole Prometheus list), timed from the moment
  each was due;
- `--watchers` blocking queries (`?index=&wait=`), most on one service,
  two on every service, each following the index it was given;
- `--restarts` random instance restarts per second: half clean (unregister,
  down 0.5-3 s, register again), half crashes (heartbeats stop for 1 s to
  2 TTLs, so some instances expire, then register again); one in four comes
  back on another port (an address change).

Every response is checked: anything but the expected 200 is an error, and
the target is 0: a 5xx, a connection error, a watcher's index going
backwards, a heartbeat answered 404 (the registry let a live instance
expire: it then registers again, as the SDK does, so that one stall does not
snowball into a fleet of errors). Every `--sample` seconds a row is printed:
requests, errors, read p50/p99, write p99, watcher wakes, restarts, the
registry's instance count, its open fds and RSS. At the end the restarts
stop, every instance must reach its kind's status, everything is
unregistered, and the registry's fds are measured again when quiet (idle
keep-alive probe connections expired; a sentinel instance keeps the probe
client pruning them), to compare with the same measure taken before the
load. fds are counted without the accepted API connections, whose number
the clients decide; the report lists what the remaining ones are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.hostile_matrix import (
    FRONTENDS,
    KEEPALIVE_EXPIRY,
    Clients,
    describe_fds,
    machine,
    open_fds,
    own_fds,
    percentile,
    print_table,
    registry_env,
    rss_mib,
    server_problems,
    statuses,
    verdict,
)
from bench.hostile_peers import EXPECTED, HOSTILE_KINDS, PeersProcess, start_peers
from conformance.server_process import ServerProcess, start_server


@dataclass
class SoakConfig:
    seconds: float = 600.0
    instances: int = 1000
    services: int = 50
    heartbeat: float = 10.0
    ttl: float = 30.0
    interval: float = 10.0
    timeout: float = 2.0
    hostile_share: float = 0.1
    read_rate: float = 50.0
    watchers: int = 50
    wait: float = 30.0
    restarts: float = 1.0
    sample: float = 10.0
    ports: int = 8
    fd_slack: int = 16
    p99_target_ms: float = 100.0
    seed: int = 1


@dataclass
class Window:
    """What happened during one sampling window."""

    t: float
    requests: int = 0
    errors: int = 0
    reads: list[float] = field(default_factory=list)
    writes: list[float] = field(default_factory=list)
    wakes: int = 0
    restarts: int = 0
    instances: int = 0
    fds: int = 0
    own_fds: int = 0
    rss: float = 0.0


@dataclass
class Instance:
    number: int
    service: str
    instance_id: str
    kind: str
    port_index: int
    restart: tuple[str, float] | None = None
    busy: bool = False

    def body(self, ports: Sequence[int]) -> dict[str, Any]:
        return {
            "service_name": self.service,
            "instance_id": self.instance_id,
            "host": "127.0.0.1",
            "port": ports[self.port_index % len(ports)],
            "health_endpoint": f"/{self.kind}/soak-{self.number}",
            "metadata": {"kind": self.kind},
        }


@dataclass
class SoakResult:
    frontend: str
    config: SoakConfig
    windows: list[Window]
    error_log: list[str]
    fds_quiet_before: int
    fds_quiet_after: int
    rss_before: float
    rss_after: float
    final_wrong: dict[str, int]
    final_settle: float | None
    restarts: dict[str, int]
    wakes: int
    peer_stats: dict[str, Any]
    fds_after: dict[str, int] = field(default_factory=dict)
    expired_alive: int = 0
    server_log: list[str] = field(default_factory=list)
    exit_ok: bool = True

    @property
    def requests(self) -> int:
        return sum(w.requests for w in self.windows)

    @property
    def errors(self) -> int:
        return sum(w.errors for w in self.windows)

    @property
    def reads(self) -> list[float]:
        return [x for w in self.windows for x in w.reads]

    @property
    def writes(self) -> list[float]:
        return [x for w in self.windows for x in w.writes]

    @property
    def fd_growth(self) -> int:
        return self.fds_quiet_after - self.fds_quiet_before

    @property
    def read_p99_ms(self) -> float:
        return percentile(self.reads, 0.99) * 1000

    def worst_window_p99_ms(self) -> float:
        return max((percentile(w.reads, 0.99) * 1000 for w in self.windows), default=0.0)

    def rss_second_half(self) -> float:
        """RSS growth over the second half of the load (a leak keeps growing; warm-up does not)."""
        if len(self.windows) < 2:
            return 0.0
        return self.windows[-1].rss - self.windows[len(self.windows) // 2].rss

    def checks(self) -> list[tuple[str, str, str, bool]]:
        c = self.config
        wrong = sum(self.final_wrong.values())
        w = self.windows
        return [
            (
                "errors",
                f"{self.errors} of {self.requests} requests "
                f"({self.expired_alive} heartbeats of live instances answered 404)",
                "0",
                self.errors == 0,
            ),
            (
                "final status of every instance",
                f"{wrong} wrong " + (f"{dict(self.final_wrong)}" if wrong else ""),
                "0 wrong",
                wrong == 0,
            ),
            (
                "API reads p50 / p99 (whole run)",
                f"{percentile(self.reads, 0.5) * 1000:.1f} / {self.read_p99_ms:.1f} ms, "
                f"worst window p99 {self.worst_window_p99_ms():.1f} ms",
                f"p99 < {c.p99_target_ms:.0f} ms",
                self.read_p99_ms < c.p99_target_ms,
            ),
            (
                "API writes p50 / p99 (heartbeats, registrations)",
                f"{percentile(self.writes, 0.5) * 1000:.1f} / "
                f"{percentile(self.writes, 0.99) * 1000:.1f} ms",
                "(reported)",
                True,
            ),
            (
                "fds without API connections, quiet: before / after",
                f"{self.fds_quiet_before} / {self.fds_quiet_after} (under load "
                f"{min((x.own_fds for x in w), default=0)}-{max((x.own_fds for x in w), default=0)}"
                f"; all fds {min((x.fds for x in w), default=0)}-"
                f"{max((x.fds for x in w), default=0)})",
                f"growth <= {c.fd_slack}",
                self.fd_growth <= c.fd_slack,
            ),
            (
                "RSS MiB: before / first window / last window / after",
                f"{self.rss_before:.1f} / {w[0].rss:.1f} / {w[-1].rss:.1f} / {self.rss_after:.1f}"
                if w
                else "-",
                "(reported)",
                True,
            ),
            (
                "RSS growth over the second half",
                f"{self.rss_second_half():+.1f} MiB",
                "(reported)",
                True,
            ),
            (
                "restarts (clean / crash / new address)",
                f"{self.restarts['clean']} / {self.restarts['crash']} / {self.restarts['moved']}",
                "(reported)",
                True,
            ),
            ("watcher wakes (index rose)", str(self.wakes), "> 0", self.wakes > 0),
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
        hostile = round(c.instances * c.hostile_share)
        print_table(
            f"soak, {self.frontend}: {c.instances} instances ({hostile} hostile) in {c.services} "
            f"services, heartbeat {c.heartbeat:g} s, TTL {c.ttl:g} s, probe interval "
            f"{c.interval:g} s, timeout {c.timeout:g} s, {c.read_rate:g} reads/s, "
            f"{c.watchers} watchers (wait {c.wait:g} s), {c.restarts:g} restarts/s, "
            f"{c.seconds:g} s",
            [
                "t s",
                "requests",
                "errors",
                "read p50 ms",
                "read p99 ms",
                "write p99 ms",
                "wakes",
                "restarts",
                "instances",
                "fds",
                "own fds",
                "RSS MiB",
            ],
            [
                [
                    f"{w.t:.0f}",
                    w.requests,
                    w.errors,
                    f"{percentile(w.reads, 0.5) * 1000:.1f}",
                    f"{percentile(w.reads, 0.99) * 1000:.1f}",
                    f"{percentile(w.writes, 0.99) * 1000:.1f}",
                    w.wakes,
                    w.restarts,
                    w.instances,
                    w.fds,
                    w.own_fds,
                    f"{w.rss:.1f}",
                ]
                for w in self.windows
            ],
        )
        settle = "-" if self.final_settle is None else f"{self.final_settle:.1f} s"
        print_table(
            f"soak, {self.frontend}: summary (final statuses settled after {settle})",
            ["figure", "value", "target", ""],
            [[a, b, t, verdict(ok)] for a, b, t, ok in self.checks()],
        )
        s = self.peer_stats
        print(
            f"peer server: {sum(s['requests'].values())} probes received, "
            f"{s['bytes_sent'] / 2**20:.0f} MiB sent, {s['resets']} resets"
        )
        print(f"registry fds when quiet at the end: {self.fds_after}")
        for line in self.error_log[:20]:
            print(f"  error: {line}")
        for line in self.server_log:
            print(f"  registry log: {line}")


class Soak:
    def __init__(
        self, frontend: str, config: SoakConfig, server: ServerProcess, peers: PeersProcess
    ) -> None:
        self.frontend, self.c, self.server, self.peers = frontend, config, server, peers
        self.url = server.url
        self.pid = server.proc.pid
        self.rng = random.Random(config.seed)
        self.started = time.monotonic()
        self.window = Window(0.0)
        self.registration = Window(0.0)
        self.windows: list[Window] = []
        self.error_log: list[str] = []
        self.restart_counts = {"clean": 0, "crash": 0, "moved": 0}
        self.wakes = 0
        self.expired_alive = 0
        self.fds_after: dict[str, int] = {}
        self.load_over = asyncio.Event()  # no new restarts; downtimes end at once
        self.stopping = asyncio.Event()  # instances stop heartbeating
        self.writers = Clients(6)
        self.readers = Clients(8)
        self.watch_clients = Clients(max(1, config.watchers), per=1, timeout=config.wait + 30)
        hostile = round(config.instances * config.hostile_share)
        step = config.instances / hostile if hostile else 0.0
        hostile_numbers = {int(n * step) for n in range(hostile)}
        kinds = itertools.cycle(HOSTILE_KINDS)
        self.instances = [
            Instance(
                number=n,
                service=f"soak-{n % config.services}",
                instance_id=f"i-{n}",
                kind=next(kinds) if n in hostile_numbers else "healthy",
                port_index=n,
            )
            for n in range(config.instances)
        ]

    # -------------------------------------------------------------- requests

    def error(self, what: str) -> None:
        self.window.errors += 1
        if len(self.error_log) < 200:
            self.error_log.append(f"t={time.monotonic() - self.started:.1f}s {what}")

    async def request(
        self,
        clients: Clients,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        due: float | None = None,
        read: bool = False,
        expect: int = 200,
    ) -> httpx.Response | None:
        """One checked request; the response, with an error counted unless it was `expect`.

        None when no response came at all (a connection error).
        """
        sent = time.monotonic()
        try:
            response = await clients.request(method, self.url + path, json=body)
        except httpx.HTTPError as failure:
            self.window.requests += 1
            cause = failure.__cause__ or failure.__context__
            self.error(f"{method} {path}: {type(failure).__name__} {failure} (cause {cause!r})")
            return None
        latency = time.monotonic() - (due if due is not None else sent)
        self.window.requests += 1
        (self.window.reads if read else self.window.writes).append(latency)
        if response.status_code != expect:
            self.error(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response

    # -------------------------------------------------------------- actors

    async def instance_life(self, inst: Instance) -> None:
        c = self.c
        ports = self.peers.ports
        beat = time.monotonic() + self.rng.uniform(0, c.heartbeat)
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, beat - time.monotonic())):
                    await self.stopping.wait()
            if self.stopping.is_set():
                return
            if inst.restart is not None:
                mode, downtime = inst.restart
                inst.restart = None
                inst.busy = True
                if mode == "clean":
                    path = f"/v1/discovery/unregister/{inst.service}/{inst.instance_id}"
                    await self.request(self.writers, "DELETE", path)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(downtime):
                        await self.load_over.wait()
                if self.rng.random() < 0.25:
                    inst.port_index += 1
                    self.restart_counts["moved"] += 1
                await self.request(self.writers, "POST", "/v1/discovery/register", inst.body(ports))
                self.restart_counts[mode] += 1
                self.window.restarts += 1
                inst.busy = False
                beat = time.monotonic() + c.heartbeat
                continue
            response = await self.request(
                self.writers,
                "POST",
                "/v1/discovery/heartbeat",
                {"service_name": inst.service, "instance_id": inst.instance_id},
            )
            if response is not None and response.status_code == 404:
                # Expired while alive (counted as an error above); register
                # again, as the SDK does, so one stall does not snowball.
                self.expired_alive += 1
                await self.request(self.writers, "POST", "/v1/discovery/register", inst.body(ports))
            beat += c.heartbeat
            if beat < time.monotonic():
                beat = time.monotonic() + c.heartbeat

    async def restarter(self) -> None:
        c = self.c
        if c.restarts <= 0:
            return
        n = 0
        while not self.load_over.is_set():
            n += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.rng.expovariate(c.restarts)):
                    await self.load_over.wait()
            if self.load_over.is_set():
                return
            inst = self.rng.choice(self.instances)
            if inst.busy or inst.restart is not None:
                continue
            if n % 2:
                inst.restart = ("clean", self.rng.uniform(0.5, 3.0))
            else:
                inst.restart = ("crash", self.rng.uniform(1.0, 2 * c.ttl))

    #: Read templates, in turn: one service in 19 of 21, everything in 2.
    READS = (
        *["/v1/discovery/services/{s}"] * 12,
        *["/v1/discovery/services/{s}/healthy"] * 6,
        "/v1/discovery/services/{s}/instances",
        "/v1/discovery/services",
        "/v1/discovery/prometheus",
    )

    async def reader(self) -> None:
        c = self.c
        tasks: set[asyncio.Task[Any]] = set()
        start = time.monotonic()
        for n in range(10**9):
            due = start + n / c.read_rate
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, due - time.monotonic())):
                    await self.load_over.wait()
            if self.load_over.is_set():
                break
            template = self.READS[n % len(self.READS)]
            path = template.format(s=f"soak-{self.rng.randrange(c.services)}")
            task = asyncio.create_task(self.request(self.readers, "GET", path, due=due, read=True))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=30)

    async def watcher(self, number: int) -> None:
        async with self.watch_clients.slot() as client:
            await self._watch(number, client)

    async def _watch(self, number: int, client: httpx.AsyncClient) -> None:
        c = self.c
        path = (
            "/v1/discovery/services"
            if number < 2
            else f"/v1/discovery/services/soak-{number % c.services}"
        )
        index = 0
        while not self.load_over.is_set():
            query = f"?index={index}&wait={c.wait:g}s"
            sent = time.monotonic()
            try:
                response = await client.get(self.url + path + query)
            except httpx.HTTPError as failure:
                self.window.requests += 1
                self.error(f"watch {path}: {type(failure).__name__} {failure}")
                await asyncio.sleep(1.0)
                continue
            self.window.requests += 1
            if response.status_code != 200:
                self.error(f"watch {path}: {response.status_code} {response.text[:200]}")
                await asyncio.sleep(1.0)
                continue
            new = int(response.headers.get("x-discovery-index", "0"))
            if new < index:
                self.error(f"watch {path}: index went backwards {index} -> {new}")
            elif new > index and index > 0:
                self.window.wakes += 1
                self.wakes += 1
            elif new == index and time.monotonic() - sent < c.wait * 0.9:
                self.error(f"watch {path}: answered early without a change ({index})")
            index = new

    # -------------------------------------------------------------- phases

    async def instance_count(self) -> int:
        response = await self.request(self.writers, "GET", "/health")
        return int(response.json().get("instances", 0)) if response is not None else -1

    async def sampler(self) -> None:
        c = self.c
        end = self.started + c.seconds
        for n in itertools.count(1):
            t = self.started + n * c.sample
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(t, end) - time.monotonic())):
                    await self.load_over.wait()
            closing = self.window
            self.window = Window(min(t, end) - self.started)
            closing.t = self.window.t
            closing.fds = open_fds(self.pid)
            closing.own_fds = own_fds(self.pid, self.server.port)
            closing.rss = rss_mib(self.pid)
            closing.instances = await self.instance_count()
            self.windows.append(closing)
            w = closing
            print(
                f"  [{self.frontend} t={w.t:4.0f}s] requests {w.requests} errors {w.errors} "
                f"read p99 {percentile(w.reads, 0.99) * 1000:.1f} ms "
                f"write p99 {percentile(w.writes, 0.99) * 1000:.1f} ms wakes {w.wakes} "
                f"restarts {w.restarts} instances {w.instances} fds {w.fds} (own {w.own_fds}) "
                f"RSS {w.rss:.1f} MiB",
                flush=True,
            )
            if self.load_over.is_set() or t >= end:
                return

    async def quiet_fds(self) -> tuple[int, float]:
        """fds without API connections, and RSS, once idle probe connections were pruned."""
        await asyncio.sleep(KEEPALIVE_EXPIRY + self.c.interval + 0.5)
        return own_fds(self.pid, self.server.port), rss_mib(self.pid)

    async def final_statuses(self) -> tuple[dict[str, int], float | None]:
        """Wait until every instance shows its kind's status; what is still wrong at the end."""
        c = self.c
        start = time.monotonic()
        deadline = start + 3 * c.interval + c.timeout + 3.0
        wrong: dict[str, int] = {}
        while True:
            seen = await statuses(self.writers, self.url, self.error_log)
            wrong = {}
            for inst in self.instances:
                status = seen.get((inst.service, inst.instance_id), "missing")
                if status != EXPECTED[inst.kind]:
                    key = f"{inst.kind}:{status}"
                    wrong[key] = wrong.get(key, 0) + 1
            if not wrong:
                return wrong, time.monotonic() - start
            if time.monotonic() > deadline:
                return wrong, None
            await asyncio.sleep(0.5)

    async def run(self) -> SoakResult:
        c = self.c
        try:
            sentinel = {
                "service_name": "soak-sentinel",
                "instance_id": "sentinel",
                "host": "127.0.0.1",
                "port": self.peers.ports[0],
                "health_endpoint": "/healthy/sentinel",
            }
            await self.request(self.writers, "POST", "/v1/discovery/register", sentinel)
            for clients in (self.writers, self.readers, self.watch_clients):
                await clients.warm(f"{self.url}/health")
            await asyncio.sleep(c.interval + 0.5)  # the sentinel probed once
            fds0, rss0 = own_fds(self.pid, self.server.port), rss_mib(self.pid)

            # Every instance registers first (readers and watchers expect
            # their services to exist), at most 16 at a time.
            gate = asyncio.Semaphore(16)

            async def register(inst: Instance) -> None:
                async with gate:
                    body = inst.body(self.peers.ports)
                    await self.request(self.writers, "POST", "/v1/discovery/register", body)

            await asyncio.gather(*(register(i) for i in self.instances))
            self.registration = Window(0.0)
            self.registration.errors = self.window.errors
            self.registration.requests = self.window.requests
            self.window = Window(0.0)
            self.started = time.monotonic()

            lives = [asyncio.create_task(self.instance_life(i)) for i in self.instances]
            load = [
                asyncio.create_task(self.restarter()),
                asyncio.create_task(self.reader()),
                *(asyncio.create_task(self.watcher(n)) for n in range(c.watchers)),
            ]
            sampling = asyncio.create_task(self.sampler())
            await asyncio.sleep(c.seconds)
            self.load_over.set()
            await sampling
            await asyncio.wait(load, timeout=c.wait + 30)

            wrong, settle = await self.final_statuses()
            self.stopping.set()
            await asyncio.wait(lives, timeout=60)

            async def unregister(inst: Instance) -> None:
                async with gate:
                    await self.request(
                        self.writers,
                        "DELETE",
                        f"/v1/discovery/unregister/{inst.service}/{inst.instance_id}",
                    )

            await asyncio.gather(*(unregister(i) for i in self.instances))
            # Registration and the final phase count in the first and last windows.
            self.windows[0].errors += self.registration.errors
            self.windows[0].requests += self.registration.requests
            self.windows[-1].errors += self.window.errors
            self.windows[-1].requests += self.window.requests
            fds1, rss1 = await self.quiet_fds()
            self.fds_after = describe_fds(self.pid, self.server.port, self.peers.ports)
        finally:
            await self.writers.aclose()
            await self.readers.aclose()
            await self.watch_clients.aclose()
        return SoakResult(
            frontend=self.frontend,
            config=c,
            windows=self.windows,
            error_log=self.error_log,
            fds_quiet_before=fds0,
            fds_quiet_after=fds1,
            rss_before=rss0,
            rss_after=rss1,
            final_wrong=wrong,
            final_settle=settle,
            restarts=self.restart_counts,
            wakes=self.wakes,
            peer_stats=self.peers.stats(),
            fds_after=self.fds_after,
            expired_alive=self.expired_alive,
        )


def run_soak(frontend: str, config: SoakConfig) -> SoakResult:
    """Start the peers and a registry, run the soak, stop both; the figures."""
    env = registry_env(
        HEALTH_CHECK_INTERVAL_SECONDS=f"{config.interval:g}",
        HEALTH_CHECK_TIMEOUT_SECONDS=f"{config.timeout:g}",
        SERVICE_REGISTRATION_TTL_SECONDS=f"{config.ttl:g}",
    )
    with start_peers(config.ports) as peers:
        server = start_server(frontend, env)
        try:
            result = asyncio.run(Soak(frontend, config, server, peers).run())
            result.server_log = server_problems(server)
            try:
                server.stop()
            except AssertionError as failure:
                result.exit_ok = False
                result.error_log.append(str(failure)[:2000])
        finally:
            server.cleanup()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    d = SoakConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frontend", choices=[*FRONTENDS, "both"], default="both")
    parser.add_argument("--seconds", type=float, default=d.seconds)
    parser.add_argument("--instances", type=int, default=d.instances)
    parser.add_argument("--services", type=int, default=d.services)
    parser.add_argument("--heartbeat", type=float, default=d.heartbeat)
    parser.add_argument("--ttl", type=float, default=d.ttl)
    parser.add_argument("--interval", type=float, default=d.interval, help="probe interval")
    parser.add_argument("--timeout", type=float, default=d.timeout, help="probe timeout")
    parser.add_argument("--hostile-share", type=float, default=d.hostile_share)
    parser.add_argument("--read-rate", type=float, default=d.read_rate)
    parser.add_argument("--watchers", type=int, default=d.watchers)
    parser.add_argument("--wait", type=float, default=d.wait, help="blocking query wait, s")
    parser.add_argument("--restarts", type=float, default=d.restarts, help="per second")
    parser.add_argument("--sample", type=float, default=d.sample, help="window, s")
    parser.add_argument("--seed", type=int, default=d.seed)
    args = parser.parse_args(argv)
    config = SoakConfig(
        seconds=args.seconds,
        instances=args.instances,
        services=min(args.services, args.instances),
        heartbeat=args.heartbeat,
        ttl=args.ttl,
        interval=args.interval,
        timeout=args.timeout,
        hostile_share=args.hostile_share,
        read_rate=args.read_rate,
        watchers=args.watchers,
        wait=args.wait,
        restarts=args.restarts,
        sample=args.sample,
        seed=args.seed,
    )
    frontends = FRONTENDS if args.frontend == "both" else (args.frontend,)
    print(f"machine: {machine()}", flush=True)
    results = []
    for frontend in frontends:
        result = run_soak(frontend, config)
        result.report()
        results.append(result)
    print()
    for result in results:
        print(f"{result.frontend}: {verdict(result.passed())}")
    return 0 if all(r.passed() for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
