"""Tags in cluster mode: what one node registers, every node shows, filters and labels."""

from __future__ import annotations

from sd_core import RegistryConfig
from sd_core.cluster.testing import SimulatedCluster

FAST = RegistryConfig(health_check_interval=5.0, health_check_timeout=1.0, registration_ttl=30.0)


def test_tags_registered_on_one_node_show_on_every_node() -> None:
    cluster = SimulatedCluster(nodes=3, config=FAST)
    assert cluster.register(0, "api", "a1", tags=["web", "eu"]).status == 200
    assert cluster.register(0, "api", "a2").status == 200
    for node in range(3):
        instances = cluster.read(node, "api").body["instances"]
        assert [i.get("tags") for i in instances] == [["web", "eu"], None]
        tagged = cluster.request(node, "GET", "/v1/discovery/services/api", query="tag=eu")
        assert [i["instance_id"] for i in tagged.body["instances"]] == ["a1"]
        targets = cluster.request(node, "GET", "/v1/discovery/prometheus").body
        assert [t["labels"].get("tags") for t in targets] == [",web,eu,", None]


def test_a_tags_only_change_on_another_node_reaches_every_node() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    cluster.register(0, "api", "a1", tags=["blue"])
    before = cluster.read(0, "api").index
    assert cluster.register(1, "api", "a1", tags=["green"]).status == 200
    for node in range(2):
        reply = cluster.read(node, "api")
        assert reply.body["instances"][0]["tags"] == ["green"]
        assert reply.index is not None and before is not None and reply.index > before
