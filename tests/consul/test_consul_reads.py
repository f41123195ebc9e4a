"""The Consul-compatible reads (docs/integrations.md), driven through the real HTTP
mapping on a hand-moved clock: shapes, the status mapping, filters, blocking, tokens,
caching and the 405 of Consul's writes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sd_core import BlockingWait, HttpResponse
from tests.core.core_support import READ_AUTH, Core, Reply, with_config

HEALTH = "/v1/health/service/game-service"
CATALOG = "/v1/catalog/service/game-service"


def _get(core: Core, path: str, query: str = "", auth: str | None = READ_AUTH) -> Reply:
    return core.send("GET", path, query=query, auth=auth)


def _healthy(core: Core, instance: str) -> None:
    core.probe("game-service", instance, passed=True)


def _fleet() -> Core:
    """game-1 healthy, game-2 unknown, game-3 healthy and drained, with tags."""
    core = Core()
    core.register(instance="game-1", tags=["web", "eu"], metadata={"v": "1"})
    core.register(instance="game-2", host="10.0.0.2", tags=["web"])
    core.register(instance="game-3", host="10.0.0.3", tags=["eu"])
    _healthy(core, "game-1")
    _healthy(core, "game-3")
    core.send("PUT", "/v1/discovery/maintenance/game-service/game-3", {"reason": "deploy"})
    return core


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["Service"]["ID"] if "Service" in e else e["ServiceID"] for e in entries]


def test_agent_self_names_the_datacenter_and_the_node() -> None:
    core = Core(with_config(datacenter="eu-west_1", node_name="registry-a"))
    reply = _get(core, "/v1/agent/self")
    assert reply.status == 200
    assert reply.body["Config"]["Datacenter"] == "eu-west_1"
    assert reply.body["Config"]["NodeName"] == "registry-a"
    assert reply.body["Member"]["Name"] == "registry-a"
    # No more than /health shows, and py-consul sends it no token: public.
    assert _get(core, "/v1/agent/self", auth=None).status == 200


def test_a_health_entry_has_the_fields_consumers_read() -> None:
    core = _fleet()
    reply = _get(core, HEALTH)
    assert reply.status == 200
    first = reply.body[0]
    assert first["Node"] == {
        "ID": "",
        "Node": "10.0.0.1",
        "Address": "10.0.0.1",
        "Datacenter": "dc1",
        "TaggedAddresses": {"lan": "10.0.0.1", "wan": "10.0.0.1"},
        "Meta": {},
    }
    service = first["Service"]
    assert (service["ID"], service["Service"], service["Address"], service["Port"]) == (
        "game-1",
        "game-service",
        "10.0.0.1",
        8080,
    )
    assert service["Tags"] == ["web", "eu"] and service["Meta"] == {"v": "1"}
    [check] = first["Checks"]
    assert check["CheckID"] == "service:game-1" and check["Status"] == "passing"
    assert (check["ServiceID"], check["ServiceName"]) == ("game-1", "game-service")


def test_statuses_map_to_checks_and_maintenance_adds_a_critical_one() -> None:
    core = _fleet()
    entries = {e["Service"]["ID"]: e["Checks"] for e in _get(core, HEALTH).body}
    [unknown] = entries["game-2"]
    assert unknown["Status"] == "critical" and "has passed yet" in unknown["Output"]
    status, drained = entries["game-3"]
    assert status["Status"] == "passing"
    assert drained["CheckID"] == "_service_maintenance:game-3"
    assert drained["Status"] == "critical" and drained["Notes"] == "deploy"
    core.probe("game-service", "game-1", passed=False)
    core.probe("game-service", "game-1", passed=False)
    [failing] = {e["Service"]["ID"]: e["Checks"] for e in _get(core, HEALTH).body}["game-1"]
    assert failing["Status"] == "critical" and "failing" in failing["Output"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["game-1", "game-2", "game-3"]),
        ("passing", ["game-1"]),
        ("passing=1", ["game-1"]),
        ("passing=false", ["game-1", "game-2", "game-3"]),
        ("tag=web", ["game-1", "game-2"]),
        ("tag=web&tag=eu", ["game-1"]),
        ("tag=eu&passing=true", ["game-1"]),
        ("tag=nope", []),
        ("node-meta=rack:1", []),
        ("stale&dc=dc1&near=_agent", ["game-1", "game-2", "game-3"]),
        ("consistent", ["game-1", "game-2", "game-3"]),
    ],
)
def test_health_filters(query: str, expected: list[str]) -> None:
    assert _ids(_get(_fleet(), HEALTH, query).body) == expected


def test_catalog_lists_every_instance_whatever_its_health() -> None:
    core = _fleet()
    entries = _get(core, CATALOG).body
    assert _ids(entries) == ["game-1", "game-2", "game-3"]
    first = entries[0]
    assert (first["Node"], first["Address"], first["ServiceAddress"]) == ("10.0.0.1",) * 3
    assert (first["ServiceName"], first["ServicePort"], first["Datacenter"]) == (
        "game-service",
        8080,
        "dc1",
    )
    assert first["ServiceTags"] == ["web", "eu"] and first["ServiceMeta"] == {"v": "1"}
    assert _ids(_get(core, CATALOG, "tag=eu").body) == ["game-1", "game-3"]


def test_catalog_services_lists_each_services_tags_once() -> None:
    core = _fleet()
    core.register("billing")
    assert _get(core, "/v1/catalog/services").body == {
        "billing": [],
        "game-service": ["web", "eu"],
    }


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (
            "any",
            ["service:game-1", "service:game-2", "service:game-3", "_service_maintenance:game-3"],
        ),
        ("passing", ["service:game-1", "service:game-3"]),
        ("critical", ["service:game-2", "_service_maintenance:game-3"]),
        ("warning", []),
    ],
)
def test_health_state_lists_checks(state: str, expected: list[str]) -> None:
    body = _get(_fleet(), f"/v1/health/state/{state}").body
    assert [c["CheckID"] for c in body] == expected


def test_an_unknown_service_is_an_empty_list_and_a_bad_state_a_422() -> None:
    core = Core()
    assert _get(core, "/v1/health/service/nothing").body == []
    assert _get(core, "/v1/catalog/service/nothing").body == []
    reply = _get(core, "/v1/health/state/sick")
    assert reply.status == 422 and reply.detail_fields == ["state"]


def test_the_index_is_our_own_index_of_the_same_service() -> None:
    core = _fleet()
    ours = _get(core, "/v1/discovery/services/game-service")
    for path in (HEALTH, CATALOG):
        reply = _get(core, path)
        assert int(reply.headers["x-consul-index"]) == ours.index == reply.index
        assert reply.headers["x-consul-knownleader"] == "true"
        assert reply.headers["x-consul-lastcontact"] == "0"
    everything = _get(core, "/v1/discovery/services")
    for path in ("/v1/catalog/services", "/v1/health/state/any"):
        assert int(_get(core, path).headers["x-consul-index"]) == everything.index


def _held(core: Core, path: str, query: str) -> BlockingWait:
    result = core.handle("GET", path, query=query, auth=READ_AUTH)
    assert isinstance(result, BlockingWait), result
    return result


@pytest.mark.parametrize(
    ("wait", "seconds"),
    [("", 300.0), ("&wait=30s", 30.0), ("&wait=1m30s", 90.0), ("&wait=120000ms", 120.0),
     ("&wait=20m", 600.0), ("&wait=.5s", 0.5), ("&wait=5.s", 5.0), ("&wait=0", 300.0),
     ("&wait=0s", 300.0), ("&wait=2500000%C2%B5s", 2.5), ("&wait=1h0m0.5s", 600.0)],
)  # fmt: skip
def test_a_current_index_blocks_for_the_wait_given_default_5m_at_most_10m(
    wait: str, seconds: float
) -> None:
    core = _fleet()
    index = _get(core, HEALTH).headers["x-consul-index"]
    held = _held(core, HEALTH, f"index={index}{wait}")
    assert (held.scope, held.seen_index, held.timeout) == ("game-service", int(index), seconds)


def test_a_passed_or_future_index_answers_at_once_and_a_change_moves_it_on() -> None:
    core = _fleet()
    index = int(_get(core, HEALTH).headers["x-consul-index"])
    for asked in (1, index + 5):
        reply = _get(core, HEALTH, f"index={asked}")
        assert reply.status == 200 and int(reply.headers["x-consul-index"]) == index
    core.unregister("game-service", "game-2")
    after = _get(core, HEALTH, f"index={index}")
    assert int(after.headers["x-consul-index"]) > index
    assert _ids(after.body) == ["game-1", "game-3"]
    held = _held(core, "/v1/catalog/services", f"index={core.registry.global_index}")
    assert held.scope is None


@pytest.mark.parametrize(
    ("query", "code", "status"),
    [
        ("index=-1", "validation_error", 422),
        ("index=" + "9" * 30, "validation_error", 422),
        ("index=1&wait=10", "validation_error", 422),
        ("index=1&wait=soon", "validation_error", 422),
        ("passing=maybe", "validation_error", 422),
        ("filter=Service.Port==8080", "filter_not_supported", 400),
        ("dc=elsewhere", "unknown_datacenter", 400),
    ],
)
def test_bad_parameters_get_the_one_error_shape(query: str, code: str, status: int) -> None:
    reply = _get(_fleet(), HEALTH, query)
    assert (reply.status, reply.error) == (status, code)
    assert reply.body["success"] is False and reply.body["message"]


def test_the_read_token_is_enough_and_a_query_token_counts_on_consul_reads_only() -> None:
    core = _fleet()
    assert _get(core, HEALTH, auth=None).status == 401
    assert _get(core, HEALTH, "token=ro-token-77ab", auth=None).status == 200
    assert _get(core, HEALTH, "token=wrong", auth=None).status == 401
    ours = _get(core, "/v1/discovery/services/game-service", "token=ro-token-77ab", auth=None)
    assert ours.status == 401


#: Consul's write endpoints, every one of them a PUT.
CONSUL_WRITES = [
    "/v1/agent/service/register",
    "/v1/agent/service/deregister/game-1",
    "/v1/agent/check/pass/service:game-1",
    "/v1/agent/check/fail/service:game-1",
    "/v1/catalog/register",
    "/v1/catalog/deregister",
    "/v1/agent/service/maintenance/game-1",
]


@pytest.mark.parametrize("path", CONSUL_WRITES)
def test_consul_writes_answer_405_pointing_at_our_register(path: str) -> None:
    core = _fleet()
    before = core.snapshot("game-service")
    reply = core.send("PUT", path, {"Name": "x"}, auth=None)
    assert reply.status == 405 and reply.error == "method_not_allowed"
    assert "POST /v1/discovery/register" in reply.body["message"]
    assert core.snapshot("game-service") == before


def test_a_body_is_rendered_once_per_change() -> None:
    core = _fleet()

    def raw(query: str = "") -> bytes:
        result = core.handle("GET", HEALTH, query=query)
        assert isinstance(result, HttpResponse)
        return result.body

    first, passing = raw(), raw("passing")
    assert raw() is first and raw("passing") is passing
    core.advance(1.0)
    core.heartbeat("game-service", "game-1")  # nothing Consul shows moved
    assert raw() is first
    core.register(instance="game-2", host="10.0.0.2", tags=["web", "new"])
    changed = raw()
    assert changed is not first and b'"new"' in changed
    assert json.loads(raw("passing")) == json.loads(passing)


def test_the_kv_store_is_empty_and_a_watch_on_it_blocks_for_its_wait() -> None:
    core = _fleet()
    absent = _get(core, "/v1/kv/fabio/config", "recurse")
    assert (absent.status, absent.error) == (404, "not_found")
    assert absent.headers["x-consul-index"] == "1" and absent.headers["x-consul-lastcontact"]
    # Fabio watches its manual routes with the index it was given: it must park, not spin.
    held = _held(core, "/v1/kv/fabio/config", "recurse&index=1&wait=1m")
    assert (held.scope, held.seen_index, held.timeout) == ("/v1/kv", 1, 60.0)
    assert core.send("PUT", "/v1/kv/fabio/config", auth=None).status == 405
