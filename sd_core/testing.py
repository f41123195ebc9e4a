"""A registry on a fake clock, for your own tests (and ours).

`SimulatedRegistry` wraps the real core and the real HTTP mapping; only time
and the health probes are simulated. Moving the clock with `advance` stops at
every deadline the core asks for on the way, so probes run on schedule and
expiry happens at the exact second it would in production, without waiting::

    sim = SimulatedRegistry()
    for n in (1, 2, 3):
        sim.register("game", f"game-{n}", port=8000 + n)
    sim.advance(30)                       # first probes pass: all healthy
    sim.set_probe("game", "game-2", healthy=False)
    sim.advance(60)                       # two failed probes: game-2 unhealthy
    assert [i["instance_id"] for i in sim.discover("game", healthy_only=True)] == [
        "game-1", "game-3"]
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sd_etcd import MemoryEtcd, MemoryWatch

from .body import as_bytes
from .cluster import CloseWatch, ClusterConfig, ClusterNode, OpenWatch, StoreCall, WriteDone
from .config import RegistryConfig
from .events import Effect, ProbeFailed, ProbePassed, ProbeResult, RunProbe
from .http_api import BlockingWait, HttpApi, HttpRequest, HttpResponse, PendingWrite
from .models import RegisterRequest
from .probe_verdict import judge_probe
from .registry import Registry

DEFAULT_WALL_OFFSET = 1_700_000_000.0
DEFAULT_SECRET = "test-secret"

# What a probe function may return: pass/fail, an HTTP answer to judge by the
# contract's rules, or a ready-made result event.
ProbeAnswer = bool | tuple[int, bytes] | ProbeResult
ProbeFunction = Callable[[RunProbe], ProbeAnswer]


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self.now += seconds
        return self.now


@dataclass
class Reply:
    """An HTTP answer from the simulated registry, body decoded."""

    status: int
    headers: dict[str, str]
    body: Any

    @property
    def index(self) -> int | None:
        value = self.headers.get("x-discovery-index")
        return int(value) if value is not None else None


@dataclass
class _ProbePlan:
    default: ProbeFunction
    overrides: dict[tuple[str, str], ProbeFunction] = field(default_factory=dict)

    def __call__(self, probe: RunProbe) -> ProbeAnswer:
        chosen = self.overrides.get((probe.service_name, probe.instance_id), self.default)
        return chosen(probe)

    def set(
        self,
        service_name: str,
        instance_id: str,
        healthy: bool | None,
        answer: ProbeFunction | None,
    ) -> None:
        if answer is None:
            if healthy is None:
                raise ValueError("give healthy= or answer=")
            verdict = healthy

            def answer(probe: RunProbe) -> ProbeAnswer:
                return verdict

        self.overrides[(service_name, instance_id)] = answer


def _always_healthy(probe: RunProbe) -> ProbeAnswer:
    return True


class _ScriptedProbes:
    """How the simulated instances' health endpoints answer: the same script on one
    registry or on a whole cluster."""

    _plan: _ProbePlan

    def set_probe(
        self,
        service_name: str,
        instance_id: str,
        *,
        healthy: bool | None = None,
        answer: ProbeFunction | None = None,
    ) -> None:
        """Decide how one instance's health endpoint answers from now on."""
        self._plan.set(service_name, instance_id, healthy, answer)


class SimulatedRegistry(_ScriptedProbes):
    """The real registry core and HTTP mapping, driven by a `FakeClock`."""

    def __init__(
        self,
        config: RegistryConfig | None = None,
        *,
        probe: ProbeFunction = _always_healthy,
        clock: FakeClock | None = None,
        secret: str = DEFAULT_SECRET,
        read_token: str | None = None,
        wall_offset: float = DEFAULT_WALL_OFFSET,
    ) -> None:
        self.clock = clock or FakeClock()
        self.config = config or RegistryConfig()
        self.registry = Registry(self.config, now=self.clock.now, wall_offset=wall_offset)
        self.api = HttpApi(
            self.registry,
            secret=secret,
            read_token=read_token,
            frontend="simulated",
            version="test",
        )
        self.secret = secret
        self.effects: list[Effect] = []
        self.probes_run: list[RunProbe] = []
        self._plan = _ProbePlan(probe)

    # --------------------------------------------------------- scripting

    def register(
        self,
        service_name: str,
        instance_id: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        health_endpoint: str = "/health",
        metadata: Mapping[str, str] | None = None,
        load_percentage: float | None = None,
        tags: Sequence[str] = (),
    ) -> bool:
        """Register through the core's validation; True when the instance is new."""
        request = RegisterRequest(
            service_name=service_name,
            instance_id=instance_id,
            host=host,
            port=port,
            health_endpoint=health_endpoint,
            metadata=dict(metadata or {}),
            tags=tuple(tags),
            load_percentage=load_percentage,
        )
        created = self.registry.register(request, self.clock.now)
        self._settle()
        return created

    def heartbeat(
        self, service_name: str, instance_id: str, load_percentage: float | None = None
    ) -> None:
        self.registry.heartbeat(service_name, instance_id, load_percentage, self.clock.now)
        self._settle()

    def unregister(self, service_name: str, instance_id: str) -> None:
        self.registry.unregister(service_name, instance_id, self.clock.now)
        self._settle()

    def advance(self, seconds: float) -> None:
        """Move time on, stopping at every deadline the core names on the way."""
        target = self.clock.now + seconds
        if seconds < 0:
            raise ValueError("time only moves forward")
        while True:
            deadline = self.registry.next_deadline()
            if deadline is None or deadline > target:
                break
            self.clock.now = max(self.clock.now, deadline)
            self.registry.on_timer(self.clock.now)
            self._settle()
        self.clock.now = target
        self.registry.on_timer(target)
        self._settle()

    # ------------------------------------------------------------ reading

    def send(
        self,
        method: str,
        path: str,
        *,
        query: bytes = b"",
        authorization: str | None = None,
        content_type: str | None = None,
        body: bytes = b"",
    ) -> HttpResponse:
        """One raw request through the shared HTTP mapping, exactly as a frontend makes it.

        A blocking query with nothing to wake it jumps the clock to the end of
        its wait (trio's autojump clock does the same), then answers.
        """
        routed = self.api.head(method, path, query, authorization, content_type)
        if len(body) > routed.body_limit:
            result: HttpResponse | BlockingWait = self.api.too_large(routed)
        else:
            result = self.api.answer(routed, body, self.clock.now)
        if isinstance(result, BlockingWait):
            self.advance(result.timeout)
            result = self.api.answer(routed, body, self.clock.now, may_block=False)
            assert isinstance(result, HttpResponse)
        self._settle()
        return result

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        query: str = "",
        token: str | None = "default",
        content_type: str | None = "application/json",
    ) -> Reply:
        """`send` with conveniences: a JSON body, the secret by default, a decoded reply."""
        if body is None:
            body = b"" if json_body is None else json.dumps(json_body).encode()
        secret = self.secret if token == "default" else token
        result = self.send(
            method,
            path,
            query=query.encode(),
            authorization=None if secret is None else f"Bearer {secret}",
            content_type=content_type,
            body=body,
        )
        decoded = json.loads(as_bytes(result.body)) if result.body else None
        return Reply(result.status, {k.lower(): v for k, v in result.headers}, decoded)

    def discover(self, service_name: str, *, healthy_only: bool = False) -> list[dict[str, Any]]:
        """The instances a client would see (an unknown service has none)."""
        if healthy_only:
            reply = self.request("GET", f"/v1/discovery/services/{service_name}/healthy")
            instances: list[dict[str, Any]] = reply.body["healthy_instances"]
            return instances
        reply = self.request("GET", f"/v1/discovery/services/{service_name}")
        if reply.status == 404:
            return []
        found: list[dict[str, Any]] = reply.body["instances"]
        return found

    def status_of(self, service_name: str, instance_id: str) -> str | None:
        instance = self.registry.instance_snapshot(service_name, instance_id)
        return None if instance is None else instance.status.value

    # ----------------------------------------------------------- internal

    def _settle(self) -> None:
        """Drain effects, running every requested probe at once through the plan."""
        while True:
            effects = self.registry.drain_effects()
            if not effects:
                return
            self.effects.extend(effects)
            for effect in effects:
                if isinstance(effect, RunProbe):
                    self.probes_run.append(effect)
                    self.registry.record_probe(self._result(effect), self.clock.now)

    def _result(self, probe: RunProbe) -> ProbeResult:
        return _outcome(self._plan(probe), probe)


def _outcome(answer: ProbeAnswer, probe: RunProbe) -> ProbeResult:
    """A probe function's answer as the result event a driver would report."""
    if isinstance(answer, ProbePassed | ProbeFailed):
        return answer
    if isinstance(answer, tuple):
        status_code, body = answer
        return judge_probe(probe, status_code, body)
    if answer:
        return ProbePassed(probe.service_name, probe.instance_id, probe.generation)
    return ProbeFailed(probe.service_name, probe.instance_id, probe.generation, "simulated")


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


class SimulatedCluster(_ScriptedProbes):
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
        probe: ProbeFunction = _always_healthy,
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
        self._plan = _ProbePlan(probe)
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
                node.probe_result(_outcome(self._plan(effect), effect), now)
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
