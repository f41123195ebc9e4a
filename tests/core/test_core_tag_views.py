"""Tags on the read endpoints: `"tags"` in a tagged instance's JSON only, the `tags`
label in Consul's `,a,b,` form, and `?tag=` on every list endpoint, cached like the
other filters."""

from __future__ import annotations

import json
from typing import Any

import pytest
from core_support import PROMETHEUS, SERVICES, Core, with_config

from sd_core.filters import InstanceFilter, entry_cost
from sd_core.openapi import openapi_document

SERVICE = f"{SERVICES}/game-service"
LISTS = (SERVICES, SERVICE, f"{SERVICE}/healthy", f"{SERVICE}/instances", PROMETHEUS)


def _fleet() -> Core:
    """game-1 [web, eu] healthy, game-2 [web] healthy, game-3 untagged, other o-1 [web]."""
    core = Core()
    core.register(instance="game-1", tags=["web", "eu"])
    core.register(instance="game-2", tags=["web"])
    core.register(instance="game-3")
    core.register("other", "o-1", tags=["web"])
    core.probe(instance="game-1", passed=True)
    core.probe(instance="game-2", passed=True)
    return core


def _ids(instances: list[dict[str, Any]]) -> list[str]:
    return [i["instance_id"] for i in instances]


def test_a_tagged_instance_shows_its_tags_after_its_metadata() -> None:
    core = Core()
    core.register(metadata={"zone": "a"}, tags=["traefik.enable=true", "urlprefix-/game"])
    instance = core.instance()
    assert instance["tags"] == ["traefik.enable=true", "urlprefix-/game"]
    assert list(instance)[list(instance).index("metadata") + 1] == "tags"


def test_an_untagged_instance_has_no_tags_field_anywhere() -> None:
    core = Core()
    core.register()
    core.probe(passed=True)
    assert "tags" not in core.instance()
    assert "tags" not in core.get(f"{SERVICE}/healthy").body["healthy_instances"][0]
    assert b"tags" not in core.get(SERVICES).raw
    assert b"tags" not in core.get(PROMETHEUS).raw


def test_every_view_shows_the_tags() -> None:
    core = _fleet()
    assert core.get(SERVICES).body["services"]["game-service"][0]["tags"] == ["web", "eu"]
    healthy = core.get(f"{SERVICE}/healthy").body["healthy_instances"]
    assert [i.get("tags") for i in healthy] == [["web", "eu"], ["web"]]


def test_reregistering_with_other_tags_renders_them() -> None:
    core = Core()
    core.register(tags=["a"])
    assert core.instance()["tags"] == ["a"]
    assert core.targets()[0]["labels"]["tags"] == ",a,"
    core.register(tags=["b", "c"])
    assert core.instance()["tags"] == ["b", "c"]
    assert core.targets()[0]["labels"]["tags"] == ",b,c,"
    core.register()
    assert "tags" not in core.instance()
    assert "tags" not in core.targets()[0]["labels"]


def test_large_tags_survive_a_shared_fragment_being_rerendered() -> None:
    """Tags live in the cached tail, which a large fragment shares with the body."""
    tags = [f"traefik.http.routers.r{n}.rule=Host(`{'x' * 40}.example`)" for n in range(20)]
    core = Core()
    core.register(tags=tags)
    assert core.instance()["tags"] == tags  # joined, and the tail now a view of it
    core.now += 1
    core.heartbeat()
    core.probe(passed=True)
    instance = core.instance()
    assert instance["tags"] == tags
    assert instance["status"] == "healthy"


def test_the_tags_label_is_consuls_form_and_only_on_tagged_targets() -> None:
    core = _fleet()
    labels = {t["labels"]["instance"]: t["labels"] for t in core.targets()}
    assert labels["game-1"]["tags"] == ",web,eu,"
    assert labels["game-2"]["tags"] == ",web,"
    assert "tags" not in labels["game-3"]


def test_metadata_cannot_fake_the_tags_label_of_a_tagged_instance() -> None:
    core = Core()
    core.register(instance="game-1", metadata={"tags": "fake"}, tags=["real"])
    core.register(instance="game-2", metadata={"tags": "kept"})
    labels = {t["labels"]["instance"]: t["labels"] for t in core.targets()}
    assert labels["game-1"]["tags"] == ",real,"
    assert labels["game-2"]["tags"] == "kept"  # untagged: its labels are as they were


def test_tag_filters_must_all_be_carried() -> None:
    core = _fleet()
    assert _ids(core.get(SERVICE, query="tag=web").body["instances"]) == ["game-1", "game-2"]
    assert _ids(core.get(SERVICE, query="tag=web&tag=eu").body["instances"]) == ["game-1"]
    assert _ids(core.get(SERVICE, query="tag=eu&tag=web&tag=eu").body["instances"]) == ["game-1"]
    assert core.get(SERVICE, query="tag=web&tag=us").body["instances"] == []
    assert core.get(SERVICE, query="tag=nobody").body["instances"] == []


def test_every_list_endpoint_filters_by_tag() -> None:
    core = _fleet()
    healthy = core.get(f"{SERVICE}/healthy", query="tag=eu").body["healthy_instances"]
    assert _ids(healthy) == ["game-1"]
    targets = core.get(f"{SERVICE}/instances", query="tag=web").body
    assert [t["labels"]["instance"] for t in targets] == ["game-1", "game-2"]
    everything = core.get(PROMETHEUS, query="tag=web").body
    assert [t["labels"]["instance"] for t in everything] == ["game-1", "game-2", "o-1"]
    services = core.get(SERVICES, query="tag=eu").body["services"]
    assert list(services) == ["game-service"]
    assert _ids(services["game-service"]) == ["game-1"]


def test_tag_filters_combine_with_metadata_and_status() -> None:
    core = _fleet()
    core.register(instance="game-4", tags=["web"], metadata={"zone": "b"})
    assert _ids(core.get(SERVICE, query="tag=web&status=unknown").body["instances"]) == ["game-4"]
    assert _ids(core.get(SERVICE, query="tag=web&meta.zone=b").body["instances"]) == ["game-4"]


def test_a_tag_filtered_read_is_cached_until_a_change() -> None:
    core = _fleet()
    first = core.handle("GET", SERVICE, query="tag=web")
    assert first.body is core.handle("GET", SERVICE, query="tag=web").body  # type: ignore[union-attr]
    # The same tags in another order or repeated are the same filter, the same body.
    assert first.body is core.handle("GET", SERVICE, query="tag=web&tag=web").body  # type: ignore[union-attr]
    core.register(instance="game-3", tags=["web"])  # a tags-only change
    assert _ids(core.get(SERVICE, query="tag=web").body["instances"]) == [
        "game-1",
        "game-2",
        "game-3",
    ]


def test_the_tags_of_a_filter_count_against_the_cache_budget() -> None:
    untagged = entry_cost(InstanceFilter((), frozenset()), b"[]")
    tagged = entry_cost(InstanceFilter((), frozenset(), ("a" * 100, "b")), b"[]")
    assert tagged > untagged + 101
    budget = 16 * 1024
    core = Core(with_config(filter_cache_bytes=budget))
    core.register(tags=["web"])
    cache = core.registry.views.filter_cache
    for n in range(50):
        for path in LISTS:
            assert core.get(path, query=f"tag=t{n}{'x' * 250}").status == 200
        assert cache.used <= budget
    assert len(cache) > 5


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("tag=", "at least 1 character"),
        ("tag=a,b", "comma"),
        ("tag=" + "x" * 257, "256 bytes"),
        ("tag=" + "%C3%A9" * 129, "256 bytes"),
        ("tag=a%0Ab", "control"),
        ("tag=ok&tag=%C2%85", "control"),
        ("&".join(f"tag=t{n}" for n in range(65)), "at most 64"),
    ],
)
def test_a_tag_no_instance_could_carry_is_422(query: str, message: str) -> None:
    core = _fleet()
    for path in LISTS:
        reply = core.get(path, query=query)
        assert (reply.status, reply.error, reply.detail_fields) == (
            422,
            "validation_error",
            ["tag"],
        )
        assert message in reply.body["details"][0]["message"]


def test_64_distinct_tags_are_a_valid_filter() -> None:
    core = Core()
    core.register(tags=[f"t{n}" for n in range(64)])
    query = "&".join(f"tag=t{n}" for n in range(64))
    assert _ids(core.get(SERVICE, query=query).body["instances"]) == ["game-1"]


def test_the_schema_has_optional_tags_and_the_tag_filter() -> None:
    document = json.loads(json.dumps(openapi_document("0")))
    view = document["components"]["schemas"]["InstanceView"]
    assert view["properties"]["tags"]["items"] == {"type": "string"}
    assert "tags" not in view["required"]
    read = document["paths"]["/v1/discovery/services/{name}"]["get"]
    tag = next(p for p in read["parameters"] if p["name"] == "tag")
    assert tag["schema"]["maxItems"] == 64
    assert tag["schema"]["items"]["minLength"] == 1
