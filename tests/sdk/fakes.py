"""Test doubles for the SDK's unit tests: a scriptable in-memory registry and a fake clock.

The fake registry speaks the HTTP contract of docs/api.md closely enough for
the client (auth, error bodies, indexes, blocking queries) and lets a test
break it on purpose: take it down, restart it, or queue canned failures.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from service_discovery import ServiceDiscoveryClient, ServiceInstance

SECRET = "test-secret"
READ_TOKEN = "read-token"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
    return httpx.Response(
        status, json={"success": False, "error": code, "message": message, **extra}
    )


@dataclass
class FakeRegistry:
    """An in-memory registry behind an ``httpx.MockTransport``."""

    secret: str = SECRET
    initial_status: str = "healthy"
    instances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    index: int = 1
    service_index: dict[str, int] = field(default_factory=dict)
    down: bool = False
    canned: deque[httpx.Response | Exception] = field(default_factory=deque)
    log: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    send_index: bool = True
    queries: list[str] = field(default_factory=list)
    maintenance_route: bool = True  # False: an older registry without it

    def __post_init__(self) -> None:
        self._changed: anyio.Event | None = None

    # -- scripting ------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self, **options: Any) -> ServiceDiscoveryClient:
        """A client of this fake alone (its transport, its secret); ``options`` go to the
        client as they are, so a test names only what it changes (``sleep``, ``cache``)."""
        return ServiceDiscoveryClient(
            "http://r", self.secret, transport=self.transport(), **options
        )

    def restart(self) -> None:
        """Forget everything, indexes included, as a restarted registry does."""
        self.instances.clear()
        self.service_index.clear()
        self.index = 1
        self._wake()

    def set_status(self, service: str, instance: str, status: str) -> None:
        self.instances[(service, instance)]["status"] = status
        self._bump(service)

    def set_load(self, service: str, instance: str, load: float) -> None:
        self.instances[(service, instance)]["load_percentage"] = load
        self._bump(service)

    def add(
        self, service: str, instance: str, *, load: float = 0.0, status: str = "healthy"
    ) -> None:
        self._store(
            {"service_name": service, "instance_id": instance, "host": "127.0.0.1", "port": 9000},
        )
        self.instances[(service, instance)]["load_percentage"] = load
        self.instances[(service, instance)]["status"] = status

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p in self.log if method is None or m == method]

    # -- internals ------------------------------------------------------------

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _bump(self, service: str) -> None:
        self.index += 1
        self.service_index[service] = self.index
        self._wake()

    def _store(self, body: dict[str, Any]) -> None:
        key = (body["service_name"], body["instance_id"])
        now = _now()
        old = self.instances.get(key)
        self.instances[key] = {
            "service_name": body["service_name"],
            "instance_id": body["instance_id"],
            "host": body["host"],
            "port": body["port"],
            "health_endpoint": body.get("health_endpoint", "/health"),
            "status": old["status"] if old else self.initial_status,
            "last_health_check": None,
            "last_heartbeat": now,
            "load_percentage": body.get("load_percentage", old["load_percentage"] if old else 0.0),
            "metadata": body.get("metadata", {}),
            "registered_at": old["registered_at"] if old else now,
            "check": body.get("check", {"type": "http"}),
            "maintenance": old["maintenance"] if old else None,
        }
        self._bump(body["service_name"])

    def _listing(
        self, service: str, healthy: bool, params: httpx.QueryParams | None = None
    ) -> list[dict[str, Any]]:
        items = [v for (s, _), v in sorted(self.instances.items()) if s == service]
        if healthy:
            items = [v for v in items if v["status"] == "healthy" and not v["maintenance"]]
        if params is not None:
            statuses = params.get_list("status")
            if statuses:
                items = [v for v in items if v["status"] in statuses]
            for key, value in params.multi_items():
                if key.startswith("meta."):
                    items = [v for v in items if v["metadata"].get(key[5:]) == value]
        return items

    def _with_index(self, response: httpx.Response, index: int) -> httpx.Response:
        if self.send_index:
            response.headers["X-Discovery-Index"] = str(index)
        return response

    def sync_transport(self) -> httpx.MockTransport:
        """For the synchronous client (no blocking queries)."""
        return httpx.MockTransport(self.answer)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        await anyio.lowlevel.checkpoint()
        parts = request.url.path.strip("/").split("/")
        listing = request.method == "GET" and parts[:3] == ["v1", "discovery", "services"]
        if listing and not self.down and not self.canned:
            await self._block(request, parts[3] if len(parts) > 3 else None)
        return self.answer(request)

    def answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.log.append((request.method, path))
        self.queries.append(str(request.url.query, "ascii"))
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.canned:
            item = self.canned.popleft()
            if isinstance(item, Exception):
                raise item
            return item
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {self.secret}":
            if request.method == "GET" and auth == f"Bearer {READ_TOKEN}":
                pass
            elif auth == f"Bearer {READ_TOKEN}":
                return error(403, "forbidden", "The read-only token cannot write")
            else:
                resp = error(401, "unauthorized", "Missing or invalid bearer token")
                resp.headers["WWW-Authenticate"] = "Bearer"
                return resp
        parts = path.strip("/").split("/")
        if request.method == "POST" and path == "/v1/discovery/register":
            body = json.loads(request.content)
            self.bodies.append(body)
            if not isinstance(body.get("port"), int) or not 1 <= body["port"] <= 65535:
                return error(
                    422,
                    "validation_error",
                    "Request validation failed",
                    details=[{"field": "port", "message": "must be an integer 1-65535"}],
                )
            self._store(body)
            name = f"{body['service_name']}:{body['instance_id']}"
            return httpx.Response(
                200, json={"success": True, "message": f"Service {name} registered successfully"}
            )
        if request.method == "POST" and path == "/v1/discovery/heartbeat":
            body = json.loads(request.content)
            self.bodies.append(body)
            key = (body["service_name"], body["instance_id"])
            if key not in self.instances:
                return error(
                    404, "instance_not_found", f"Instance {key[0]}:{key[1]} is not registered"
                )
            self.instances[key]["last_heartbeat"] = _now()
            if "status" in body:
                self.set_status(key[0], key[1], body["status"])
            return httpx.Response(
                200, json={"success": True, "message": "Heartbeat updated successfully"}
            )
        if request.method == "DELETE" and parts[:3] == ["v1", "discovery", "unregister"]:
            key = (parts[3], parts[4])
            if key not in self.instances:
                return error(
                    404, "instance_not_found", f"Instance {key[0]}:{key[1]} is not registered"
                )
            del self.instances[key]
            self._bump(key[0])
            return httpx.Response(
                200, json={"success": True, "message": "Service unregistered successfully"}
            )
        if parts[:3] == ["v1", "discovery", "maintenance"] and self.maintenance_route:
            key = (parts[3], parts[4])
            if key not in self.instances:
                return error(
                    404, "instance_not_found", f"Instance {key[0]}:{key[1]} is not registered"
                )
            if request.method == "PUT":
                reason = json.loads(request.content)["reason"]
                self.bodies.append({"reason": reason})
                if self.instances[key]["maintenance"] is None:
                    self.instances[key]["maintenance"] = {"reason": reason, "since": _now()}
            else:
                self.instances[key]["maintenance"] = None
            self._bump(key[0])
            return httpx.Response(200, json={"success": True, "message": "ok"})
        if request.method == "GET" and parts[:3] == ["v1", "discovery", "services"]:
            if len(parts) == 3:
                services: dict[str, list[dict[str, Any]]] = {}
                for (s, _), v in sorted(self.instances.items()):
                    services.setdefault(s, []).append(v)
                return self._with_index(
                    httpx.Response(200, json={"services": services}), self.index
                )
            service = parts[3]
            index = self.service_index.get(service, 1)
            healthy = len(parts) == 5 and parts[4] == "healthy"
            if healthy:
                listing = self._listing(service, True, request.url.params)
                body = {"service_name": service, "healthy_instances": listing}
                return self._with_index(httpx.Response(200, json=body), index)
            if not any(s == service for s, _ in self.instances):
                resp = error(404, "service_not_found", f"Service {service} is not registered")
                return self._with_index(resp, index)
            listing = self._listing(service, False, request.url.params)
            body = {"service_name": service, "instances": listing}
            return self._with_index(httpx.Response(200, json=body), index)
        return error(404, "not_found", "Not found")

    def _index_of(self, service: str | None) -> int:
        """A service's index, or the global one (`None`: the all-services listing)."""
        return self.index if service is None else self.service_index.get(service, 1)

    async def _block(self, request: httpx.Request, service: str | None) -> None:
        raw_index = request.url.params.get("index")
        if raw_index is None:
            return
        wait_ms = int(request.url.params.get("wait", "60000ms").removesuffix("ms"))
        with anyio.move_on_after(wait_ms / 1000):
            # As the registry does: block only while the client is up to date;
            # an index from the future (the registry restarted) answers at once.
            while self._index_of(service) == int(raw_index) and not self.down:
                if self._changed is None:
                    self._changed = anyio.Event()
                await self._changed.wait()
        if self.down:
            raise httpx.ConnectError("connection reset", request=request)


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps.

    ``sleep`` records each delay, jumps the clock and yields to the loop once;
    after ``stop_after`` sleeps it cancels ``scope`` (set by the test), which
    is how a test ends an endless loop after a fixed number of rounds.
    """

    def __init__(self, stop_after: int | None = None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.stop_after = stop_after
        self.scope: anyio.CancelScope | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds
        if self.stop_after is not None and len(self.sleeps) >= self.stop_after:
            assert self.scope is not None, "set clock.scope before running the loop"
            self.scope.cancel()
        await anyio.lowlevel.checkpoint()


async def run_rounds(
    client: ServiceDiscoveryClient, clock: FakeClock, sleeps: int, interval: float | None = None
) -> None:
    """Run the heartbeat loop until it has slept ``sleeps`` times (so ``sleeps - 1`` rounds
    ran) on ``clock``; ``interval`` None is the client's own default."""
    clock.stop_after = sleeps
    with anyio.CancelScope() as scope:
        clock.scope = scope
        await client.run_heartbeat_loop(interval)
    assert scope.cancelled_caught, "the loop ended by itself"


async def no_wait(seconds: float) -> None:
    """A client ``sleep`` that only yields to the loop: heartbeat rounds run back to back."""
    await anyio.lowlevel.checkpoint()


async def until(condition: Callable[[], bool], *, limit: int = 100_000) -> None:
    """Yield to the event loop (any loop) until ``condition()`` holds; no real waiting."""
    for _ in range(limit):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("condition never became true")


def ids(listed: Iterable[ServiceInstance]) -> list[str]:
    """The instance ids of a list, in its order: what most watch assertions compare."""
    return [i.instance_id for i in listed]
