"""TTL expiry, deregistration of long-unhealthy instances, and self-preservation."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import pytest
from core_support import START, Core, with_config

from sd_core import InstanceRemoved, RemovalReason, SelfPreservationChanged

SVC = "svc"


def _just_before(t: float) -> float:
    return math.nextafter(t, -math.inf)


def _assert_removed_at(
    core: Core, moment: float, service: str = "game-service", instance: str = "game-1"
) -> None:
    """Listed until a tick before `moment`, gone at `moment` exactly: the deadline is exact."""
    core.advance_to(_just_before(moment))
    assert core.present(service, instance)
    core.advance_to(moment)
    assert not core.present(service, instance)


# ------------------------------------------------------------------ expiry


@pytest.mark.parametrize(
    ("ttl", "beat_after"), [(180.0, 50.0), (180.0, 179.5), (7.5, 3.25), (0.5, 0.125)]
)
def test_expiry_at_exactly_ttl_and_not_a_tick_later(ttl: float, beat_after: float) -> None:
    core = Core(with_config(registration_ttl=ttl))
    core.register()
    core.advance_to(START + beat_after)
    assert core.heartbeat().status == 200
    beat = core.now
    deadline = beat + ttl
    deadlines = []
    while True:
        nxt = core.registry.next_deadline()
        assert nxt is not None
        if nxt >= deadline:
            break
        deadlines.append(nxt)
        core.advance_to(max(core.now, nxt))
        assert core.present(), f"removed early at {core.now}"
    assert core.registry.next_deadline() == deadline  # the core names the exact moment
    core.now = _just_before(deadline)
    core.registry.on_timer(core.now)  # a driver may wake early: nothing happens
    assert core.present()
    core.effects.clear()
    core.now = deadline
    core.registry.on_timer(deadline)
    core.drain()
    assert not core.present()
    assert InstanceRemoved("game-service", "game-1", RemovalReason.TTL_EXPIRED) in core.effects
    assert core.registry.stats.expirations == 1
    assert core.heartbeat().status == 404  # the client's cue to register again


def test_heartbeat_just_before_the_deadline_saves_it() -> None:
    core = Core()
    core.register()
    deadline = START + 180
    core.advance_to(_just_before(deadline))
    assert core.heartbeat().status == 200
    saved_at = core.now
    core.advance_to(deadline)
    assert core.present()
    _assert_removed_at(core, saved_at + 180)


def test_registration_counts_as_the_first_heartbeat() -> None:
    core = Core()
    core.register()
    _assert_removed_at(core, START + 180)


def test_reregistration_renews_the_lease() -> None:
    core = Core()
    core.register()
    core.advance_to(START + 100)
    core.register()
    core.advance_to(START + 279)
    assert core.present()
    core.advance_to(START + 280)
    assert not core.present()


def test_passing_probes_do_not_renew_the_lease() -> None:
    core = Core()
    core.register()
    while core.now < START + 150:
        core.probe(passed=True)
    assert core.status() == "healthy"
    core.advance_to(START + 180)
    assert not core.present()


def test_expiry_raises_the_index_and_the_service_keeps_it() -> None:
    core = Core()
    core.register("game-service", "game-1")
    core.register("other", "o-1")
    core.advance_to(START + 100)
    core.heartbeat("other", "o-1")
    core.advance_to(START + 180)
    removal_index = core.registry.service_index("game-service")
    assert removal_index == core.registry.global_index
    reply = core.get("/v1/discovery/services/game-service")
    assert (reply.status, reply.index) == (404, removal_index)
    assert core.registry.service_index("other") < removal_index


def test_many_instances_expire_each_at_its_own_time() -> None:
    core = Core(with_config(self_preservation_threshold=0))
    for n in range(20):
        core.register(SVC, f"i-{n:02d}")
        core.now += 1.0
    for n in range(20):
        _assert_removed_at(core, START + n + 180, SVC, f"i-{n:02d}")
        assert core.registry.instance_count == 19 - n


# -------------------------------------------------------- unhealthy removal


def _unhealthy_core(after: float) -> tuple[Core, float]:
    core = Core(with_config(deregister_unhealthy_after=after, registration_ttl=1e6))
    core.register()
    core.probe(passed=False)
    core.probe(passed=False)
    assert core.status() == "unhealthy"
    return core, core.now


def test_unhealthy_too_long_is_removed_at_exactly_the_deadline() -> None:
    core, since = _unhealthy_core(60)
    core.effects.clear()
    _assert_removed_at(core, since + 60)
    assert since + 60 in core.wakes
    assert (
        InstanceRemoved("game-service", "game-1", RemovalReason.UNHEALTHY_TOO_LONG) in core.effects
    )
    assert core.registry.stats.unhealthy_removals == 1
    assert core.registry.service_index("game-service") == core.registry.global_index


def test_recovery_restarts_the_unhealthy_clock() -> None:
    core, since = _unhealthy_core(60)
    core.probe(passed=True)
    assert core.status() == "healthy"
    core.probe(passed=False)
    core.probe(passed=False)
    again = core.now
    assert again > since + 60
    assert core.present()
    _assert_removed_at(core, again + 60)


def test_address_change_stops_the_unhealthy_clock() -> None:
    core, since = _unhealthy_core(60)
    core.register(port=9999)
    assert core.status() == "unknown"
    core.advance_to(since + 61)
    assert core.present()


def test_zero_means_never_deregister_unhealthy() -> None:
    core, _ = _unhealthy_core(0)
    core.advance(10_000)
    assert core.present()
    assert core.status() == "unhealthy"


# -------------------------------------------------------- self-preservation


def _fleet(core: Core, n: int) -> list[str]:
    ids = [f"i-{k:02d}" for k in range(n)]
    for iid in ids:
        core.register(SVC, iid)
    return ids


def _run(core: Core, until: float, beating: Callable[[float], Iterable[str]]) -> None:
    """Every 30 s up to `until`: wake the core, then heartbeat the instances still alive."""
    while core.now + 30 <= until:
        core.advance_to(core.now + 30)
        for iid in beating(core.now):
            assert core.heartbeat(SVC, iid).status == 200, (iid, core.now)


def _health(core: Core) -> tuple[object, object]:
    document = core.api.health_document(core.now)
    return document["self_preservation"], document["self_preservation_reason"]


def _sp_effects(core: Core) -> list[SelfPreservationChanged]:
    return [e for e in core.effects if isinstance(e, SelfPreservationChanged)]


def test_self_preservation_enters_and_ends_when_heartbeats_come_back() -> None:
    core = Core()
    ids = _fleet(core, 20)
    silent, steady = ids[:15], ids[15:]
    _run(core, START + 60, lambda t: ids)
    _run(core, START + 210, lambda t: steady)
    assert _health(core) == (False, None)
    # the 15 silent instances fall due at START+240: 75% silent > 50%: expiry pauses
    core.advance_to(START + 240)
    assert core.registry.instance_count == 20
    active, reason = _health(core)
    assert active is True
    assert isinstance(reason, str) and "75%" in reason and "20" in reason
    assert _sp_effects(core) == [SelfPreservationChanged(True, reason)]
    assert core.registry.stats.self_preservation_entries == 1
    assert core.registry.stats.expirations == 0
    for iid in steady:
        core.heartbeat(SVC, iid)
    _run(core, START + 390, lambda t: steady)
    nxt = core.registry.next_deadline()
    assert nxt is not None and nxt <= core.now + 1.0  # re-checks every second
    assert core.registry.instance_count == 20
    assert _health(core)[0] is True
    # ten of the silent ones come back: 5 of 20 silent is under the threshold
    core.advance_to(START + 400)
    back = silent[:10]
    for iid in back:
        assert core.heartbeat(SVC, iid).status == 200
    assert _health(core)[0] is True  # noticed at the next re-check, not before
    core.advance_to(START + 401)
    assert _health(core) == (False, None)
    assert _sp_effects(core)[-1] == SelfPreservationChanged(False, "heartbeats came back")
    # the still-silent ones, long overdue, expire at that same wake-up; the rest stay
    assert sorted(i["instance_id"] for i in core.services()[SVC]) == sorted(back + steady)
    assert core.registry.stats.expirations == 5
    # and the ones that came back now live on their renewed lease
    core.advance_to(_just_before(START + 400 + 180))
    assert all(core.present(SVC, iid) for iid in back)


@pytest.mark.parametrize(
    ("last_beat", "re_enters"),
    [
        (1110.0, False),  # due at +1290, inside the TTL after the maximum ended (+1320)
        (1170.0, True),  # due at +1350, after it
    ],
)
def test_self_preservation_ends_after_the_maximum_and_cannot_restart_for_a_ttl(
    last_beat: float, re_enters: bool
) -> None:
    core = Core(with_config(self_preservation_min_instances=4))
    ids = _fleet(core, 20)
    steady = ids[15:]
    _run(core, START + 60, lambda t: ids)
    _run(core, START + 210, lambda t: steady)
    core.advance_to(START + 240)
    assert _health(core)[0] is True
    entered = START + 240
    _run(core, entered + 870, lambda t: steady)
    core.advance_to(_just_before(entered + 900))
    assert core.registry.instance_count == 20
    assert _health(core)[0] is True
    core.advance_to(entered + 900)
    assert _health(core) == (False, None)
    assert _sp_effects(core)[-1] == SelfPreservationChanged(False, "maximum of 900s reached")
    assert core.registry.instance_count == 5  # the due expiries ran at that moment
    assert core.registry.stats.expirations == 15
    # four of the five left stop heartbeating: 80% silent, at least 4 instances
    survivor = steady[-1]
    _run(core, START + last_beat, lambda t: steady)
    _run(core, START + 1500, lambda t: [survivor])
    if re_enters:
        assert _health(core)[0] is True
        assert core.registry.instance_count == 5
        assert core.registry.stats.self_preservation_entries == 2
    else:
        assert _health(core) == (False, None)
        assert core.registry.instance_count == 1
        assert core.registry.stats.self_preservation_entries == 1
        assert core.registry.stats.expirations == 19


# (id, config, fleet size, silent count): expiry must not pause
NEVER_ENTERS = [
    ("fewer than the minimum", {}, 9, 8),
    ("share exactly at the threshold", {}, 20, 10),
    ("threshold 0 turns it off", {"self_preservation_threshold": 0.0}, 20, 19),
    ("higher threshold", {"self_preservation_threshold": 0.8}, 20, 16),
    ("larger minimum", {"self_preservation_min_instances": 21}, 20, 15),
]


@pytest.mark.parametrize(
    ("config", "size", "silent_count"),
    [c[1:] for c in NEVER_ENTERS],
    ids=[c[0] for c in NEVER_ENTERS],
)
def test_self_preservation_does_not_enter(
    config: dict[str, float], size: int, silent_count: int
) -> None:
    core = Core(with_config(**config))
    ids = _fleet(core, size)
    steady = ids[silent_count:]
    _run(core, START + 60, lambda t: ids)
    _run(core, START + 210, lambda t: steady)
    core.advance_to(_just_before(START + 240))
    assert core.registry.instance_count == size
    core.advance_to(START + 240)
    assert _health(core) == (False, None)
    assert core.registry.instance_count == size - silent_count
    assert _sp_effects(core) == []


def test_self_preservation_enters_just_above_the_threshold() -> None:
    core = Core()
    ids = _fleet(core, 20)
    steady = ids[11:]
    _run(core, START + 60, lambda t: ids)
    _run(core, START + 210, lambda t: steady)
    core.advance_to(START + 240)
    assert _health(core)[0] is True  # 11 of 20 silent: 55% > 50%
    assert core.registry.instance_count == 20


@pytest.mark.parametrize(
    ("quiet_since", "enters"),
    [
        (120.0, True),  # quiet for 120 s at the check: over half a TTL
        (150.0, True),  # exactly half a TTL (90 s): silent
        (150.5, False),  # just under half a TTL: not silent
    ],
)
def test_silent_means_no_heartbeat_for_half_a_ttl(quiet_since: float, enters: bool) -> None:
    """8 long-silent + 4 quiet-for-a-while of 20: 12 of 20 silent only if the 4 count."""
    core = Core()
    ids = _fleet(core, 20)
    quiet, steady = ids[8:12], ids[12:]  # ids[:8] stop after START+60
    _run(core, START + 60, lambda t: ids)
    _run(core, START + 120, lambda t: quiet + steady)
    if quiet_since != 120.0:
        core.advance_to(START + quiet_since)
        for iid in quiet:
            core.heartbeat(SVC, iid)
    _run(core, START + 210, lambda t: steady)
    core.advance_to(START + 240)  # the 8 fall due; the quiet 4 are well inside their TTL
    assert _health(core)[0] is enters
    assert core.registry.instance_count == (20 if enters else 12)
    assert all(core.present(SVC, iid) for iid in quiet)
