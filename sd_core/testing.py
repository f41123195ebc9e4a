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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .body import as_bytes
from .config import RegistryConfig
from .events import Effect, ProbeFailed, ProbePassed, ProbeResult, RunProbe
from .http_api import BlockingWait, HttpApi, HttpResponse
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
class ProbePlan:
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


def always_healthy(probe: RunProbe) -> ProbeAnswer:
    return True


class ScriptedProbes:
    """How the simulated instances' health endpoints answer: the same script on one
    registry or on a whole cluster."""

    _plan: ProbePlan

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


class SimulatedRegistry(ScriptedProbes):
    """The real registry core and HTTP mapping, driven by a `FakeClock`."""

    def __init__(
        self,
        config: RegistryConfig | None = None,
        *,
        probe: ProbeFunction = always_healthy,
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
        self._plan = ProbePlan(probe)

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
        return probe_outcome(self._plan(probe), probe)


def probe_outcome(answer: ProbeAnswer, probe: RunProbe) -> ProbeResult:
    """A probe function's answer as the result event a driver would report."""
    if isinstance(answer, ProbePassed | ProbeFailed):
        return answer
    if isinstance(answer, tuple):
        status_code, body = answer
        return judge_probe(probe, status_code, body)
    if answer:
        return ProbePassed(probe.service_name, probe.instance_id, probe.generation)
    return ProbeFailed(probe.service_name, probe.instance_id, probe.generation, "simulated")
