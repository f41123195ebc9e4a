"""N cluster nodes on one in-memory etcd and one fake clock, for tests (`SimulatedCluster`).

Beside `sd_core.testing` (one registry on a fake clock), which this builds on:
kept in the cluster package so that the core's root imports nothing of cluster
mode.
"""

from __future__ import annotations

import json
import random
from typing import Any

from sd_etcd import MemoryEtcd, MemoryWatch

from ..body import as_bytes
from ..config import RegistryConfig
from ..events import RunProbe
from ..http_api import BlockingWait, HttpRequest, HttpResponse, PendingWrite
from ..testing import (
    DEFAULT_SECRET,
    DEFAULT_WALL_OFFSET,
    FakeClock,
    ProbeFunction,
    ProbePlan,
    Reply,
    ScriptedProbes,
    always_healthy,
    probe_outcome,
)
from . import CloseWatch, ClusterConfig, ClusterNode, OpenWatch, StoreCall, WriteDone


def http_request(
    method: str,
    path: str,
    *,
    json_body: Any = None,
    query: str = "",
    secret: str | None = DEFAULT_SECRET,
) -> HttpRequest:
    """A request as a driver hands it to a node (`ClusterNode.handle`): JSON body,
    bearer token."""
    body = b"" if json_body is None else json.dumps(json_body).encode()
    authorization = None if secret is None else f"Bearer {secret}"
    return HttpRequest(method, path, query.encode(), authorization, "application/json", body)


class SimulatedCluster(ScriptedProbes):
    """N cluster nodes over one in-memory etcd, on one fake clock.

    Each node is a real `ClusterNode`; a tiny in-process driver delivers its store
    calls to a `MemoryEtcd` as gateway bytes and its watch as the gateway's stream, so
    the real `sd_etcd` builders and parsers run end to end. Crashes, partitions, store
    outages and compactions are one call each::

        cluster = SimulatedCluster(nodes=3)
        cluster.request(0, "POST", "/v1/discovery/register",
                        json_body={"service_name": "api", "instance_id": "a1",
                                   "host": "10.0.0.1", "port": 8080})
        reply = cluster.request(2, "GET", "/v1/discovery/services/api")
        assert reply.status == 200 and reply.index == cluster.index(0, "api")
        cluster.crash(0)             # its probes move to the others
        cluster.store_down()         # writes 503, reads stale, nothing expires
        cluster.advance(60)
        cluster.store_up()
        cluster.advance(5)           # every live node converges

    Also: `hold_watch(n)`/`release_watch(n)` (node n falls behind: its watch delivers
    nothing meanwhile), `freeze(n)`/`thaw(n)` (SIGSTOP: node n does not run at all),
    `store_wiped()` (etcd restarted on an empty data dir).

    Nodes are numbered from 0; node `n` has id `node-{n+1}`.
    """

    def __init__(
        self,
        nodes: int = 3,
        config: RegistryConfig | None = None,
        *,
        probe: ProbeFunction = always_healthy,
        clock: FakeClock | None = None,
        secret: str = DEFAULT_SECRET,
        wall_offset: float = DEFAULT_WALL_OFFSET,
        node_ttl: int = 10,
        seed: int = 0,
    ) -> None:
        self.clock = clock or FakeClock()
        self.config = config or RegistryConfig()
        self.etcd = MemoryEtcd()
        self.secret = secret
        self._plan = ProbePlan(probe)
        self.nodes: list[ClusterNode] = []
        self.crashed: set[int] = set()
        self.partitioned: set[int] = set()
        self.held: set[int] = set()  # nodes whose watch delivers nothing for now
        self.frozen: set[int] = set()  # nodes that do not run (SIGSTOP)
        self.probes_run: list[list[RunProbe]] = []
        self.effects: list[list[object]] = []
        self._watches: dict[int, tuple[int, MemoryWatch]] = {}
        self._answers: dict[tuple[int, int], HttpResponse] = {}
        self._node_ttl, self._wall_offset, self._seed = node_ttl, wall_offset, seed
        self._restarts = 0
        self.etcd.advance(self.clock.now)
        for number in range(nodes):
            self.nodes.append(self._new_node(number))
            self.probes_run.append([])
            self.effects.append([])
            self.nodes[number].start(self.clock.now)
        self.settle()

    def _new_node(self, number: int) -> ClusterNode:
        node_id = f"node-{number + 1}"
        return ClusterNode(
            ClusterConfig(
                node_id, url=f"http://{node_id}.test", frontend="simulated", node_ttl=self._node_ttl
            ),
            self.config,
            now=self.clock.now,
            wall_offset=self._wall_offset,
            random_bits=random.Random(
                self._seed * 1000 + number + 100 * self._restarts
            ).getrandbits,
            secret=self.secret,
            version="test",
        )

    # --------------------------------------------------------- faults

    def crash(self, node: int) -> None:
        """The node stops: nothing reaches it again, its node lease runs out in etcd."""
        self._drop_watch(node)
        self.crashed.add(node)

    def restart(self, node: int) -> None:
        """Start node `node` again as a new process (after `crash`, or a kill -9 now): an
        empty view that lists the prefix, under the same node id."""
        self._drop_watch(node)
        self.crashed.discard(node)
        self._restarts += 1
        self.nodes[node] = self._new_node(node)
        self.nodes[node].start(self.clock.now)
        self.settle()

    def partition(self, node: int) -> None:
        """Cut the node from the store: its calls fail and its watch breaks."""
        self.partitioned.add(node)
        found = self._drop_watch(node)
        if found is not None:
            self.nodes[node].watch_ended(found, self.clock.now)
        self.settle()

    def heal(self, node: int) -> None:
        self.partitioned.discard(node)

    def freeze(self, node: int) -> None:
        """The node stops running (SIGSTOP): no timer, no delivery; the store goes on
        and its watch's events wait. `thaw` lets it run again, from its old view."""
        self.frozen.add(node)

    def thaw(self, node: int) -> None:
        self.frozen.discard(node)

    def hold_watch(self, node: int) -> None:
        """The node's watch delivers nothing (its events wait in the store) until
        `release_watch`: a node that is behind the others, not cut off."""
        self.held.add(node)

    def release_watch(self, node: int) -> None:
        self.held.discard(node)
        self.settle()

    def store_wiped(self) -> None:
        """etcd restarts on an empty data dir (same cluster id, revisions from 1)."""
        self.etcd.wipe(self.clock.now)
        self.settle()

    def store_down(self) -> None:
        """etcd loses quorum: every call fails, every watch ends with an error."""
        self.etcd.outage(self.clock.now)
        self.settle()

    def store_up(self, *, same_leader: bool = False) -> None:
        """Quorum is back: leases restart a full TTL, as after an etcd leader change, or
        with `same_leader` (a stalled member that resumes) every lease whose time ran
        out meanwhile is revoked at once."""
        self.etcd.recover(self.clock.now, restart_leases=not same_leader)
        self.settle()

    def compact(self) -> None:
        """Compact etcd's history up to its current revision."""
        self.etcd.compact(self.etcd.revision, self.clock.now)
        self.settle()

    # --------------------------------------------------------- time

    def live(self) -> list[int]:
        return [n for n in range(len(self.nodes)) if n not in self.crashed | self.frozen]

    def advance(self, seconds: float) -> None:
        """Move time on, stopping at every node's and the store's deadlines."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        target = self.clock.now + seconds
        for _ in range(1_000_000):
            self.settle()
            deadlines = [self.nodes[n].next_deadline() for n in self.live()]
            deadlines.append(self.etcd.next_deadline())
            due = min((d for d in deadlines if d is not None), default=None)
            if due is None or due > target:
                break
            self._tick(max(self.clock.now, due))
        else:  # pragma: no cover - a deadline that never moves is a bug
            raise RuntimeError("deadlines did not move")
        self._tick(target)
        self.settle()

    def _tick(self, now: float) -> None:
        self.clock.now = now
        self.etcd.advance(now)
        for n in self.live():
            self.nodes[n].on_timer(now)

    def settle(self) -> None:
        """Deliver everything pending, in rounds, until nothing moves."""
        while any([self._deliver(n) for n in self.live()]):
            pass

    def _drop_watch(self, node: int) -> int | None:
        found = self._watches.pop(node, None)
        if found is None:
            return None
        found[1].close()
        return found[0]

    def _deliver(self, n: int) -> bool:
        node, now = self.nodes[n], self.clock.now
        reachable = n not in self.partitioned and self.etcd.available
        effects = node.drain_effects()
        self.effects[n].extend(effects)
        for effect in effects:
            if isinstance(effect, StoreCall):
                if reachable:
                    status, body = self.etcd.handle(effect.request, now)
                    node.store_answered(effect.token, status, body, now)
                else:
                    node.store_failed(effect.token, now)
            elif isinstance(effect, OpenWatch):
                self._drop_watch(n)
                if reachable:
                    self._watches[n] = (effect.watch, self.etcd.open_watch(effect.request, now))
                else:
                    node.watch_ended(effect.watch, now)
            elif isinstance(effect, CloseWatch):
                if self._watches.get(n, (0,))[0] == effect.watch:
                    self._drop_watch(n)
            elif isinstance(effect, WriteDone):
                self._answers[(n, effect.token)] = effect.response
            elif isinstance(effect, RunProbe):
                self.probes_run[n].append(effect)
                node.probe_result(probe_outcome(self._plan(effect), effect), now)
        watch = self._watches.get(n)
        moved = bool(effects)
        if watch is not None and n not in self.held:
            data = watch[1].read()
            if data:
                node.watch_data(watch[0], data, now)
                moved = True
            if watch[1].ended:
                self._drop_watch(n)
                node.watch_ended(watch[0], now)
                moved = True
        return moved

    # --------------------------------------------------------- HTTP

    def send(self, node: int, request: HttpRequest) -> HttpResponse:
        """One raw request to one node. A parked write is answered as soon as the
        simulated driver delivers its `WriteDone` (time moves only if it must)."""
        if node in self.crashed:
            raise ValueError(f"node {node} crashed")
        target = self.nodes[node]
        result = target.handle(request, self.clock.now)
        if isinstance(result, BlockingWait):
            self.advance(result.timeout)
            result = target.handle(request, self.clock.now, may_block=False)
        if isinstance(result, PendingWrite):
            key = (node, result.token)
            self.settle()
            while key not in self._answers:
                deadline = target.next_deadline()
                self.advance(max(0.0, (deadline or self.clock.now + 1) - self.clock.now))
            return self._answers.pop(key)
        assert isinstance(result, HttpResponse)
        self.settle()
        return result

    def request(
        self,
        node: int,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        query: str = "",
        token: str | None = "default",
    ) -> Reply:
        secret = self.secret if token == "default" else token
        request = http_request(method, path, json_body=json_body, query=query, secret=secret)
        result = self.send(node, request)
        decoded = json.loads(as_bytes(result.body)) if result.body else None
        return Reply(result.status, {k.lower(): v for k, v in result.headers}, decoded)

    def register(self, node: int, service_name: str, instance_id: str, **fields: Any) -> Reply:
        document = {
            "service_name": service_name,
            "instance_id": instance_id,
            "host": "127.0.0.1",
            "port": 8080,
            **fields,
        }
        return self.request(node, "POST", "/v1/discovery/register", json_body=document)

    def heartbeat(self, node: int, service_name: str, instance_id: str, **fields: Any) -> Reply:
        document = {"service_name": service_name, "instance_id": instance_id, **fields}
        return self.request(node, "POST", "/v1/discovery/heartbeat", json_body=document)

    def unregister(self, node: int, service_name: str, instance_id: str) -> Reply:
        return self.request(
            node, "DELETE", f"/v1/discovery/unregister/{service_name}/{instance_id}"
        )

    def read(self, node: int, service_name: str) -> Reply:
        return self.request(node, "GET", f"/v1/discovery/services/{service_name}")

    def index(self, node: int, service_name: str) -> int:
        return self.nodes[node].registry.service_index(service_name)

    def status_of(self, node: int, service_name: str, instance_id: str) -> str | None:
        found = self.nodes[node].registry.instance_snapshot(service_name, instance_id)
        return None if found is None else found.status.value
