"""Watch indexes: what raises them, what does not, and the caches behind the bodies."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from core_support import PROMETHEUS, SERVICES, Core, with_config

from sd_core import IndexRaised, RegisterRequest, Registry, RegistryConfig

SVC = "game-service"


def _bodies(core: Core) -> tuple[bytes, ...]:
    registry = core.registry
    body = registry.views.service_instances(SVC)
    assert body is not None
    return (
        body,
        registry.views.healthy_instances(SVC),
        registry.views.service_targets(SVC),
        registry.views.all_services(),
        registry.views.all_targets(),
    )


def _ready() -> Core:
    """`game-1` healthy with load 0.2, plus a neighbour service; nothing pending."""
    core = Core(with_config(registration_ttl=1e6))
    core.register(SVC, "game-1", metadata={"v": "1"}, load_percentage=0.2)
    core.register(SVC, "game-2")
    core.register("other", "o-1")
    core.probe(SVC, "game-1", passed=True)
    assert core.status() == "healthy"
    core.now += 1
    core.drain()
    core.effects.clear()
    return core


def _probe(passed: bool, load: float | None = None) -> Callable[[Core], object]:
    def step(core: Core) -> None:
        core.probe(SVC, "game-1", passed=passed, load=load)

    return step


def _fail_twice(core: Core) -> None:
    _probe(False)(core)
    _probe(False)(core)
    assert core.status() == "unhealthy"


VISIBLE: list[tuple[str, Callable[[Core], object]]] = [
    ("add", lambda c: c.register(SVC, "game-3")),
    ("unregister", lambda c: c.unregister(SVC, "game-2")),
    ("status change", lambda c: _fail_twice(c)),
    ("host", lambda c: c.register(SVC, "game-1", host="10.9.9.9", metadata={"v": "1"})),
    ("port", lambda c: c.register(SVC, "game-1", port=1, metadata={"v": "1"})),
    (
        "health_endpoint",
        lambda c: c.register(SVC, "game-1", health_endpoint="/x", metadata={"v": "1"}),
    ),
    ("metadata value", lambda c: c.register(SVC, "game-1", metadata={"v": "2"})),
    ("metadata dropped", lambda c: c.register(SVC, "game-1")),
    ("heartbeat load +0.1", lambda c: c.heartbeat(SVC, "game-1", load=0.3)),
    ("heartbeat load -0.2", lambda c: c.heartbeat(SVC, "game-1", load=0.0)),
    (
        "register load +0.5",
        lambda c: c.register(SVC, "game-1", metadata={"v": "1"}, load_percentage=0.7),
    ),
    ("probe load +0.6", _probe(True, 0.8)),
]

INVISIBLE: list[tuple[str, Callable[[Core], object]]] = [
    ("heartbeat", lambda c: c.heartbeat(SVC, "game-1")),
    ("heartbeat small load", lambda c: c.heartbeat(SVC, "game-1", load=0.25)),
    ("heartbeat same load", lambda c: c.heartbeat(SVC, "game-1", load=0.2)),
    ("identical re-registration", lambda c: c.register(SVC, "game-1", metadata={"v": "1"})),
    (
        "re-registration small load",
        lambda c: c.register(SVC, "game-1", metadata={"v": "1"}, load_percentage=0.29),
    ),
    ("probe pass keeps healthy", _probe(True)),
    ("probe pass small load", _probe(True, 0.11)),
    ("one failure below threshold", _probe(False)),
]


@pytest.mark.parametrize("step", [c[1] for c in VISIBLE], ids=[c[0] for c in VISIBLE])
def test_visible_changes_raise_the_index(step: Callable[[Core], object]) -> None:
    core = _ready()
    registry = core.registry
    before, other = registry.service_index(SVC), registry.service_index("other")
    global_before = registry.global_index
    old_bodies = _bodies(core)
    step(core)
    assert registry.service_index(SVC) > before
    assert registry.service_index(SVC) == registry.global_index > global_before
    assert registry.service_index("other") == other
    assert IndexRaised(frozenset({SVC})) in core.effects
    assert core.get(f"{SERVICES}/{SVC}").index == registry.service_index(SVC)
    assert core.get(SERVICES).index == registry.global_index
    assert _bodies(core)[0] != old_bodies[0]


@pytest.mark.parametrize("step", [c[1] for c in INVISIBLE], ids=[c[0] for c in INVISIBLE])
def test_invisible_changes_keep_the_index_but_refresh_the_body(
    step: Callable[[Core], object],
) -> None:
    core = _ready()
    registry = core.registry
    before, global_before = registry.service_index(SVC), registry.global_index
    old = _bodies(core)
    assert _bodies(core) == old  # reads alone change nothing
    core.now += 5
    step(core)
    assert registry.service_index(SVC) == before
    assert registry.global_index == global_before
    assert not any(isinstance(e, IndexRaised) for e in core.effects)
    new = _bodies(core)
    # the timestamps moved: the cached bodies were rebuilt, not served stale
    assert new[0] != old[0] and new[3] != old[3]
    assert core.get(f"{SERVICES}/{SVC}").raw == new[0]


def test_load_rises_are_measured_from_the_last_rise() -> None:
    core = Core(with_config(watch_load_delta=0.1))
    core.register(SVC, "game-1")
    registry = core.registry
    last = registry.service_index(SVC)
    # (load, index rises?) - each compared with the load when the index last rose
    steps = [
        (0.05, False),
        (0.09, False),
        (0.1, True),  # 0.1 from 0.0
        (0.15, False),
        (0.19, False),
        (0.05, False),
        (0.0, True),  # 0.1 from 0.1
        (0.3, True),
        (0.21, False),
        (0.2, True),
        (1.0, True),
        (0.95, False),
    ]
    for load, rises_now in steps:
        core.heartbeat(SVC, "game-1", load=load)
        index = registry.service_index(SVC)
        assert (index > last) is rises_now, (load, index, last)
        last = index
        assert core.instance(SVC, "game-1")["load_percentage"] == load


def test_load_baseline_moves_with_any_rise() -> None:
    core = Core(with_config(registration_ttl=1e6))
    core.register(SVC, "game-1")
    core.heartbeat(SVC, "game-1", load=0.08)  # no rise
    core.register(SVC, "game-1", metadata={"x": "y"})  # a rise: baseline is now 0.08
    before = core.registry.service_index(SVC)
    core.heartbeat(SVC, "game-1", load=0.16)  # 0.08 from the baseline: no rise
    assert core.registry.service_index(SVC) == before
    core.heartbeat(SVC, "game-1", load=0.18)  # 0.1 from it
    assert core.registry.service_index(SVC) > before


def test_watch_load_delta_zero_wakes_on_any_load_change() -> None:
    core = Core(with_config(watch_load_delta=0.0))
    core.register(SVC, "game-1")
    before = core.registry.service_index(SVC)
    core.heartbeat(SVC, "game-1", load=0.0)
    assert core.registry.service_index(SVC) == before
    core.heartbeat(SVC, "game-1", load=0.001)
    assert core.registry.service_index(SVC) > before


def test_indexes_start_at_one_and_unknown_services_report_one() -> None:
    registry = Registry(RegistryConfig(), now=0.0, wall_offset=0.0)
    assert registry.global_index == 1
    assert registry.service_index("never-seen") == 1
    core = Core()
    assert core.get(SERVICES).index == 1
    assert core.get(PROMETHEUS).index == 1
    for path in ("x", "x/healthy", "x/instances"):
        assert core.get(f"{SERVICES}/{path}").index == 1


def test_each_rise_is_a_new_global_value_and_global_is_the_largest() -> None:
    core = Core()
    seen = [core.registry.global_index]
    for n in range(5):
        core.register(f"svc-{n % 3}", f"i-{n}")
        seen.append(core.registry.global_index)
        indexes = [core.registry.service_index(f"svc-{k}") for k in range(3)]
        assert core.registry.global_index == max(indexes)
        assert core.registry.service_index(f"svc-{n % 3}") == core.registry.global_index
    assert seen == sorted(set(seen))  # strictly rising


def test_removed_service_keeps_its_removal_index_until_it_returns() -> None:
    core = Core()
    core.register("gone", "g-1")
    core.unregister("gone", "g-1")
    removal = core.registry.service_index("gone")
    assert removal == core.registry.global_index
    core.register("other", "o-1")
    assert core.registry.service_index("gone") == removal
    assert core.get(f"{SERVICES}/gone").index == removal
    assert core.get(f"{SERVICES}/gone/healthy").index == removal
    assert core.get(f"{SERVICES}/gone/instances").index == removal
    core.register("gone", "g-2")
    assert core.registry.service_index("gone") == core.registry.global_index > removal


def test_one_index_raised_effect_per_drain_names_every_service() -> None:
    core = Core()
    for name in ("a", "b"):
        request = RegisterRequest(service_name=name, instance_id="1", host="h", port=1)
        core.registry.register(request, core.now)
    effects = core.registry.drain_effects()
    raised = [e for e in effects if isinstance(e, IndexRaised)]
    assert raised == [IndexRaised(frozenset({"a", "b"}))]
    assert effects[-1] == raised[0]
    assert core.registry.drain_effects() == []


def test_cached_read_is_reused_until_something_changes() -> None:
    core = _ready()
    first = core.registry.views.service_instances(SVC)
    assert core.registry.views.service_instances(SVC) is first
    assert core.registry.views.all_services() is core.registry.views.all_services()
    core.heartbeat("other", "o-1")  # another service: the global body changes, this one not
    assert core.registry.views.service_instances(SVC) is first
