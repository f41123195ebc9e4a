"""Cluster mode under faults: what clients see while etcd or a node misbehaves (issue 27).

    python -m tests.soak.harness.cluster_faults [--quick] [--instances N] [--no-pin]

One etcd 3.4 (`tests/etcd/etcd_process.py`, data in a temp dir, progress notifications
every second) and three nodes on 127.0.0.1: A (quart), B (trio, reaching etcd through
`tests/cluster_real/tcp_proxy.py`) and C (quart served by uvicorn). Short settings:
registration TTL 6 s (4 s with `--quick`), node TTL 3 s, stale after 2 s.

Writers register `--instances` ttl-checked instances through A and heartbeat each once
a second, re-registering on 404 as the SDK does; every answer is logged (the ack log).
A reader polls C, which writes nothing, every 20 ms: status, `X-Discovery-Stale`,
`X-Discovery-Last-Contact` and the instances it lists. Five faults, one after another,
each followed by recovery (every instance on every node, one index):

1. etcd SIGSTOPped for longer than the registration TTL, then SIGCONT;
2. etcd SIGKILLed, then started again on the same data dir;
3. node B SIGKILLed, then started again (the index of every node compared after);
4. node B behind (its etcd link paused) while a blocking query resumes on it from the
   index A showed after a new registration;
5. etcd wiped (started again on an empty data dir, same ports).

One row per fault: time to the first 503 on a write, to the stale flag on C, to
recovery (first acknowledged write after the fault ended; C's flag cleared),
acknowledged writes lost, instances expired by the fault, and PASS when both are 0.
A check of what the cluster keeps, not a performance scenario: it lives beside the
test that runs it (`tests/soak/test_cluster_faults_smoke.py`), and borrows the
benchmarks' process and client helpers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from bench.cluster import cluster_env, wait_store_ok
from bench.common import BenchError, log, print_table
from bench.http_client import Conn, Response, heartbeat_body, run_async
from bench.processes import Proc, Run, start_registry
from bench.scenario_cli import base_parser, scenario
from tests.cluster_real.tcp_proxy import TcpProxy
from tests.etcd.etcd_process import EtcdCluster, start_cluster

SERVICE = "faults"
PREFIX = "/bench-faults/"
READ_PATH = f"/v1/discovery/services/{SERVICE}"
#: How often the reader asks C, and how long one answer may take.
READ_EVERY = 0.02
REQUEST_TIMEOUT = 10.0
HEARTBEAT_EVERY = 1.0
#: Recovery: every instance on every node with one index, at most this long.
SETTLE_TIMEOUT = 40.0
#: The instance registered while B is behind (fault 4), whose client stops at the wipe.
GONE = "late"
NODES = (("node-a", "quart"), ("node-b", "trio"), ("node-c", "quart-uvicorn"))


@dataclass(frozen=True)
class Options:
    instances: int
    ttl: int
    stall: float
    down: float

    def node_env(self, endpoint: str, node_id: str) -> dict[str, str]:
        short = {
            "SERVICE_REGISTRATION_TTL_SECONDS": str(self.ttl),
            "SERVICE_DISCOVERY_NODE_TTL_SECONDS": "3",
            "SERVICE_DISCOVERY_STALE_AFTER_SECONDS": "2",
            "SERVICE_DISCOVERY_ETCD_WATCH_TIMEOUT_SECONDS": "5",
        }
        return cluster_env(endpoint, PREFIX, node_id, short)


# ------------------------------------------------------------------ the logs


@dataclass(frozen=True)
class Write:
    sent: float
    done: float
    instance: str
    kind: str  # "register" or "heartbeat"
    status: int  # 0: no answer (timeout, connection error)


@dataclass(frozen=True)
class Read:
    at: float
    status: int
    stale: bool
    last_contact: str
    instances: frozenset[str]


def register_doc(instance: str) -> bytes:
    doc = {
        "service_name": SERVICE,
        "instance_id": instance,
        "host": "127.0.0.1",
        "port": 9,
        "check": {"type": "ttl"},  # never probed: only heartbeats keep it
    }
    return json.dumps(doc, separators=(",", ":")).encode()


async def ask(conn: Conn, method: str, path: str, body: bytes | None = None) -> Response | None:
    """One request; None when no answer came in time (the connection is opened again)."""
    try:
        return await asyncio.wait_for(conn.request(method, path, body), REQUEST_TIMEOUT)
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        with contextlib.suppress(OSError):
            await conn.reopen()
        return None


@dataclass
class Fleet:
    """The writers (one client per instance, through A) and the reader (polling C)."""

    a_port: int
    writes: list[Write] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    retired: set[str] = field(default_factory=set)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def add(self, instance: str) -> None:
        self.instances.append(instance)
        self.tasks[instance] = asyncio.create_task(self._client(instance))

    async def retire(self, instance: str) -> None:
        """Its client stops for good (a process that died): no more heartbeats."""
        self.instances.remove(instance)
        self.retired.add(instance)
        task = self.tasks.pop(instance)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def read_from(self, port: Callable[[], int]) -> None:
        self.tasks[""] = asyncio.create_task(self._reader(port))

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def _client(self, instance: str) -> None:
        conn = await Conn.open(self.a_port)
        registered = False
        try:
            while True:
                kind = "heartbeat" if registered else "register"
                path = f"/v1/discovery/{kind}"
                body = heartbeat_body(SERVICE, instance) if registered else register_doc(instance)
                sent = time.monotonic()
                answer = await ask(conn, "POST", path, body)
                status = answer.status if answer else 0
                self.writes.append(Write(sent, time.monotonic(), instance, kind, status))
                if status == 200:
                    registered = True
                elif status == 404:
                    registered = False  # the SDK registers again
                await asyncio.sleep(HEARTBEAT_EVERY)
        finally:
            await conn.close()

    async def _reader(self, port: Callable[[], int]) -> None:
        conn = await Conn.open(port())
        try:
            while True:
                at = time.monotonic()
                answer = await ask(conn, "GET", READ_PATH)
                if answer is None:
                    self.reads.append(Read(at, 0, False, "", frozenset()))
                else:
                    self.reads.append(_read_of(at, answer))
                await asyncio.sleep(READ_EVERY)
        finally:
            await conn.close()

    def acked_before(self, moment: float) -> set[str]:
        return {
            w.instance
            for w in self.writes
            if w.kind == "register" and w.status == 200 and w.done <= moment
        } - self.retired


def _read_of(at: float, answer: Response) -> Read:
    ids: frozenset[str] = frozenset()
    if answer.status == 200:
        ids = frozenset(i["instance_id"] for i in answer.json()["instances"])
    return Read(
        at,
        answer.status,
        answer.headers.get("x-discovery-stale") == "true",
        answer.headers.get("x-discovery-last-contact", ""),
        ids,
    )


async def views(ports: list[int]) -> list[tuple[int, str, frozenset[str]]]:
    """Each node's listing of the service: status, index, instance ids."""
    out = []
    for port in ports:
        conn = await Conn.open(port)
        try:
            answer = await ask(conn, "GET", READ_PATH)
        finally:
            await conn.close()
        if answer is None or answer.status != 200:
            out.append((answer.status if answer else 0, "", frozenset[str]()))
            continue
        ids = frozenset(i["instance_id"] for i in answer.json()["instances"])
        out.append((200, answer.headers.get("x-discovery-index", ""), ids))
    return out


# ------------------------------------------------------------------ the cluster


@dataclass
class Cluster:
    run: Run
    opts: Options
    etcd: EtcdCluster
    proxy: TcpProxy
    nodes: dict[str, Proc] = field(default_factory=dict)

    @property
    def member(self) -> int:
        process = self.etcd.members[0].process
        if process is None:
            raise BenchError("etcd is not running")
        return process.pid

    def endpoint(self, node_id: str) -> str:
        return self.proxy.url if node_id == "node-b" else self.etcd.url

    def start(self, node_id: str) -> Proc:
        frontend = dict(NODES)[node_id]
        env = self.opts.node_env(self.endpoint(node_id), node_id)
        proc = start_registry(self.run, frontend, env=env, name=node_id)
        wait_store_ok(proc)
        self.nodes[node_id] = proc
        return proc

    def ports(self) -> list[int]:
        return [self.nodes[node_id].port for node_id, _ in NODES]


@contextlib.contextmanager
def cluster_of(run: Run, opts: Options) -> Iterator[Cluster]:
    etcd = start_cluster(1, extra_args=["--experimental-watch-progress-notify-interval=1s"])
    run.callback(etcd.stop)
    # First (the stack unwinds backwards): a stopped member cannot take SIGTERM.
    for member in etcd.members:
        run.callback(member.signal, signal.SIGCONT)
    host, port = etcd.url.removeprefix("http://").split(":")
    proxy = run.enter_context(TcpProxy(host, int(port)))
    cluster = Cluster(run, opts, etcd, proxy)
    for node_id, _ in NODES:
        cluster.start(node_id)
    yield cluster


# ------------------------------------------------------------------ faults


@dataclass
class Outcome:
    """One fault: when it started and ended, and what the fault-specific check said."""

    name: str
    start: float
    end: float
    settled: float = 0.0
    note: str = ""
    ok: bool = True
    wipe: bool = False


async def blocking(step: Callable[[], object]) -> None:
    """A blocking step (a process start, a wait on /health) while the clients go on."""
    await asyncio.to_thread(step)


async def etcd_stall(c: Cluster) -> Outcome:
    pid = c.member
    start = time.monotonic()
    c.etcd.members[0].signal(signal.SIGSTOP)
    await asyncio.sleep(c.opts.stall)
    c.etcd.members[0].signal(signal.SIGCONT)
    note = f"etcd (pid {pid}) stopped {c.opts.stall:g} s (TTL {c.opts.ttl} s)"
    return Outcome("etcd SIGSTOP, then SIGCONT", start, time.monotonic(), note=note)


async def etcd_crash(c: Cluster) -> Outcome:
    start = time.monotonic()
    c.etcd.members[0].signal(signal.SIGKILL)
    await asyncio.sleep(c.opts.down)
    await blocking(c.etcd.start_again)
    note = f"down {c.opts.down:g} s, then started on its data dir"
    return Outcome("etcd SIGKILL, restart", start, time.monotonic(), note=note)


async def node_crash(c: Cluster) -> Outcome:
    old = c.nodes["node-b"]
    start = time.monotonic()
    old.child.kill()
    await blocking(lambda: old.child.wait_exit(10))
    await blocking(lambda: c.start("node-b"))
    back = time.monotonic()
    return Outcome(
        "node B (trio) SIGKILL, restart",
        start,
        back,
        note=f"B following the store {back - start:.2f} s after the kill",
    )


async def node_behind(c: Cluster, fleet: Fleet) -> Outcome:
    """B's link paused; a new instance registered through A; a blocking query on B with
    A's index must be held, then answered with that index or later, never older."""
    start = time.monotonic()
    c.proxy.pause()
    fleet.add(GONE)
    wanted = await _index_with(c.nodes["node-a"].port, GONE)
    b = await Conn.open(c.nodes["node-b"].port)
    query = asyncio.create_task(
        ask(b, "GET", f"{READ_PATH}?index={wanted}&wait=20s"),
    )
    await asyncio.sleep(1.5)
    held = not query.done()
    c.proxy.unpause()
    end = time.monotonic()
    answer = await query
    answered = time.monotonic()
    await b.close()
    got = answer.headers.get("x-discovery-index", "") if answer else ""
    newer = bool(got) and int(got) >= wanted
    has = answer is not None and answer.status == 200 and GONE in _read_of(0, answer).instances
    ok = held and newer and has
    note = (
        f"query index {wanted} on B: {'held' if held else 'NOT HELD'} while behind, answered "
        f"{answered - end:.2f} s after the link resumed with index {got or '-'}"
        f"{'' if has else ', WITHOUT the new instance'}"
    )
    return Outcome("node B behind, query resumed on it", start, end, note=note, ok=ok)


async def _index_with(port: int, instance: str) -> int:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    conn = await Conn.open(port)
    try:
        while time.monotonic() < deadline:
            answer = await ask(conn, "GET", READ_PATH)
            if answer and answer.status == 200 and instance in _read_of(0, answer).instances:
                return int(answer.headers["x-discovery-index"])
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise BenchError(f"{instance} never shown by A")


async def etcd_wipe(c: Cluster, fleet: Fleet) -> Outcome:
    """Every client re-registers on 404 but one, stopped as etcd is wiped: the nodes must
    drop it (etcd no longer holds it, and no node expires what etcd does not hold)."""
    start = time.monotonic()
    await fleet.retire(GONE)
    await blocking(c.etcd.restart_empty)
    return Outcome(
        "etcd wiped (empty data dir, same ports)",
        start,
        time.monotonic(),
        note=f"clients re-register on 404 but {GONE!r}, stopped at the wipe",
        wipe=True,
    )


async def settle(c: Cluster, fleet: Fleet, outcome: Outcome) -> str:
    """Wait for recovery: a write acknowledged and C fresh after the fault ended, every
    instance on every node with one index (for a wipe: every client registered again)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    seen: list[tuple[int, str, frozenset[str]]] = []
    while time.monotonic() < deadline:
        wanted = set(fleet.instances)
        if outcome.wipe:
            wanted = {w for w in wanted if _registered_after(fleet, w, outcome.end)}
        seen = await views(c.ports())
        same = len({index for _, index, _ in seen}) == 1
        complete = all(s == 200 and ids == set(fleet.instances) for s, _, ids in seen)
        if (
            same
            and complete
            and wanted == set(fleet.instances)
            and _first_ok_write(fleet, outcome.end) is not None
            and _fresh_at(fleet, outcome.end) is not None
        ):
            outcome.settled = time.monotonic()
            return "one index on A, B, C: " + seen[0][1]
        await asyncio.sleep(0.2)
    outcome.settled = time.monotonic()
    outcome.ok = False
    return "NOT SETTLED: " + "; ".join(f"{s} index {i}, {len(ids)} listed" for s, i, ids in seen)


def _registered_after(fleet: Fleet, instance: str, moment: float) -> bool:
    return any(
        w.instance == instance and w.kind == "register" and w.status == 200 and w.sent >= moment
        for w in fleet.writes
    )


def _first_ok_write(fleet: Fleet, after: float) -> float | None:
    done = [w.done for w in fleet.writes if w.status == 200 and w.sent >= after]
    return min(done) - after if done else None


def _fresh_at(fleet: Fleet, after: float) -> float | None:
    """Seconds from `after` until C's reads carried no stale flag (and stayed so)."""
    reads = [r for r in fleet.reads if r.at >= after and r.status]
    if not reads:
        return None
    stale = [n for n, r in enumerate(reads) if r.stale]
    if not stale:
        return 0.0
    if stale[-1] + 1 >= len(reads):
        return None
    return reads[stale[-1] + 1].at - after


# ------------------------------------------------------------------ the row


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f} s"


def row(fleet: Fleet, o: Outcome, ports_views: list[tuple[int, str, frozenset[str]]]) -> list[str]:
    window = [w for w in fleet.writes if o.start <= w.done <= o.settled]
    refused = [w.done for w in window if w.status == 503]
    stale = [r.at for r in fleet.reads if o.start <= r.at <= o.settled and r.stale]
    everywhere = frozenset.intersection(*(ids for _, _, ids in ports_views))
    acked = fleet.acked_before(o.end)
    if o.wipe:
        lost = {i for i in acked if not _registered_after(fleet, i, o.end)}
        expired = {i for i in acked - lost if i not in everywhere}
    else:
        lost = acked - everywhere
        expired = _expired(fleet, o)
    leftover = frozenset[str]().union(*(ids for _, _, ids in ports_views)) & fleet.retired
    if o.wipe:
        o.note += f"; {GONE!r} " + (f"still on a node: {sorted(leftover)}" if leftover else "gone")
    ok = o.ok and not lost and not expired and not leftover
    contact = max((int(r.last_contact) for r in fleet.reads if r.last_contact.isdigit()
                   and o.start <= r.at <= o.settled), default=0)  # fmt: skip
    return [
        o.name,
        _seconds(min(refused) - o.start if refused else None),
        _seconds(min(stale) - o.start if stale else None),
        f"{_seconds(_first_ok_write(fleet, o.end))} / {_seconds(_fresh_at(fleet, o.end))}",
        f"{len(lost)} of {len(acked)}",
        str(len(expired)),
        f"{o.note}; C's last contact up to {contact / 1000:.1f} s",
        "PASS" if ok else "FAIL",
    ]


def _expired(fleet: Fleet, o: Outcome) -> set[str]:
    """Instances answered 404 on a heartbeat, or gone from C's listing, during the fault
    and its recovery, although their clients heartbeated throughout."""
    gone = {
        w.instance
        for w in fleet.writes
        if o.start <= w.sent <= o.settled and w.kind == "heartbeat" and w.status == 404
    }
    before = [r for r in fleet.reads if r.at < o.start and r.status == 200]
    if before:
        listed = before[-1].instances
        for r in fleet.reads:
            if o.start <= r.at <= o.settled and r.status == 200:
                gone |= listed - r.instances
    return gone


HEADS = [
    "fault",
    "first 503 on a write",
    "stale flag on C",
    "recovered: write ok / C fresh",
    "acked writes lost",
    "instances expired",
    "note",
    "lost == 0 and expired == 0",
]


# ------------------------------------------------------------------ main


async def run_faults(c: Cluster, opts: Options) -> list[list[str]]:
    fleet = Fleet(c.nodes["node-a"].port)
    fleet.read_from(lambda: c.nodes["node-c"].port)
    for n in range(opts.instances):
        fleet.add(f"i{n:03d}")
        await asyncio.sleep(HEARTBEAT_EVERY / opts.instances)  # spread the heartbeats
    rows: list[list[str]] = []
    try:
        ready = Outcome("start", time.monotonic(), time.monotonic())
        log(f"registering {opts.instances} instances: {await settle(c, fleet, ready)}")
        faults: list[Callable[[], Awaitable[Outcome]]] = [
            lambda: etcd_stall(c),
            lambda: etcd_crash(c),
            lambda: node_crash(c),
            lambda: node_behind(c, fleet),
            lambda: etcd_wipe(c, fleet),
        ]
        for fault in faults:
            await asyncio.sleep(2.0)  # steady state between faults
            outcome = await fault()
            log(f"{outcome.name}: ended after {outcome.end - outcome.start:.1f} s")
            same = await settle(c, fleet, outcome)
            outcome.note += f"; {same}"
            await asyncio.sleep(1.0)  # a late expiry would show here
            outcome.settled = time.monotonic()
            rows.append(row(fleet, outcome, await views(c.ports())))
            log(f"{rows[-1]}")
    finally:
        await fleet.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = base_parser("Cluster mode under faults (issue 27)", frontends=False)
    parser.add_argument("--instances", type=int, default=None, help="default 30 (10 quick)")
    args = parser.parse_args(argv)
    opts = _options(args)
    with scenario(args, "Cluster mode under faults") as run, cluster_of(run, opts) as c:
        rows = run_async(run_faults(c, opts))
    print_table(
        f"Faults: 3 nodes (quart, trio, quart+uvicorn) on one etcd, {opts.instances} "
        f"instances heartbeating through A every {HEARTBEAT_EVERY:g} s, registration TTL "
        f"{opts.ttl} s, node TTL 3 s, stale after 2 s; C writes nothing",
        HEADS,
        rows,
    )


def _options(args: argparse.Namespace) -> Options:
    if args.quick:
        return Options(args.instances or 10, ttl=4, stall=5.0, down=1.0)
    return Options(args.instances or 30, ttl=6, stall=8.0, down=3.0)


if __name__ == "__main__":
    main()
