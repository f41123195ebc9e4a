"""A driver for the core in tests: real `Registry` and `HttpApi`, a hand-moved clock.

Unlike `sd_core.testing.SimulatedRegistry`, probes handed out by the core are
not answered automatically: they wait in `Core.pending` until a test answers
them, so hysteresis, generations and stale results can be scripted exactly.
`advance_to` moves time like a real driver: it wakes at every deadline the
core names on the way and records when it woke.

First-probe retries are off here unless a test turns them on
(`first_probe_retry`): a test that scripts streaks answers each probe the
core hands out, and retries would put extra ones between them. The tests of
retries (tests/core/test_core_first_probes.py) turn them on.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

from sd_core import (
    BlockingWait,
    Effect,
    HttpApi,
    HttpRequest,
    HttpResponse,
    ProbeFailed,
    ProbePassed,
    Registry,
    RegistryConfig,
    RunProbe,
)
from sd_core.body import as_bytes

SECRET = "rw-token-3f9c"
READ_TOKEN = "ro-token-77ab"
AUTH = f"Bearer {SECRET}"
READ_AUTH = f"Bearer {READ_TOKEN}"
JSON_TYPE = "application/json"
#: 2024-01-15T10:30:00Z as Unix time: the core's monotonic 0.0 is shown as this.
WALL_OFFSET = 1_705_314_600.0
START = 1000.0

REGISTER = "/v1/discovery/register"
HEARTBEAT = "/v1/discovery/heartbeat"
SERVICES = "/v1/discovery/services"
PROMETHEUS = "/v1/discovery/prometheus"


def iso(monotonic: float, wall_offset: float = WALL_OFFSET) -> str:
    """The timestamp the API must show for a core time (independent of sd_core.render)."""
    moment = datetime.fromtimestamp(monotonic + wall_offset, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def register_body(
    service: str = "game-service",
    instance: str = "game-1",
    **fields: Any,
) -> dict[str, Any]:
    """A valid registration body; `fields` override or add keys (None values are dropped)."""
    body: dict[str, Any] = {
        "service_name": service,
        "instance_id": instance,
        "host": "10.0.0.1",
        "port": 8080,
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes

    @property
    def index(self) -> int | None:
        value = self.headers.get("x-discovery-index")
        return None if value is None else int(value)

    @property
    def error(self) -> str | None:
        if isinstance(self.body, dict):
            error = self.body.get("error")
            return error if isinstance(error, str) else None
        return None

    @property
    def detail_fields(self) -> list[str]:
        if not isinstance(self.body, dict):
            return []
        return [d["field"] for d in self.body.get("details", [])]


def to_reply(response: HttpResponse) -> Reply:
    headers = {k.lower(): v for k, v in response.headers}
    raw = as_bytes(response.body)
    return Reply(response.status, headers, json.loads(raw), raw)


def probe_result(
    probe: RunProbe, passed: bool, load: float | None = None
) -> ProbePassed | ProbeFailed:
    """What a driver reports for `probe`: passed (with the load it read, if any) or failed."""
    if passed:
        return ProbePassed(probe.service_name, probe.instance_id, probe.generation, load)
    return ProbeFailed(probe.service_name, probe.instance_id, probe.generation, "test")


@dataclass(frozen=True)
class Snapshot:
    """Everything a rejected request must leave exactly as it was."""

    services_body: bytes
    targets_body: bytes
    global_index: int
    service_indexes: tuple[tuple[str, int], ...]
    instance_count: int
    status_counts: tuple[tuple[str, int], ...]
    stats: tuple[tuple[str, int], ...]
    next_deadline: float | None
    self_preservation: tuple[bool, str | None]
    effects: tuple[Effect, ...]


class RequestOptions(TypedDict, total=False):
    """What a test request changes from the default one: no query, the write token, JSON."""

    query: str | bytes
    auth: str | None
    content_type: str | None
    may_block: bool


class Core:
    """One registry + HTTP mapping driven by a hand-moved clock."""

    def __init__(
        self,
        config: RegistryConfig | None = None,
        *,
        start: float = START,
        wall_offset: float = WALL_OFFSET,
        read_token: str | None = READ_TOKEN,
    ) -> None:
        self.config = config or with_config()
        self.now = start
        self.registry = Registry(self.config, now=start, wall_offset=wall_offset)
        self.api = HttpApi(
            self.registry,
            secret=SECRET,
            read_token=read_token,
            frontend="test",
            version="0.0.0",
        )
        self.effects: list[Effect] = []
        self.pending: list[RunProbe] = []
        self.probes_issued: list[tuple[float, RunProbe]] = []
        self.wakes: list[float] = []

    # ------------------------------------------------------------ HTTP

    def handle(
        self, method: str, path: str, body: bytes = b"", **options: Unpack[RequestOptions]
    ) -> HttpResponse | BlockingWait:
        """One request through the HTTP mapping at `now` (it may park: a `BlockingWait`)."""
        query = options.get("query", b"")
        raw_query = query.encode() if isinstance(query, str) else query
        auth = options.get("auth", AUTH)
        content_type = options.get("content_type", JSON_TYPE)
        result = self.api.handle(
            HttpRequest(method, path, raw_query, auth, content_type, body),
            self.now,
            may_block=options.get("may_block", True),
        )
        self.drain()
        return result

    def send(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        body: bytes | None = None,
        **options: Unpack[RequestOptions],
    ) -> Reply:
        """`handle` with `json_body` encoded (or a raw `body`), not parking unless asked, and
        the answer decoded."""
        if body is None:
            body = b"" if json_body is None else json.dumps(json_body).encode()
        options.setdefault("may_block", False)
        result = self.handle(method, path, body, **options)
        assert isinstance(result, HttpResponse), result
        return to_reply(result)

    def register(
        self, service: str = "game-service", instance: str = "game-1", **fields: Any
    ) -> Reply:
        reply = self.send("POST", REGISTER, register_body(service, instance, **fields))
        assert reply.status == 200, reply.body
        return reply

    def heartbeat(
        self, service: str = "game-service", instance: str = "game-1", load: float | None = None
    ) -> Reply:
        body: dict[str, Any] = {"service_name": service, "instance_id": instance}
        if load is not None:
            body["load_percentage"] = load
        return self.send("POST", HEARTBEAT, body)

    def unregister(self, service: str = "game-service", instance: str = "game-1") -> Reply:
        return self.send("DELETE", f"/v1/discovery/unregister/{service}/{instance}")

    def get(self, path: str, *, query: str = "") -> Reply:
        return self.send("GET", path, query=query)

    # ----------------------------------------------------------- reads

    def services(self) -> dict[str, list[dict[str, Any]]]:
        parsed: dict[str, list[dict[str, Any]]] = json.loads(
            as_bytes(self.registry.views.all_services())
        )["services"]
        return parsed

    def instance(self, service: str = "game-service", instance: str = "game-1") -> dict[str, Any]:
        for item in self.services().get(service, []):
            if item["instance_id"] == instance:
                return item
        raise AssertionError(f"{service}:{instance} is not listed")

    def present(self, service: str = "game-service", instance: str = "game-1") -> bool:
        return any(i["instance_id"] == instance for i in self.services().get(service, []))

    def status(self, service: str = "game-service", instance: str = "game-1") -> str:
        status: str = self.instance(service, instance)["status"]
        return status

    def targets(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = json.loads(as_bytes(self.registry.views.all_targets()))
        return groups

    # ------------------------------------------------------------ time

    def drain(self) -> list[Effect]:
        effects = self.registry.drain_effects()
        for effect in effects:
            if isinstance(effect, RunProbe):
                self.pending.append(effect)
                self.probes_issued.append((self.now, effect))
        self.effects.extend(effects)
        return effects

    def advance_to(self, target: float) -> None:
        """Wake at every deadline up to `target` (as a driver does), then at `target`."""
        assert target >= self.now
        while True:
            deadline = self.registry.next_deadline()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.registry.on_timer(self.now)
            self.wakes.append(self.now)
            self.drain()
        if target > self.now:
            self.now = target
            self.registry.on_timer(target)
            self.wakes.append(target)
            self.drain()

    def advance(self, seconds: float) -> None:
        self.advance_to(self.now + seconds)

    # ---------------------------------------------------------- probes

    def take_probe(self, service: str = "game-service", instance: str = "game-1") -> RunProbe:
        """The oldest outstanding probe of an instance, waiting (on the clock) until one is due."""
        limit = self.now + 2 * self.config.health_check_interval + 1
        while True:
            for n, probe in enumerate(self.pending):
                if (probe.service_name, probe.instance_id) == (service, instance):
                    del self.pending[n]
                    return probe
            deadline = self.registry.next_deadline()
            assert deadline is not None and deadline <= limit, "no probe came"
            self.advance_to(max(self.now, deadline))

    def answer(self, probe: RunProbe, passed: bool, *, load: float | None = None) -> bool:
        applied = self.registry.record_probe(probe_result(probe, passed, load), self.now)
        self.drain()
        return applied

    def probe(
        self,
        service: str = "game-service",
        instance: str = "game-1",
        *,
        passed: bool,
        load: float | None = None,
    ) -> bool:
        """Wait for the instance's next probe and answer it."""
        return self.answer(self.take_probe(service, instance), passed, load=load)

    # -------------------------------------------------------- snapshot

    def snapshot(self, *names: str) -> Snapshot:
        registry = self.registry
        return Snapshot(
            registry.views.all_services(),
            registry.views.all_targets(),
            registry.global_index,
            tuple((name, registry.service_index(name)) for name in names),
            registry.instance_count,
            tuple(sorted(registry.status_counts().items())),
            tuple(sorted(dataclasses.asdict(registry.stats).items())),
            registry.next_deadline(),
            registry.self_preservation,
            tuple(registry.drain_effects()),
        )


def with_config(**overrides: Any) -> RegistryConfig:
    """A config with `overrides`; first-probe retries off unless they say otherwise."""
    return RegistryConfig(**{"first_probe_retry": 0.0, **overrides})
