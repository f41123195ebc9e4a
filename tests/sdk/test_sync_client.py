"""``SyncServiceDiscoveryClient`` against the fake registry, and against a real one.

The fake-registry tests inject a sleep that moves a fake clock, so the
heartbeat thread runs its rounds without real waiting; the real-registry test
starts the project's registry in a subprocess.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import httpx
import pytest

from service_discovery import (
    NotFoundError,
    RegistryUnavailableError,
    ServiceRegistrationRequest,
    SyncServiceDiscoveryClient,
)

from .conftest import KEY_A
from .fakes import FakeRegistry, error
from .registry_process import SECRET, HealthEndpoint, RegistryProcess, eventually, running_registry

HEARTBEAT = "/v1/discovery/heartbeat"
REGISTER = "/v1/discovery/register"


class SyncClock:
    """A fake clock for the sync client: ``sleep`` records and jumps, never waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.slept = threading.Condition()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.slept:
            self.sleeps.append(seconds)
            self.now += seconds
            self.slept.notify_all()
        time.sleep(0)  # let other threads run

    def wait_for(self, condition: Callable[[], bool]) -> None:
        with self.slept:
            assert self.slept.wait_for(condition, timeout=10), "condition never became true"


@pytest.fixture
def sync_clock() -> SyncClock:
    return SyncClock()


@pytest.fixture
def make_sync(registry: FakeRegistry, sync_clock: SyncClock) -> Callable[..., Any]:
    def make(**overrides: Any) -> SyncServiceDiscoveryClient:
        options: dict[str, Any] = {
            "transport": registry.sync_transport(),
            "sleep": sync_clock.sleep,
            "clock": sync_clock,
        }
        options.update(overrides)
        return SyncServiceDiscoveryClient("http://registry.test", registry.secret, **options)

    return make


MakeSync = Callable[..., SyncServiceDiscoveryClient]
SyncRegistered = Callable[[], AbstractContextManager[SyncServiceDiscoveryClient]]


@pytest.fixture
def sync_registered(make_sync: MakeSync, request_a: ServiceRegistrationRequest) -> SyncRegistered:
    """A sync client, opened and with `request_a` registered (the async `registered`'s twin)."""

    @contextmanager
    def open_registered() -> Iterator[SyncServiceDiscoveryClient]:
        with make_sync() as client:
            client.register_service(request_a)
            yield client

    return open_registered


def test_register_discover_unregister(
    make_sync: MakeSync, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    with make_sync() as client:
        assert client.register_service(request_a) is True
        assert [i.instance_id for i in client.discover_services("my-service")] == ["instance-1"]
        assert client.pick("my-service").instance_id == "instance-1"
        assert client.unregister_service() is True
        assert client.discover_services("my-service") == []
        with pytest.raises(NotFoundError):
            client.unregister_service()


def test_cache_and_stale_if_error(
    sync_registered: SyncRegistered, registry: FakeRegistry, sync_clock: SyncClock
) -> None:
    with sync_registered() as client:
        first = client.discover_services("my-service")
        client.discover_services("my-service")
        assert len(registry.paths("GET")) == 1  # cached
        registry.down = True
        sync_clock.now += 10
        stale = client.discover_services("my-service")
        assert stale.stale and list(stale) == list(first)
        with pytest.raises(RegistryUnavailableError):
            client.discover_services("other-service")


def test_failover_to_the_second_url(registry: FakeRegistry) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "down.test":
            raise httpx.ConnectError("refused", request=request)
        return registry.answer(request)

    registry.add("svc", "a")
    with SyncServiceDiscoveryClient(
        "http://down.test,http://up.test", registry.secret, transport=httpx.MockTransport(handler)
    ) as client:
        assert [i.instance_id for i in client.discover_services("svc")] == ["a"]
        assert client.url == "http://up.test"


def test_maintenance_and_filters(
    make_sync: MakeSync, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    with make_sync(cache=False) as client:
        client.register_service(request_a)
        client.set_maintenance(reason="deploy")
        assert client.discover_services("my-service") == []
        client.clear_maintenance()
        found = client.discover_services("my-service", metadata={"version": "1.0.0"})
        assert [i.instance_id for i in found] == ["instance-1"]
        assert client.discover_services("my-service", metadata={"version": "9"}) == []


def test_heartbeat_thread_beats_and_re_registers_on_404(
    sync_registered: SyncRegistered, registry: FakeRegistry, sync_clock: SyncClock
) -> None:
    with sync_registered() as client:
        client.start_heartbeat(interval_seconds=30)
        assert client.heartbeat_running
        sync_clock.wait_for(lambda: registry.paths("POST").count(HEARTBEAT) >= 2)
        registry.restart()  # forgets the instance: the next heartbeat is a 404
        sync_clock.wait_for(lambda: KEY_A in registry.instances)
        client.stop_heartbeat()
        assert not client.heartbeat_running
    posts = registry.paths("POST")
    assert posts[0] == REGISTER and posts.count(REGISTER) >= 2
    assert 30 in sync_clock.sleeps


def test_heartbeat_thread_backs_off_on_errors(
    sync_registered: SyncRegistered, registry: FakeRegistry, sync_clock: SyncClock
) -> None:
    with sync_registered() as client:
        registry.canned.extend(error(500, "internal_error", "boom") for _ in range(3))
        client.start_heartbeat(interval_seconds=60)
        sync_clock.wait_for(lambda: len(sync_clock.sleeps) >= 5)
        client.stop_heartbeat()
    # One interval, then three backoffs shorter than the interval, then the interval again.
    assert sync_clock.sleeps[0] == 60
    assert all(s < 60 for s in sync_clock.sleeps[1:4])
    assert sync_clock.sleeps[4] == 60


def test_registered_context_manager_drains_and_unregisters(
    make_sync: MakeSync,
    registry: FakeRegistry,
    sync_clock: SyncClock,
    request_a: ServiceRegistrationRequest,
) -> None:
    with make_sync() as client:
        with client.registered(request_a, interval_seconds=1000, drain_seconds=12) as inside:
            assert inside is client and client.heartbeat_running
            assert KEY_A in registry.instances
        assert not client.heartbeat_running
    assert KEY_A not in registry.instances
    assert 12 in sync_clock.sleeps
    assert registry.paths("PUT") == ["/v1/discovery/maintenance/my-service/instance-1"]


def test_registered_unregisters_when_the_body_raises(
    make_sync: MakeSync, registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    with make_sync() as client, pytest.raises(ZeroDivisionError), client.registered(request_a):
        1 / 0  # noqa: B018
    assert KEY_A not in registry.instances


def test_stop_heartbeat_interrupts_a_real_wait(
    registry: FakeRegistry, request_a: ServiceRegistrationRequest
) -> None:
    """Without an injected sleep the thread waits on an event that stop cuts short."""
    with SyncServiceDiscoveryClient(
        "http://r", registry.secret, transport=registry.sync_transport()
    ) as client:
        client.register_service(request_a)
        client.start_heartbeat(interval_seconds=3600)
        client.stop_heartbeat()  # returns without waiting the hour
        assert not client.heartbeat_running


# -- a real registry ----------------------------------------------------------------

_names = itertools.count()


@pytest.fixture(scope="module")
def real_registry() -> Iterator[RegistryProcess]:
    with running_registry("quart") as server:
        yield server


def test_sync_client_against_a_real_registry(real_registry: RegistryProcess) -> None:
    """Register, discover, keep alive past the TTL with the thread, unregister."""
    endpoint = HealthEndpoint()
    name = f"sync-{next(_names)}"
    try:
        with SyncServiceDiscoveryClient(real_registry.url, SECRET, cache=False) as client:
            request = ServiceRegistrationRequest(**endpoint.instance(name, "i1"))
            with client.registered(request, interval_seconds=0.3):
                eventually(lambda: len(client.discover_services(name)) == 1, "healthy", 5)
                # Outlive the 2 s TTL: only the heartbeat thread keeps it registered.
                time.sleep(real_registry.ttl * 1.5)
                assert [i.instance_id for i in client.discover_services(name, False)] == ["i1"]
            assert client.discover_services(name, healthy_only=False) == []
    finally:
        endpoint.close()


def test_sync_maintenance_against_a_real_registry(real_registry: RegistryProcess) -> None:
    endpoint = HealthEndpoint()
    name = f"sync-m-{next(_names)}"
    try:
        with SyncServiceDiscoveryClient(real_registry.url, SECRET, cache=False) as client:
            client.register_service(**endpoint.instance(name, "i1"))
            try:
                eventually(lambda: len(client.discover_services(name)) == 1, "healthy", 5)
                client.set_maintenance(reason="deploy")
                assert client.discover_services(name) == []
                (listed,) = client.discover_services(name, healthy_only=False)
                assert listed.maintenance is not None and listed.maintenance.reason == "deploy"
                client.clear_maintenance()
                eventually(lambda: len(client.discover_services(name)) == 1, "back", 5)
            finally:
                client.unregister_service()
    finally:
        endpoint.close()
