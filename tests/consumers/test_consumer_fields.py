"""The fields the consumers not run here read, present and of the type their Go structs
decode (github.com/hashicorp/consul/api), with the invariants their code relies on.

Traefik, consul-template, Fabio and Grafana Alloy are not in the package registries
this project can use, so each is checked against what its public source reads:

- Traefik `pkg/provider/consulcatalog`: `/v1/catalog/services` (tags per service), then
  per service `/v1/catalog/service/<name>` (ServiceID, Node, ServiceName, ServiceAddress,
  Address, ServicePort, ServiceTags) and `/v1/health/service/<name>` whose entries it
  pairs with the catalog's by position (`healthServices[i].Checks.AggregatedStatus()`).
- consul-template `dependency/health_service.go`: `/v1/health/service/<name>` (Node.Node,
  Node.Address, Service.ID, Service.Service, Service.Address, Service.Tags, Service.Port,
  each check's Status, which must be passing, warning, unknown or critical).
- Fabio `registry/consul`: `/v1/agent/self` (Config.Datacenter), `/v1/health/state/any`
  (CheckID starting `service:`, Status, Node, ServiceID, ServiceName; a critical
  `_service_maintenance:<ServiceID>` check drops the instance), then
  `/v1/catalog/service/<name>` matched by `Node + "." + ServiceID`.
- Grafana Alloy `discovery.consul`: Prometheus' own `discovery/consul` code, so the
  fields of Prometheus' `consul_sd` (Node.Address, Node.Node, Node.Meta,
  Node.TaggedAddresses, Service.Address, Service.Port, Service.ID, Service.Tags,
  Service.Meta, Checks' AggregatedStatus) and `/v1/agent/self`'s Config.Datacenter.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.core.core_support import READ_AUTH, Core

SERVICE = "web"
STRING, NUMBER, LIST, MAP = str, int, list, dict
#: Consul API endpoint -> (field path, type) each consumer reads there.
READS: dict[str, dict[str, list[tuple[str, type]]]] = {
    "traefik": {
        "/v1/catalog/services": [],
        f"/v1/catalog/service/{SERVICE}": [
            ("ServiceID", STRING),
            ("Node", STRING),
            ("ServiceName", STRING),
            ("ServiceAddress", STRING),
            ("Address", STRING),
            ("ServicePort", NUMBER),
            ("ServiceTags", LIST),
            ("ServiceMeta", MAP),
        ],
        f"/v1/health/service/{SERVICE}": [("Checks", LIST), ("Service.Meta", MAP)],
    },
    "consul-template": {
        f"/v1/health/service/{SERVICE}": [
            ("Node.Node", STRING),
            ("Node.Address", STRING),
            ("Service.ID", STRING),
            ("Service.Service", STRING),
            ("Service.Address", STRING),
            ("Service.Tags", LIST),
            ("Service.Port", NUMBER),
            ("Checks", LIST),
        ],
    },
    "fabio": {
        "/v1/health/state/any": [
            ("CheckID", STRING),
            ("Status", STRING),
            ("Node", STRING),
            ("ServiceID", STRING),
            ("ServiceName", STRING),
            ("Output", STRING),
        ],
        f"/v1/catalog/service/{SERVICE}": [
            ("Node", STRING),
            ("ServiceID", STRING),
            ("ServiceTags", LIST),
            ("ServiceAddress", STRING),
            ("ServicePort", NUMBER),
            ("Address", STRING),
        ],
    },
    "alloy": {
        f"/v1/health/service/{SERVICE}": [
            ("Node.Address", STRING),
            ("Node.Node", STRING),
            ("Node.Meta", MAP),
            ("Node.TaggedAddresses", MAP),
            ("Service.Address", STRING),
            ("Service.Port", NUMBER),
            ("Service.ID", STRING),
            ("Service.Tags", LIST),
            ("Service.Meta", MAP),
        ],
    },
}


def _fleet() -> Core:
    """Three instances of `web` on two hosts: passing, never probed, drained."""
    core = Core()
    tags = ["traefik.enable=true", "urlprefix-/web"]
    core.register(SERVICE, "w1", tags=tags, metadata={"zone": "a"})
    core.register(SERVICE, "w2", host="10.0.0.2", tags=tags)
    core.register(SERVICE, "w3", tags=tags)
    core.probe(SERVICE, "w1", passed=True)
    core.probe(SERVICE, "w3", passed=True)
    core.send("PUT", f"/v1/discovery/maintenance/{SERVICE}/w3", {"reason": "deploy"})
    return core


def _read(core: Core, target: str) -> Any:
    path, _, query = target.partition("?")
    reply = core.send("GET", path, query=query, auth=READ_AUTH)
    assert reply.status == 200, reply.body
    return reply.body


def _field(entry: dict[str, Any], path: str) -> Any:
    value: Any = entry
    for part in path.split("."):
        assert isinstance(value, dict) and part in value, f"{path} missing in {entry}"
        value = value[part]
    return value


def aggregated_status(checks: list[dict[str, Any]]) -> str:
    """consul/api's `HealthChecks.AggregatedStatus`, which Prometheus, Alloy and Traefik use."""
    seen = set()
    for check in checks:
        if check["CheckID"] == "_node_maintenance" or check["CheckID"].startswith(
            "_service_maintenance:"
        ):
            seen.add("maintenance")
        elif check["Status"] in ("passing", "warning", "critical"):
            seen.add(check["Status"])
        else:
            return ""
    for status in ("maintenance", "critical", "warning", "passing"):
        if status in seen:
            return status
    return "passing"


@pytest.mark.parametrize("consumer", READS)
def test_every_field_a_consumer_reads_is_there(consumer: str) -> None:
    core = _fleet()
    for path, fields in READS[consumer].items():
        body = _read(core, path)
        assert body, f"{path} is empty"
        for entry in body if isinstance(body, list) else [body]:
            for field, kind in fields:
                assert isinstance(_field(entry, field), kind), (consumer, path, field)
    assert isinstance(_read(core, "/v1/agent/self")["Config"]["Datacenter"], str)


def test_traefik_pairs_catalog_and_health_entries_by_position() -> None:
    core = _fleet()
    catalog = _read(core, f"/v1/catalog/service/{SERVICE}?tag=traefik.enable%3Dtrue")
    health = _read(core, f"/v1/health/service/{SERVICE}?tag=traefik.enable%3Dtrue")
    assert [c["ServiceID"] for c in catalog] == [h["Service"]["ID"] for h in health]
    statuses = [aggregated_status(h["Checks"]) for h in health]
    assert statuses == ["passing", "critical", "maintenance"]
    assert _read(core, "/v1/catalog/services")[SERVICE] == ["traefik.enable=true", "urlprefix-/web"]


def test_fabio_finds_the_passing_instances_from_the_checks() -> None:
    core = _fleet()
    checks = _read(core, "/v1/health/state/any")
    dropped = {
        c["CheckID"].removeprefix("_service_maintenance:")
        for c in checks
        if c["CheckID"].startswith("_service_maintenance:") and c["Status"] == "critical"
    }
    passing = {
        f"{c['Node']}.{c['ServiceID']}"
        for c in checks
        if c["CheckID"].startswith("service:")
        and c["Status"] == "passing"
        and c["ServiceID"] not in dropped
    }
    catalog = _read(core, f"/v1/catalog/service/{SERVICE}")
    routed = [c["ServiceID"] for c in catalog if f"{c['Node']}.{c['ServiceID']}" in passing]
    assert routed == ["w1"]


def test_consul_template_reads_only_statuses_it_knows() -> None:
    health = _read(_fleet(), f"/v1/health/service/{SERVICE}")
    known = {"passing", "warning", "unknown", "critical"}
    assert all(c["Status"] in known for h in health for c in h["Checks"])


def test_prometheus_and_alloy_see_the_health_label_they_expose() -> None:
    health = _read(_fleet(), f"/v1/health/service/{SERVICE}")
    shown = {h["Service"]["ID"]: aggregated_status(h["Checks"]) for h in health}
    assert shown == {"w1": "passing", "w2": "critical", "w3": "maintenance"}


def test_every_answer_has_the_headers_consul_api_requires() -> None:
    """consul/api's `parseQueryMeta` (every Go consumer above) fails a query whose answer
    lacks an unsigned X-Consul-LastContact, or (older releases) X-Consul-Index."""
    core = _fleet()
    paths = {p for reads in READS.values() for p in reads} | {"/v1/kv/fabio/config"}
    for path in sorted(paths):
        reply = core.send("GET", path, auth=READ_AUTH)
        for name in ("x-consul-index", "x-consul-lastcontact"):
            assert reply.headers.get(name, "").isdigit(), (path, name, reply.headers)
