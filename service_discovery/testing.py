"""Test a service's discovery logic against an in-process registry on a fake clock.

`InProcessRegistry` runs the registry's real core and the same HTTP mapping
both servers use, behind an httpx transport: no server, no port, no real
waiting. Its clock moves only when your test (or the client's injected
`sleep`) moves it, and every probe and expiry happens at the exact simulated
second it would in production::

    registry = InProcessRegistry()
    async with registry.client() as client:
        await client.register_service(service_name="game", instance_id="g1",
                                      host="10.0.0.1", port=8080)
        registry.advance(30)                      # probed once: healthy
        assert [i.instance_id for i in await client.discover_services("game")] == ["g1"]
        registry.advance(181)                     # no heartbeat: expired
        assert await client.discover_services("game", healthy_only=False) == []
"""

from __future__ import annotations

from typing import Any

import anyio.lowlevel
import httpx

from sd_core import RegistryConfig
from sd_core.body import as_bytes
from sd_core.testing import DEFAULT_SECRET, FakeClock, ProbeFunction, SimulatedRegistry

from .client import ServiceDiscoveryClient

__all__ = ["InProcessRegistry", "RegistryTransport"]

REGISTRY_URL = "http://registry.test"


def _always_healthy(probe: object) -> bool:
    return True


class RegistryTransport(httpx.AsyncBaseTransport):
    """httpx transport answering every request from an `InProcessRegistry`."""

    def __init__(self, registry: InProcessRegistry) -> None:
        self._registry = registry

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await anyio.lowlevel.checkpoint()  # a real request would yield; so do we
        body = await request.aread()
        response = self._registry.simulation.send(
            request.method,
            request.url.path,
            query=request.url.query,
            authorization=request.headers.get("authorization"),
            content_type=request.headers.get("content-type"),
            body=body,
        )
        return httpx.Response(
            response.status,
            headers=list(response.headers),
            content=as_bytes(response.body),
            request=request,
        )


class InProcessRegistry:
    """The registry, in this process, on a fake clock shared with the clients it makes."""

    def __init__(
        self,
        config: RegistryConfig | None = None,
        *,
        secret: str = DEFAULT_SECRET,
        probe: ProbeFunction = _always_healthy,
    ) -> None:
        self._config = config or RegistryConfig()
        self._secret = secret
        self._probe = probe
        self.clock = FakeClock()
        self.simulation = self._fresh()
        self.transport = RegistryTransport(self)

    def _fresh(self) -> SimulatedRegistry:
        return SimulatedRegistry(
            self._config, probe=self._probe, clock=self.clock, secret=self._secret
        )

    def client(self, **options: Any) -> ServiceDiscoveryClient:
        """A client wired to this registry; its sleeps move the fake clock on."""
        options.setdefault("transport", self.transport)
        options.setdefault("sleep", self.sleep)
        options.setdefault("clock", self.now)
        options.setdefault("service_discovery_url", REGISTRY_URL)
        options.setdefault("service_discovery_secret", self._secret)
        return ServiceDiscoveryClient(**options)

    def now(self) -> float:
        return self.clock.now

    def advance(self, seconds: float) -> None:
        """Move time on; probes run and instances expire on the way, on schedule."""
        self.simulation.advance(seconds)

    async def sleep(self, seconds: float) -> None:
        """A client's `sleep`: instead of waiting, time jumps by `seconds`."""
        self.simulation.advance(seconds)
        await anyio.lowlevel.checkpoint()

    def restart(self) -> None:
        """Simulate a registry restart: same settings and clock, every instance gone."""
        self.simulation = self._fresh()

    def set_probe(self, service_name: str, instance_id: str, *, healthy: bool) -> None:
        """Make one instance's health endpoint pass or fail from now on."""
        self.simulation.set_probe(service_name, instance_id, healthy=healthy)
