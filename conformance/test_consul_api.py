"""The Consul-compatible reads (docs/integrations.md) on every server kind.

Black-box: the fields consumers read, the index shared with our own reads, the
three ways a Consul client sends its token, a blocking health query woken by a
change, and Consul's writes refused with a 405 pointing at our register.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from conformance.client import Api, assert_error, index_of, instance_body, make_client
from conformance.common import READ_TOKEN
from conformance.fixture_types import Names
from conformance.server_process import ServerProcess


def _ttl(api: Api, service: str, instance: str, **fields: object) -> None:
    """A ttl-checked instance, reported healthy: healthy without a probe."""
    api.register_ok(instance_body(service, instance, check={"type": "ttl"}, **fields))
    api.heartbeat_ok(service, instance, status="healthy")


def test_health_and_catalog_show_an_instance_as_consul_does(api: Api, unique: Names) -> None:
    service = unique("consul")
    _ttl(api, service, "a", tags=["web", "v1"], metadata={"zone": "eu"})
    api.register_ok(instance_body(service, "b"))  # probed, never passing
    health = api.http.get(f"/v1/health/service/{service}")
    assert health.status_code == 200, health.text
    first = health.json()[0]
    assert first["Node"]["Address"] == "127.0.0.1" and first["Node"]["Datacenter"] == "dc1"
    assert first["Service"]["ID"] == "a" and first["Service"]["Port"] == 8080
    assert first["Service"]["Tags"] == ["web", "v1"] and first["Service"]["Meta"] == {"zone": "eu"}
    assert [c["Status"] for c in first["Checks"]] == ["passing"]
    passing = api.http.get(f"/v1/health/service/{service}", params={"passing": "1"})
    assert [e["Service"]["ID"] for e in passing.json()] == ["a"]
    catalog = api.http.get(f"/v1/catalog/service/{service}", params={"tag": "web"}).json()
    assert [(e["ServiceID"], e["ServiceAddress"]) for e in catalog] == [("a", "127.0.0.1")]
    assert api.http.get("/v1/catalog/services").json()[service] == ["web", "v1"]
    ours = index_of(api.service(service))
    assert int(health.headers["x-consul-index"]) == ours == index_of(health)
    assert health.headers["x-consul-knownleader"] == "true"
    assert health.headers["x-consul-lastcontact"].isdigit()


def test_a_drained_instance_fails_passing_with_a_maintenance_check(api: Api, unique: Names) -> None:
    service = unique("consul-drain")
    _ttl(api, service, "a")
    api.http.put(f"/v1/discovery/maintenance/{service}/a", json={"reason": "deploy"})
    [entry] = api.http.get(f"/v1/health/service/{service}").json()
    drained = entry["Checks"][-1]
    assert drained["CheckID"] == "_service_maintenance:a" and drained["Notes"] == "deploy"
    assert api.http.get(f"/v1/health/service/{service}", params={"passing": ""}).json() == []
    state = api.http.get("/v1/health/state/critical").json()
    assert any(c["CheckID"] == "_service_maintenance:a" for c in state)


def _one_instance(api: Api, unique: Names, prefix: str) -> str:
    """The health path of a new service with one passing instance, `a`."""
    service = unique(prefix)
    _ttl(api, service, "a")
    return f"/v1/health/service/{service}"


def test_a_consul_client_may_send_its_token_three_ways(
    server: ServerProcess, api: Api, unique: Names
) -> None:
    path = _one_instance(api, unique, "consul-token")
    with make_client(server.url) as anonymous:
        assert anonymous.get(path).status_code == 401
        assert anonymous.get(path, headers={"X-Consul-Token": READ_TOKEN}).status_code == 200
        assert anonymous.get(path, params={"token": READ_TOKEN}).status_code == 200
        bearer = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert anonymous.get(path, headers=bearer).status_code == 200
        assert anonymous.get("/v1/agent/self", headers=bearer).json()["Config"]["Datacenter"]


def test_a_blocking_health_query_wakes_on_a_change(
    server: ServerProcess, api: Api, unique: Names
) -> None:
    path = _one_instance(api, unique, "consul-block")
    service = path.rsplit("/", 1)[1]
    index = api.http.get(path).headers["x-consul-index"]

    def held() -> httpx.Response:
        with make_client(server.url, READ_TOKEN, timeout=30.0) as client:
            return client.get(path, params={"index": index, "wait": "20s", "passing": "1"})

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(held)
        api.http.put(f"/v1/discovery/maintenance/{service}/a")
        response = future.result(timeout=30)
    assert response.status_code == 200
    assert int(response.headers["x-consul-index"]) > int(index)
    assert response.json() == []


def test_consul_writes_are_refused_with_a_pointer_to_our_register(api: Api, unique: Names) -> None:
    service = unique("consul-write")
    before = api.snapshot()
    body = {"Name": service, "ID": "x", "Port": 80}
    for path in ("/v1/agent/service/register", "/v1/catalog/register"):
        response = api.http.put(path, json=body)
        assert_error(response, 405, "method_not_allowed")
        assert "POST /v1/discovery/register" in response.json()["message"]
    assert api.snapshot() == before
