"""The soak: a fleet heartbeating, readers, watchers, hostile instances and restarts, per frontend.

    python -m tests.soak.harness.soak [--frontend quart|trio|both] [--seconds 600]
        [--instances 1000]

One asyncio load process (httpx, in small pools), a reader process and the
peer server drive a registry child process for `--seconds`:

- `--instances` instances in `--services` services, each registering with a
  random phase and then heartbeating every `--heartbeat` seconds (TTL
  `--ttl`); each has its own health path on the peer server
  (`tests/soak/harness/peers.py`), a `--hostile-share` of them with a hostile
  kind (hang, trickle, 5 MiB, redirect, reset, ... in turn);
- readers: an open loop of `--read-rate` GETs per second over the read
  endpoints (one service, its healthy list, its Prometheus targets, now and
  then every service or the whole Prometheus list), timed from the moment
  each was due, in a process of their own (`read_load`) so that the
  generator's own event-loop lag is not charged to the registry;
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
snowball into a fleet of errors). Every `--sample` seconds a row is printed
(the reader process's reads join the rows in the final table): requests,
errors, read p50/p99, write p99, watcher wakes, restarts, the
registry's instance count, its open fds and RSS, and the CPU share of the
registry, of the load generator and of the peer server with the
generator's worst event-loop lag: on a small machine, latencies that rise
while the generator is at 100% of a core or its loop lags are the
generator's doing, not the registry's. At the end the restarts stop, every
instance must reach its kind's status, everything is unregistered, and the
registry's fds are measured again when quiet (every probe in flight
ended; healthy sentinel instances are still probed), to compare with the
same measure taken before the load. fds are counted without the accepted API
connections and without kept-alive probe connections, two pools whose size
the clients decide; the report lists what the remaining ones are. The
instances whose connection can never be reused (hang, trickle,
trickle_body, huge, reset) use peer ports of their own, and when quiet
the registry must hold no connection to those ports: one would be a leak.

The generator keeps its own HTTP cheap and patient so that it is not the
bottleneck: small httpx pools behind a semaphore, idle API connections
dropped after 2 s (before the registry's 5 s keep-alive timeout can race a
request), 30 s request timeouts, and the instance count read through a
client of its own rather than queued behind the heartbeats.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import itertools
import multiprocessing
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import print_table
from conformance.process_figures import cpu_seconds, open_fds
from conformance.server_process import ServerProcess

from .peers import EXPECTED, HOSTILE_KINDS, PeersProcess, port_for, split_ports
from .scenario import (
    Check,
    CheckedResult,
    Clients,
    config_from,
    connections_to,
    describe_fds,
    failure_text,
    open_loop,
    option,
    own_fds,
    peer_instance,
    percentile_ms,
    poll_statuses,
    print_peer_stats,
    quiet_sample,
    rss_mib,
    run_frontends,
    run_scenario,
    sample_now,
    scenario_parser,
    sentinels,
    wrong_statuses,
)


@dataclass
class SoakConfig:
    seconds: float = option(600.0, "how long the load runs, s")
    instances: int = option(1000, "instances registered")
    services: int = option(50, "services they are spread over (at most one per instance)")
    heartbeat: float = option(10.0, "heartbeat interval, s")
    ttl: float = option(30.0, "registration TTL, s")
    interval: float = option(30.0, "probe interval, s")
    timeout: float = option(5.0, "probe timeout, s")
    hostile_share: float = option(0.1, "share of instances whose health endpoint misbehaves")
    read_rate: float = option(50.0, "reads per second")
    watchers: int = option(50, "blocking-query watchers")
    wait: float = option(30.0, "blocking query wait, s")
    restarts: float = option(1.0, "instance restarts per second")
    sample: float = option(10.0, "sampling window, s")
    seed: int = option(1, "random seed")
    ports: int = 8
    fd_slack: int = 16
    p99_target_ms: float = 100.0


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
    #: CPU used during the window, in % of one core: registry, load generator, peer server.
    cpu_registry: float = 0.0
    cpu_load: float = 0.0
    cpu_peers: float = 0.0
    #: The load generator's worst event-loop lag in the window, s.
    lag: float = 0.0


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
        port = port_for(self.kind, self.port_index, ports)
        health = f"/{self.kind}/soak-{self.number}"
        return peer_instance(self.service, self.instance_id, port, health, self.kind)


@dataclass
class SoakResult(CheckedResult):
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
    closing_connections: int = 0
    expired_alive: int = 0
    server_log: list[str] = field(default_factory=list)
    exit_ok: bool = True

    def note_error(self, text: str) -> None:
        self.error_log.append(text)

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
        return percentile_ms(self.reads, 0.99)

    def worst_window_p99_ms(self) -> float:
        return max((percentile_ms(w.reads, 0.99) for w in self.windows), default=0.0)

    def rss_second_half(self) -> float:
        """RSS growth over the second half of the load (a leak keeps growing; warm-up does not)."""
        if len(self.windows) < 2:
            return 0.0
        return self.windows[-1].rss - self.windows[len(self.windows) // 2].rss

    def _service_checks(self) -> list[Check]:
        """What the API and the statuses did: errors, final statuses, latency."""
        c = self.config
        wrong = sum(self.final_wrong.values())
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
                f"{percentile_ms(self.reads, 0.5):.1f} / {self.read_p99_ms:.1f} ms, "
                f"worst window p99 {self.worst_window_p99_ms():.1f} ms",
                f"p99 < {c.p99_target_ms:.0f} ms",
                self.read_p99_ms < c.p99_target_ms,
            ),
            (
                "API writes p50 / p99 (heartbeats, registrations)",
                f"{percentile_ms(self.writes, 0.5):.1f} / "
                f"{percentile_ms(self.writes, 0.99):.1f} ms",
                "(reported)",
                True,
            ),
        ]

    def _resource_checks(self) -> list[Check]:
        """What the registry held and used, what the load did."""
        c = self.config
        w = self.windows
        return [
            (
                "probe connections to hang/trickle/huge/reset ports, quiet, after",
                str(self.closing_connections),
                "0",
                self.closing_connections == 0,
            ),
            (
                "fds without API or kept-alive probe connections, quiet: before / after",
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
                "CPU, % of one core, mean over the windows: registry / generator / peers",
                f"{_mean([x.cpu_registry for x in w]):.0f} / {_mean([x.cpu_load for x in w]):.0f}"
                f" / {_mean([x.cpu_peers for x in w]):.0f} (generator's worst loop lag "
                f"{max((x.lag for x in w), default=0.0) * 1000:.0f} ms)",
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
        ]

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
                "CPU% reg/gen/peers",
                "gen lag ms",
            ],
            [
                [
                    f"{w.t:.0f}",
                    w.requests,
                    w.errors,
                    f"{percentile_ms(w.reads, 0.5):.1f}",
                    f"{percentile_ms(w.reads, 0.99):.1f}",
                    f"{percentile_ms(w.writes, 0.99):.1f}",
                    w.wakes,
                    w.restarts,
                    w.instances,
                    w.fds,
                    w.own_fds,
                    f"{w.rss:.1f}",
                    f"{w.cpu_registry:.0f}/{w.cpu_load:.0f}/{w.cpu_peers:.0f}",
                    f"{w.lag * 1000:.0f}",
                ]
                for w in self.windows
            ],
        )
        settle = "-" if self.final_settle is None else f"{self.final_settle:.1f} s"
        self.print_checks(f"soak, {self.frontend}: summary (final statuses settled after {settle})")
        print_peer_stats(self.peer_stats)
        print(f"registry fds when quiet at the end: {self.fds_after}")
        for line in self.error_log[:20]:
            print(f"  error: {line}")
        for line in self.server_log:
            print(f"  registry log: {line}")


#: Read templates, in turn: one service in 19 of 21, everything in 2.
READS = (
    *["/v1/discovery/services/{s}"] * 12,
    *["/v1/discovery/services/{s}/healthy"] * 6,
    "/v1/discovery/services/{s}/instances",
    "/v1/discovery/services",
    "/v1/discovery/prometheus",
)


#: The reads start this long after the load, once the reader's connections are open.
READ_LEAD = 1.0


def read_load(
    url: str, services: int, rate: float, start: float, end: float, seed: int
) -> list[tuple[float, float, str]]:
    """The open-loop readers, run in a process of their own: (due, latency, failure) per read.

    A read is timed from the moment it was due (`time.monotonic()`, the same
    clock in every process), so a registry that stalls is charged for every
    read that waited. In the generator's own process, that clock also charged
    the registry for the generator's event-loop lag (a thousand instance
    tasks, fifty watchers waking at once, garbage collections: over 100 ms
    on the 2-core machine of docs/reliability.md); here the loop does nothing
    else. latency is -1 when no response came; failure is "" for a 200.
    """
    return asyncio.run(_read_load(url, services, rate, start, end, seed))


async def _read_load(
    url: str, services: int, rate: float, start: float, end: float, seed: int
) -> list[tuple[float, float, str]]:
    rng = random.Random(seed)
    clients = Clients(8)
    results: list[tuple[float, float, str]] = []

    async def one(n: int, due: float) -> None:
        path = READS[n % len(READS)].format(s=f"soak-{rng.randrange(services)}")
        try:
            response = await clients.request("GET", url + path)
        except httpx.HTTPError as failure:
            results.append((due, -1.0, failure_text(f"GET {path}", failure)))
            return
        latency = time.monotonic() - due
        reason = "" if response.status_code == 200 else f"GET {path}: {response.status_code}"
        results.append((due, latency, reason + (f" {response.text[:200]}" if reason else "")))

    try:
        await clients.warm(f"{url}/health")
        start = max(start, time.monotonic())  # a late warm-up is not the registry's delay
        await open_loop(rate, start, one, asyncio.Event(), end)
    finally:
        await clients.aclose()
    return results


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


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
        self.watch_clients = Clients(max(1, config.watchers), per=1, timeout=config.wait + 30)
        # The sampler's own client: its /health must not queue behind heartbeats.
        self.sampler_client = Clients(1, per=1)
        # The readers run in a process of their own (`read_load`).
        self.read_pool = concurrent.futures.ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn")
        )
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
        expect: int = 200,
    ) -> httpx.Response | None:
        """One checked write; the response, with an error counted unless it was `expect`.

        None when no response came at all (a connection error).
        """
        sent = time.monotonic()
        try:
            response = await clients.request(method, self.url + path, json=body)
        except httpx.HTTPError as failure:
            self.window.requests += 1
            self.error(failure_text(f"{method} {path}", failure))
            return None
        self.window.requests += 1
        self.window.writes.append(time.monotonic() - sent)
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

    def add_reads(self, reads: list[tuple[float, float, str]]) -> None:
        """File the reader process's results into the windows their due times fall in."""
        for due, latency, failure in reads:
            number = int((due - self.started) // self.c.sample)
            window = self.windows[max(0, min(number, len(self.windows) - 1))]
            window.requests += 1
            if latency >= 0:
                window.reads.append(latency)
            if failure:
                window.errors += 1
                if len(self.error_log) < 200:
                    self.error_log.append(f"t={due - self.started:.1f}s {failure}")

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
        """The registry's instance count (/health), -1 if it does not answer within 2 s."""
        try:
            async with asyncio.timeout(2.0):
                response = await self.sampler_client.request("GET", f"{self.url}/health")
        except (TimeoutError, httpx.HTTPError):
            return -1
        if response.status_code != 200:
            return -1
        return int(response.json().get("instances", -1))

    async def lag_meter(self) -> None:
        """Record the generator's worst event-loop lag per window (a 50 ms ticker's lateness)."""
        while not self.load_over.is_set():
            due = time.monotonic() + 0.05
            await asyncio.sleep(0.05)
            self.window.lag = max(self.window.lag, time.monotonic() - due)

    async def sampler(self) -> None:
        c = self.c
        end = self.started + c.seconds
        peers_pid = self.peers.child.pid
        last = time.monotonic()
        cpu = (cpu_seconds(self.pid), time.process_time(), cpu_seconds(peers_pid))
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
            now = time.monotonic()
            was, cpu = cpu, (cpu_seconds(self.pid), time.process_time(), cpu_seconds(peers_pid))
            share = [100 * (b - a) / max(now - last, 1e-3) for a, b in zip(was, cpu, strict=True)]
            closing.cpu_registry, closing.cpu_load, closing.cpu_peers = share
            last = now
            closing.instances = await self.instance_count()
            self.windows.append(closing)
            w = closing
            print(
                f"  [{self.frontend} t={w.t:4.0f}s] writes and watches {w.requests} "
                f"errors {w.errors} write p99 {percentile_ms(w.writes, 0.99):.1f} ms "
                f"wakes {w.wakes} "
                f"restarts {w.restarts} instances {w.instances} fds {w.fds} (own {w.own_fds}) "
                f"RSS {w.rss:.1f} MiB CPU% reg/gen/peers {w.cpu_registry:.0f}/"
                f"{w.cpu_load:.0f}/{w.cpu_peers:.0f} lag {w.lag * 1000:.0f} ms",
                flush=True,
            )
            if self.load_over.is_set() or t >= end:
                return

    async def final_statuses(self) -> tuple[dict[str, int], float | None]:
        """Wait until every instance shows its kind's status; what is still wrong at the end."""
        c = self.c
        start = time.monotonic()
        kinds = {(inst.service, inst.instance_id): inst.kind for inst in self.instances}

        def settled(seen: dict[tuple[str, str], str], now: float) -> bool:
            return not wrong_statuses(seen, kinds, EXPECTED)

        deadline = start + 3 * c.interval + c.timeout + 3.0
        seen = await poll_statuses(self.writers, self.url, self.error_log, settled, deadline, 0.5)
        wrong = wrong_statuses(seen, kinds, EXPECTED)
        return wrong, (None if wrong else time.monotonic() - start)

    async def _for_each(self, action: str, instances: Sequence[Instance]) -> None:
        """Register or unregister every instance, at most 16 at a time."""
        gate = asyncio.Semaphore(16)

        async def one(inst: Instance) -> None:
            async with gate:
                if action == "register":
                    body = inst.body(self.peers.ports)
                    await self.request(self.writers, "POST", "/v1/discovery/register", body)
                else:
                    path = f"/v1/discovery/unregister/{inst.service}/{inst.instance_id}"
                    await self.request(self.writers, "DELETE", path)

        await asyncio.gather(*(one(i) for i in instances))

    def _read_later(
        self, start: float, end: float
    ) -> asyncio.Future[list[tuple[float, float, str]]]:
        """The reader process's open loop from `start` to `end` (monotonic)."""
        c = self.c
        return asyncio.get_running_loop().run_in_executor(
            self.read_pool, read_load, self.url, c.services, c.read_rate, start, end, c.seed
        )

    async def _baseline(self) -> tuple[int, float]:
        """Sentinels registered, connections open, then fds and RSS once quiet."""
        for sentinel in sentinels(self.peers.ports, "soak-sentinel"):
            await self.request(self.writers, "POST", "/v1/discovery/register", sentinel)
        for clients in (self.writers, self.watch_clients, self.sampler_client):
            await clients.warm(f"{self.url}/health")
        # The reader's process, started (and its modules imported) before the baseline.
        now = time.monotonic()
        await self._read_later(now, now)
        await asyncio.sleep(self.c.interval + 0.5)  # the sentinels probed once
        sample = sample_now(self.server, self.peers)
        return sample.fds, sample.rss

    async def _load(self) -> list[asyncio.Task[None]]:
        """The whole fleet registers, then `seconds` of load; the instances' tasks."""
        c = self.c
        # Every instance registers first (readers and watchers expect their services to exist).
        await self._for_each("register", self.instances)
        # What exists now lives for the whole run: keep the collector off it, so
        # a full collection does not pause the generator (its loop lag is measured).
        gc.collect()
        gc.freeze()
        self.registration = Window(0.0)
        self.registration.errors = self.window.errors
        self.registration.requests = self.window.requests
        self.window = Window(0.0)
        self.started = time.monotonic()

        lives = [asyncio.create_task(self.instance_life(i)) for i in self.instances]
        reading = self._read_later(self.started + READ_LEAD, self.started + c.seconds)
        load = [
            asyncio.create_task(self.restarter()),
            *(asyncio.create_task(self.watcher(n)) for n in range(c.watchers)),
        ]
        sampling = asyncio.create_task(self.sampler())
        lagging = asyncio.create_task(self.lag_meter())
        await asyncio.sleep(c.seconds)
        self.load_over.set()
        await sampling
        await lagging
        await asyncio.wait(load, timeout=c.wait + 30)
        self.add_reads(await reading)
        return lives

    async def run(self) -> SoakResult:
        c = self.c
        try:
            fds0, rss0 = await self._baseline()
            lives = await self._load()
            wrong, settle = await self.final_statuses()
            self.stopping.set()
            await asyncio.wait(lives, timeout=60)
            await self._for_each("unregister", self.instances)
            # Registration and the final phase count in the first and last windows.
            self.windows[0].errors += self.registration.errors
            self.windows[0].requests += self.registration.requests
            self.windows[-1].errors += self.window.errors
            self.windows[-1].requests += self.window.requests
            quiet = await quiet_sample(self.server, self.peers, c.interval, c.timeout)
            self.fds_after = describe_fds(self.pid, self.server.port, self.peers.ports)
            closing = connections_to(self.pid, split_ports(self.peers.ports)[1])
        finally:
            await self.writers.aclose()
            await self.watch_clients.aclose()
            self.read_pool.shutdown(wait=True, cancel_futures=True)
            await self.sampler_client.aclose()
        return SoakResult(
            frontend=self.frontend,
            config=c,
            windows=self.windows,
            error_log=self.error_log,
            fds_quiet_before=fds0,
            fds_quiet_after=quiet.fds,
            rss_before=rss0,
            rss_after=quiet.rss,
            final_wrong=wrong,
            final_settle=settle,
            restarts=self.restart_counts,
            wakes=self.wakes,
            peer_stats=self.peers.stats(),
            fds_after=self.fds_after,
            closing_connections=closing,
            expired_alive=self.expired_alive,
        )


def run_soak(frontend: str, config: SoakConfig) -> SoakResult:
    """Start the peers and a registry, run the soak, stop both; the figures."""
    settings = {
        "HEALTH_CHECK_INTERVAL_SECONDS": f"{config.interval:g}",
        "HEALTH_CHECK_TIMEOUT_SECONDS": f"{config.timeout:g}",
        "SERVICE_REGISTRATION_TTL_SECONDS": f"{config.ttl:g}",
    }

    async def drive(server: ServerProcess, peers: PeersProcess) -> SoakResult:
        return await Soak(frontend, config, server, peers).run()

    return run_scenario(frontend, settings, config.ports, drive)


def main(argv: Sequence[str] | None = None) -> int:
    parser = scenario_parser(__doc__.splitlines()[0], SoakConfig)
    args = parser.parse_args(argv)
    config = config_from(SoakConfig, args, services=min(args.services, args.instances))
    return run_frontends(args.frontend, lambda frontend: run_soak(frontend, config))


if __name__ == "__main__":
    raise SystemExit(main())
