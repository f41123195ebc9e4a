"""`?meta.<key>=<value>` and `?status=` on every list endpoint, cached like plain reads."""

from __future__ import annotations

import pytest
from core_support import PROMETHEUS, SERVICES, Core, with_config

from sd_core import BlockingWait
from sd_core.filters import InstanceFilter, entry_cost, has_tags

SERVICE = f"{SERVICES}/game-service"


def _fleet(core: Core | None = None) -> Core:
    """game-1 zone a healthy, game-2 zone b healthy, game-3 zone a unhealthy, game-4 unknown."""
    core = core or Core()
    for n, zone in ((1, "a"), (2, "b"), (3, "a"), (4, "b")):
        core.register(instance=f"game-{n}", metadata={"zone": zone, "tier": "web"})
    core.probe(instance="game-1", passed=True)
    core.probe(instance="game-2", passed=True)
    core.probe(instance="game-3", passed=False)
    core.probe(instance="game-3", passed=False)
    core.register("other", "o-1", metadata={"zone": "a"})
    return core


def _ids(instances: list[dict[str, str]]) -> list[str]:
    return [i["instance_id"] for i in instances]


def test_metadata_filters_must_all_match() -> None:
    core = _fleet()
    reply = core.get(SERVICE, query="meta.zone=a")
    assert _ids(reply.body["instances"]) == ["game-1", "game-3"]
    reply = core.get(SERVICE, query="meta.zone=a&meta.tier=web")
    assert _ids(reply.body["instances"]) == ["game-1", "game-3"]
    assert core.get(SERVICE, query="meta.zone=a&meta.tier=db").body["instances"] == []
    assert core.get(SERVICE, query="meta.zone=a&meta.zone=b").body["instances"] == []


def test_status_filters_may_any_match() -> None:
    core = _fleet()
    assert _ids(core.get(SERVICE, query="status=unhealthy").body["instances"]) == ["game-3"]
    both = core.get(SERVICE, query="status=unknown&status=unhealthy").body["instances"]
    assert _ids(both) == ["game-3", "game-4"]
    combined = core.get(SERVICE, query="status=healthy&meta.zone=b").body["instances"]
    assert _ids(combined) == ["game-2"]


def test_every_list_endpoint_filters() -> None:
    core = _fleet()
    healthy = core.get(f"{SERVICE}/healthy", query="meta.zone=a").body["healthy_instances"]
    assert _ids(healthy) == ["game-1"]
    targets = core.get(f"{SERVICE}/instances", query="status=unhealthy").body
    assert [t["labels"]["instance"] for t in targets] == ["game-3"]
    everything = core.get(PROMETHEUS, query="meta.zone=a").body
    assert [t["labels"]["instance"] for t in everything] == ["game-1", "game-3", "o-1"]
    services = core.get(SERVICES, query="meta.zone=b").body["services"]
    assert list(services) == ["game-service"]  # a service with no match is left out
    assert _ids(services["game-service"]) == ["game-2", "game-4"]


def test_a_filtered_read_is_rendered_once_per_index() -> None:
    core = _fleet()
    first = core.handle("GET", SERVICE, query="meta.zone=a")
    second = core.handle("GET", SERVICE, query="meta.zone=a")
    assert first.body is second.body  # type: ignore[union-attr]
    core.heartbeat(instance="game-1")  # last_heartbeat moved: the body is rendered again
    third = core.handle("GET", SERVICE, query="meta.zone=a")
    assert third.body is not first.body  # type: ignore[union-attr]
    assert core.get(SERVICE, query="meta.zone=a").body["instances"][0]["last_heartbeat"]


def test_a_change_reaches_filtered_bodies() -> None:
    core = _fleet()
    assert _ids(core.get(SERVICE, query="status=healthy").body["instances"]) == [
        "game-1",
        "game-2",
    ]
    targets = core.get(PROMETHEUS, query="status=healthy").body
    core.probe(instance="game-2", passed=False)
    core.probe(instance="game-2", passed=False)
    assert _ids(core.get(SERVICE, query="status=healthy").body["instances"]) == ["game-1"]
    assert core.get(PROMETHEUS, query="status=healthy").body != targets


def test_the_cache_of_filters_is_bounded_by_bytes_over_every_view() -> None:
    """Long filter keys on every view and service: the registry's total stays in budget."""
    budget = 64 * 1024
    core = _fleet(Core(with_config(filter_cache_bytes=budget)))
    cache = core.registry.views.filter_cache
    paths = (SERVICES, SERVICE, f"{SERVICE}/healthy", f"{SERVICE}/instances", PROMETHEUS)
    padding = "x" * 2000
    for n in range(100):
        for path in paths:
            assert core.get(path, query=f"meta.k{n}={padding}").status == 200
        assert cache.used <= budget
    assert len(cache) > 10  # it still caches
    service = core.registry._services["game-service"]
    kept = len(service.filtered) + len(core.registry.views._global_filtered)
    assert kept == len(cache)
    # The most recent filter is still a hit: the same bytes object.
    query = f"meta.k99={padding}"
    first = core.handle("GET", PROMETHEUS, query=query)
    assert first.body is core.handle("GET", PROMETHEUS, query=query).body  # type: ignore[union-attr]


def test_a_change_uncounts_what_it_forgets() -> None:
    core = _fleet()
    cache = core.registry.views.filter_cache
    core.get(SERVICE, query="meta.zone=a")
    core.get(PROMETHEUS, query="meta.zone=a")
    assert cache.used > 0
    core.register(instance="game-9")  # every view of game-service and the global ones
    assert cache.used == 0
    assert len(cache) == 0


def test_a_body_over_the_whole_budget_is_served_but_not_kept() -> None:
    core = _fleet(Core(with_config(filter_cache_bytes=100)))
    assert len(core.get(SERVICE, query="meta.zone=a").body["instances"]) == 2
    assert core.registry.views.filter_cache.used == 0


def test_entry_cost_counts_the_key_and_the_body() -> None:
    small = entry_cost(_key(1, 1), b"[]")
    assert entry_cost(_key(1, 1001), b"[]") == small + 1000
    assert entry_cost(_key(1, 1), b"[" + b" " * 1000 + b"]") == small + 1000


def _key(pairs: int, value_length: int) -> InstanceFilter:
    return InstanceFilter(tuple((f"k{n}", "v" * value_length) for n in range(pairs)), frozenset())


def test_a_read_names_at_most_max_filter_pairs() -> None:
    core = _fleet(Core(with_config(max_filter_pairs=3)))
    assert core.get(SERVICE, query="meta.a=1&meta.b=2&meta.c=3").status == 200
    query = "meta.a=1&meta.b=2&meta.c=3&meta.d=4"
    for path in (SERVICES, SERVICE, f"{SERVICE}/healthy", f"{SERVICE}/instances", PROMETHEUS):
        reply = core.get(path, query=query)
        assert (reply.status, reply.error, reply.detail_fields) == (
            422,
            "validation_error",
            ["meta"],
        )


def test_blocking_queries_combine_with_filters() -> None:
    core = _fleet()
    index = core.registry.service_index("game-service")
    result = core.handle("GET", SERVICE, query=f"meta.zone=a&index={index}&wait=5s")
    assert result == BlockingWait("game-service", index, 5.0)
    reply = core.send("GET", SERVICE, query=f"meta.zone=a&index={index - 1}")
    assert _ids(reply.body["instances"]) == ["game-1", "game-3"]
    assert reply.index == index


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=bogus", "status"),
        ("status=", "status"),
        ("meta.=x", "meta"),
        ("status=HEALTHY", "status"),
    ],
)
def test_bad_filters_are_422(query: str, field: str) -> None:
    core = _fleet()
    for path in (SERVICES, SERVICE, f"{SERVICE}/healthy", f"{SERVICE}/instances", PROMETHEUS):
        reply = core.get(path, query=query)
        assert (reply.status, reply.error, reply.detail_fields) == (
            422,
            "validation_error",
            [field],
        )


def test_unknown_parameters_are_still_ignored_and_empty_values_match_empty() -> None:
    core = _fleet()
    assert len(core.get(SERVICE, query="colour=blue").body["instances"]) == 4
    core.register(instance="game-5", metadata={"zone": ""})
    assert _ids(core.get(SERVICE, query="meta.zone=").body["instances"]) == ["game-5"]


def test_unknown_service_is_still_404_when_filtered() -> None:
    core = _fleet()
    assert core.get(f"{SERVICES}/nope", query="status=healthy").status == 404


def test_has_tags_asks_for_every_wanted_tag() -> None:
    assert has_tags(("a", "b"), ())
    assert has_tags((), ())
    assert has_tags(("a", "b", "c"), ("c", "a"))
    assert not has_tags(("a", "b"), ("a", "z"))
    assert not has_tags((), ("a",))
