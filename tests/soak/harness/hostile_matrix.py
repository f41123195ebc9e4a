"""The hostile-instance matrix, per frontend.

    python -m tests.soak.harness.hostile_matrix [--frontend quart|trio|both]
        [--per-kind N] [--rounds R]

Hundreds of instances whose `/health` hangs, trickles one byte a second,
sends 5 MiB, redirects, resets the connection, returns invalid JSON or
answers slowly under the timeout (`tests/soak/harness/peers.py`, one
asyncio process), registered beside as many healthy ones, with
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
  (`tests.soak.harness.peers.split_ports`), so once a round is unregistered the
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

import asyncio
import collections
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import print_table, verdict
from conformance.client import instance_body
from conformance.server_process import ServerProcess

from .peers import EXPECTED, KINDS, PeersProcess, port_for, split_ports
from .scenario import (
    Check,
    CheckedResult,
    Clients,
    QuietSample,
    Reader,
    config_from,
    connections_to,
    failure_text,
    option,
    peer_instance,
    percentile_ms,
    poll_statuses,
    print_peer_stats,
    quiet_sample,
    run_frontends,
    run_scenario,
    scenario_parser,
    sentinels,
    statuses,
)

STRAY_GRACE = 0.5
FRESH_INSTANCES = 10


# ------------------------------------------------------------------ the matrix


@dataclass
class MatrixConfig:
    per_kind: int = option(100, "instances of each kind")
    rounds: int = option(3, "rounds")
    interval: float = option(2.0, "probe interval, s")
    timeout: float = option(1.0, "probe timeout, s")
    concurrency: int = option(256, "MAX_CONCURRENT_HEALTH_CHECKS")
    observe_intervals: int = option(3, "intervals watched per round", flag="--observe")
    read_rate: float = option(50.0, "reads per second")
    ports: int = option(8, "ports of the peer server")
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
class MatrixResult(CheckedResult):
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
    server_log: list[str] = field(default_factory=list)

    def note_error(self, text: str) -> None:
        self.errors.append(text)

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
    def stray_probes(self) -> int:
        return sum(r.stray_probes for r in self.rounds)

    @property
    def read_p99_ms(self) -> float:
        return percentile_ms(self.read_latencies, 0.99)

    def _service_checks(self) -> list[Check]:
        """What the API and the statuses did: rounds, statuses, probe schedule, latency."""
        c = self.config
        late = self.lateness(["healthy"])
        late_all = self.lateness(self.healthy_kinds)
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
                f"{percentile_ms(self.read_latencies, 0.5):.1f} / {self.read_p99_ms:.1f} ms "
                f"({len(self.read_latencies)} reads)",
                f"p99 < {c.p99_target_ms:.0f} ms",
                self.read_p99_ms < c.p99_target_ms,
            ),
            (
                "API writes p99 (register/unregister bursts)",
                f"{percentile_ms(self.write_latencies, 0.99):.1f} ms",
                "(reported)",
                True,
            ),
            ("API errors", str(len(self.errors)), "0", not self.errors),
        ]

    def _resource_checks(self) -> list[Check]:
        """What the registry held: probes after unregister, connections, fds, RSS."""
        c = self.config
        r = self.rounds or [RoundFigures(0, None, -1, -1.0, 0)]
        closing = sum(f.closing_connections for f in self.rounds)
        return [
            (
                f"after the rounds: {FRESH_INSTANCES} fresh healthy instances healthy / probed",
                f"{self.fresh[0]} / {self.fresh[1]}",
                f"{FRESH_INSTANCES} / {FRESH_INSTANCES}",
                self.fresh == (FRESH_INSTANCES, FRESH_INSTANCES),
            ),
            ("stray probes after unregister", str(self.stray_probes), "0", self.stray_probes == 0),
            (
                "probe connections to hang/trickle/huge/reset ports when quiet, every round",
                str(closing),
                "0",
                closing == 0,
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
        ]

    def report(self) -> None:
        self._print_kinds()
        self.print_checks(f"{self.frontend}: targets")
        self._print_rounds()
        print_peer_stats(self.peer_stats, connections=True)
        for error in self.errors[:10]:
            print(f"  error: {error}")

    def _kind_row(self, k: KindFigures) -> list[object]:
        c = self.config
        actual = ", ".join(f"{s} {n}" for s, n in sorted(k.actual.items()))
        late = max(0.0, k.max_gap - c.interval)
        ok = k.actual.get(k.expected, 0) == c.per_kind * c.rounds and k.mismatches == 0
        if k.expected == "healthy":
            ok = ok and late <= c.lateness_slack
        return [
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

    def _print_kinds(self) -> None:
        c = self.config
        total = c.per_kind * len(self.kinds)
        title = (
            f"hostile matrix, {self.frontend}: {len(self.kinds)} kinds x {c.per_kind} = {total} "
            f"instances, {c.rounds} rounds, interval {c.interval:g} s, timeout {c.timeout:g} s, "
            f"slow delay {c.delay:g} s, MAX_CONCURRENT_HEALTH_CHECKS {c.concurrency} "
            f"(~{c.slots_needed():.0f} needed), {self.elapsed:.0f} s"
        )
        heads = ["kind", "expected", "actual (all rounds)", "flaps", "settle s", "probes"]
        heads += ["max gap s", "late ms", ""]
        print_table(title, heads, [self._kind_row(k) for k in self.kinds.values()])

    def _print_rounds(self) -> None:
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


Keyed = dict[tuple[str, str], str]


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
                port = port_for(kind, i, self.peers.ports)
                bodies.append(peer_instance(f"hm-{kind}", tag, port, endpoint, kind))
        return bodies

    async def _write(self, method: str, path: str, body: dict[str, Any] | None) -> float:
        started = time.monotonic()
        try:
            response = await self.writers.request(method, self.url + path, json=body)
        except httpx.HTTPError as failure:
            self.errors.append(failure_text(f"{method} {path}", failure))
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

    async def _register(self, bodies: list[dict[str, Any]]) -> list[float]:
        return await self._all([("POST", "/v1/discovery/register", body) for body in bodies])

    async def _unregister(self, keys: Sequence[tuple[str, str]]) -> list[float]:
        path = "/v1/discovery/unregister"
        return await self._all([("DELETE", f"{path}/{s}/{i}", None) for s, i in keys])

    async def quiet_sample(self) -> QuietSample:
        """Own fds, all fds and RSS once quiet (see `scenario.quiet_fds`)."""
        return await quiet_sample(self.server, self.peers, self.c.interval, self.c.timeout)

    async def run_round(self, number: int) -> RoundFigures:
        c = self.c
        bodies = self.instances(number)
        expected = {(b["service_name"], b["instance_id"]): b["metadata"]["kind"] for b in bodies}
        done = await self._register(bodies)
        registered_at = dict(zip(expected, done, strict=True))
        stop = asyncio.Event()
        paths = [
            f"/v1/discovery/services/hm-{kind}{suffix}"
            for kind in KINDS
            for suffix in ("", "/healthy")
        ]
        reader = Reader(self.readers, self.url, paths, c.read_rate)
        reading = asyncio.create_task(reader.run(stop))
        try:
            settled_after = await self._settle(expected, max(done))
            observed = await self._observe(expected)
            stop.set()
            await reading
            self.read_latencies += reader.latencies
            self.errors += reader.errors
            self._file_probe_gaps(expected, registered_at, observed)
            return await self._end_round(number, expected, settled_after)
        finally:
            stop.set()
            if not reading.done():
                reading.cancel()

    async def _settle(self, expected: Keyed, registered: float) -> float | None:
        """Wait until every status is the expected one; seconds that took (None: never)."""
        c = self.c
        per_kind_settle: dict[str, float] = {}

        def settled(seen: Keyed, now: float) -> bool:
            for kind in KINDS:
                if kind not in per_kind_settle and all(
                    seen.get(key) == EXPECTED[k] for key, k in expected.items() if k == kind
                ):
                    per_kind_settle[kind] = now - registered
            return len(per_kind_settle) == len(KINDS)

        deadline = registered + 3 * c.interval + c.timeout + 2.0
        await poll_statuses(self.writers, self.url, self.errors, settled, deadline, 0.25)
        for kind, figures in self.kinds.items():
            figures.settle = max(figures.settle, per_kind_settle.get(kind, float("inf")))
        return max(per_kind_settle.values()) if len(per_kind_settle) == len(KINDS) else None

    async def _observe(self, expected: Keyed) -> float:
        """Statuses must stay put for the observation; when it ended."""
        c = self.c
        observe_end = time.monotonic() + c.observe_intervals * c.interval
        while True:
            seen = await statuses(self.writers, self.url, self.errors)
            for key, kind in expected.items():
                if seen.get(key) != EXPECTED[kind]:
                    self.kinds[kind].mismatches += 1
            if time.monotonic() >= observe_end:
                break
            await asyncio.sleep(min(1.0, max(0.0, observe_end - time.monotonic())))
        for key, kind in expected.items():
            self.kinds[kind].actual[seen.get(key, "missing")] += 1
        return time.monotonic()

    def _file_probe_gaps(
        self, expected: Keyed, registered_at: dict[tuple[str, str], float], observed: float
    ) -> None:
        """Probes must stay on schedule: the longest gap from registration to the end."""
        _, log = self.peers.log()
        for key, kind in expected.items():
            times = [t for t in log.get(f"/{kind}/{key[1]}", []) if t <= observed]
            marks = [registered_at[key], *times, observed]
            gap = max(b - a for a, b in itertools.pairwise(marks))
            figures = self.kinds[kind]
            figures.max_gap = max(figures.max_gap, gap)
            figures.probes += len(times)

    async def _end_round(
        self, number: int, expected: Keyed, settled_after: float | None
    ) -> RoundFigures:
        """Unregister the round, wait for quiet, count stray probes and connections."""
        done = await self._unregister(list(expected))
        unregistered_at = dict(zip(expected, done, strict=True))
        quiet = await self.quiet_sample()
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
            quiet.fds,
            quiet.rss,
            stray,
            probe_connections=connections_to(self.pid, keep_alive),
            fds_total=quiet.fds_total,
            closing_connections=connections_to(self.pid, closing),
        )

    async def recovery(self) -> tuple[int, int]:
        """Fresh healthy instances after the rounds: (how many turned healthy, how many probed).

        A probe client that lost connection slots to the hostile rounds would
        fail these probes without ever reaching the peer.
        """
        c = self.c
        bodies = [
            instance_body(
                "hm-fresh",
                f"fresh-{i}",
                port_for("healthy", i, self.peers.ports),
                health_endpoint=f"/healthy/fresh-{i}",
            )
            for i in range(FRESH_INSTANCES)
        ]
        await self._register(bodies)
        healthy = 0

        def all_healthy(seen: Keyed, now: float) -> bool:
            nonlocal healthy
            healthy = sum(1 for k, v in seen.items() if k[0] == "hm-fresh" and v == "healthy")
            return healthy == FRESH_INSTANCES

        deadline = time.monotonic() + 2 * c.interval + c.timeout + 1.0
        await asyncio.sleep(0.5)
        await poll_statuses(self.writers, self.url, self.errors, all_healthy, deadline, 0.5)
        _, log = self.peers.log("/healthy/fresh-")
        await self._unregister([("hm-fresh", b["instance_id"]) for b in bodies])
        return healthy, len(log)

    async def _rounds(self) -> tuple[list[RoundFigures], tuple[int, int]]:
        """Every round, then the recovery; a registry that stops answering must not hang it."""
        rounds: list[RoundFigures] = []
        budget = self.c.rounds * (90 + 6 * self.c.interval) + 60
        try:
            async with asyncio.timeout(budget):
                for number in range(1, self.c.rounds + 1):
                    rounds.append(await self.run_round(number))
                return rounds, await self.recovery()
        except TimeoutError:
            self.errors.append(f"run aborted after {budget:.0f} s: the registry stalled")
            return rounds, (0, 0)

    async def run(self) -> MatrixResult:
        started = time.monotonic()
        try:
            await self._register(sentinels(self.peers.ports))
            # Open every client connection the run will use before the baseline.
            await self.writers.warm(f"{self.url}/health")
            await self.readers.warm(f"{self.url}/health")
            baseline = await self.quiet_sample()
            rounds, fresh = await self._rounds()
        finally:
            await self.writers.aclose()
            await self.readers.aclose()
        return MatrixResult(
            frontend=self.frontend,
            config=self.c,
            kinds=self.kinds,
            rounds=rounds,
            fds_baseline=baseline.fds,
            fds_baseline_total=baseline.fds_total,
            rss_baseline=baseline.rss,
            read_latencies=self.read_latencies,
            write_latencies=self.write_latencies,
            errors=self.errors,
            peer_stats=self.peers.stats(),
            elapsed=time.monotonic() - started,
            fresh=fresh,
        )


def run_matrix(frontend: str, config: MatrixConfig) -> MatrixResult:
    """Start the peers and a registry, run every round, stop both; the figures."""
    settings = {
        "HEALTH_CHECK_INTERVAL_SECONDS": f"{config.interval:g}",
        "HEALTH_CHECK_TIMEOUT_SECONDS": f"{config.timeout:g}",
        "MAX_CONCURRENT_HEALTH_CHECKS": str(config.concurrency),
        "SERVICE_REGISTRATION_TTL_SECONDS": "3600",
    }

    async def drive(server: ServerProcess, peers: PeersProcess) -> MatrixResult:
        return await Matrix(frontend, config, server, peers).run()

    return run_scenario(frontend, settings, config.ports, drive)


def main(argv: Sequence[str] | None = None) -> int:
    parser = scenario_parser(__doc__.splitlines()[0], MatrixConfig)
    args = parser.parse_args(argv)
    if args.per_kind < 1 or args.rounds < 1 or not 0 < args.timeout <= args.interval:
        parser.error("need --per-kind >= 1, --rounds >= 1, 0 < --timeout <= --interval")
    if args.ports < 2:
        parser.error("need --ports >= 2 (keep-alive kinds and closing kinds on ports of their own)")
    config = config_from(MatrixConfig, args)
    return run_frontends(args.frontend, lambda frontend: run_matrix(frontend, config))


if __name__ == "__main__":
    raise SystemExit(main())
