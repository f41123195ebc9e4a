"""Consul's reads on cluster nodes (the same `HttpApi` over each node's view) and the
settings that name the datacenter: every node answers with the index our own read gives,
says how long ago it heard from the store, and names itself by its node id."""

from __future__ import annotations

import pytest

from frontends.runtime.settings import load_settings
from sd_core import ConfigError, RegistryConfig
from sd_core.cluster.testing import SimulatedCluster

FAST = RegistryConfig(health_check_interval=5.0, health_check_timeout=1.0, registration_ttl=60.0)


def test_every_node_answers_with_our_index_and_its_last_contact() -> None:
    cluster = SimulatedCluster(nodes=3, config=FAST)
    cluster.register(0, "api", "a1", tags=["web"])
    cluster.register(1, "api", "a2")
    cluster.advance(6.0)  # probed healthy
    for node in cluster.live():
        ours = cluster.read(node, "api")
        consul = cluster.request(node, "GET", "/v1/health/service/api", query="passing")
        assert consul.status == 200
        assert int(consul.headers["x-consul-index"]) == ours.index
        contact = consul.headers["x-consul-lastcontact"]
        assert contact.isdigit() and contact == consul.headers["x-discovery-last-contact"]
        assert [e["Service"]["ID"] for e in consul.body] == ["a1", "a2"]
        agent = cluster.request(node, "GET", "/v1/agent/self")
        assert agent.body["Config"]["NodeName"] == f"node-{node + 1}"


def test_a_node_behind_the_store_reports_a_growing_last_contact() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    cluster.register(0, "api", "a1")
    cluster.store_down()
    cluster.advance(3.0)
    consul = cluster.request(1, "GET", "/v1/catalog/service/api")
    assert consul.status == 200 and int(consul.headers["x-consul-lastcontact"]) >= 2000


def test_the_datacenter_setting_is_checked_and_named_in_errors() -> None:
    env = {"SERVICE_DISCOVERY_SECRET": "s" * 32, "SERVICE_DISCOVERY_STATE_FILE": ""}
    assert load_settings(env).registry.datacenter == "dc1"
    named = load_settings({**env, "SERVICE_DISCOVERY_DATACENTER": "eu-west-1"})
    assert named.registry.datacenter == "eu-west-1"
    with pytest.raises(ConfigError) as refused:
        load_settings({**env, "SERVICE_DISCOVERY_DATACENTER": "eu/west"})
    assert refused.value.name == "SERVICE_DISCOVERY_DATACENTER"
