"""py-consul (the maintained Python Consul client) against every server kind.

Its `health.service(name, passing=True, index=...)` blocking loop, the way
a Python service follows a dependency, must see each change once: one new
index per change, carrying that change, and nothing in between. Its
`catalog.services()` and `agent.self()` must work as against a Consul agent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from queue import Empty, Queue

import pytest

from conformance.client import Api, api_for, instance_body
from conformance.common import READ_TOKEN, SECRET, unique_name
from conformance.server_process import ServerProcess
from tests.consumers.consumer_servers import KINDS, consumer_servers

consul = pytest.importorskip("consul", reason="py-consul is not installed")
#: The blocking queries' wait: short, so the follower notices it is told to stop.
WAIT = "2s"


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ServerProcess]]:
    with consumer_servers() as started:
        yield started


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def api(servers: dict[str, ServerProcess], kind: str) -> Iterator[Api]:
    with api_for(servers[kind].url, SECRET) as client:
        yield client


def _client(server: ServerProcess) -> object:
    return consul.Consul(host="127.0.0.1", port=server.port, token=READ_TOKEN)


class Follower:
    """py-consul's blocking loop in a thread: each answer with a new index, queued."""

    def __init__(self, client: object, service: str) -> None:
        self.client = client
        self.service = service
        self.answers: Queue[list[str]] = Queue()
        self.index: str | None = None
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="py-consul-follower")
        self._thread.start()

    def _run(self) -> None:
        health = self.client.health  # type: ignore[attr-defined]
        try:
            while not self._stop.is_set():
                index, nodes = health.service(
                    self.service, passing=True, index=self.index, wait=WAIT
                )
                if index != self.index:
                    self.index = index
                    self.answers.put([node["Service"]["ID"] for node in nodes])
        except BaseException as error:  # reported by `next`
            self.failure = error

    def next(self) -> list[str]:
        try:
            return self.answers.get(timeout=30)
        except Empty:
            raise AssertionError(f"no answer; the loop failed with {self.failure!r}") from None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_a_blocking_health_loop_sees_each_change_once(
    servers: dict[str, ServerProcess], api: Api, kind: str
) -> None:
    service = unique_name("py-consul")
    ttl = {"check": {"type": "ttl"}}
    api.register_ok(instance_body(service, "a", **ttl))
    client = _client(servers[kind])
    follower = Follower(client, service)
    maintenance = f"/v1/discovery/maintenance/{service}/a"
    try:
        assert follower.next() == ["a"]
        steps = [
            (lambda: api.http.put(maintenance, json={"reason": "deploy"}), []),
            (lambda: api.http.delete(maintenance), ["a"]),
            (lambda: api.register(instance_body(service, "b", **ttl)), ["a", "b"]),
            (lambda: api.unregister(service, "a"), ["b"]),
        ]
        for change, expected in steps:
            assert change().status_code == 200
            assert follower.next() == expected
        current, _ = client.health.service(service, passing=True)  # type: ignore[attr-defined]
    finally:
        follower.stop()
    assert follower.failure is None, follower.failure
    assert follower.answers.empty() and follower.index == current, "an answer with no change"


def test_catalog_services_and_agent_self(
    servers: dict[str, ServerProcess], api: Api, kind: str
) -> None:
    service = unique_name("py-consul-catalog")
    api.register_ok(instance_body(service, "a", tags=["web"], check={"type": "ttl"}))
    client = _client(servers[kind])
    index, services = client.catalog.services()  # type: ignore[attr-defined]
    assert int(index) > 0 and services[service] == ["web"]
    _, nodes = client.catalog.service(service, tag="web")  # type: ignore[attr-defined]
    assert [(n["ServiceID"], n["ServicePort"]) for n in nodes] == [("a", 8080)]
    agent = client.agent.self()  # type: ignore[attr-defined]
    assert agent["Config"]["Datacenter"] == "dc1"
