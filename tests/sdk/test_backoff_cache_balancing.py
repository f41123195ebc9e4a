"""The pure building blocks: backoff pacing, quiet failure logs, the cache, p2c."""

from __future__ import annotations

import logging
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service_discovery import Backoff, ServiceInstance, ServiceInstanceList, power_of_two_choices
from service_discovery.backoff import FailureLog
from service_discovery.cache import DiscoveryCache


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.ceiling(10_000) == 30  # no overflow after a long outage
    assert backoff.ceiling(5, cap=10) == 10


@given(
    failures=st.integers(min_value=1, max_value=500),
    cap=st.one_of(st.none(), st.floats(min_value=0.01, max_value=1000)),
    seed=st.integers(),
)
def test_backoff_delay_is_never_a_tight_loop(failures: int, cap: float | None, seed: int) -> None:
    backoff = Backoff(initial=0.5, maximum=20.0)
    delay = backoff.delay(failures, random.Random(seed), cap)
    assert delay >= 0.25  # half the initial delay, whatever the cap
    assert delay <= backoff.ceiling(failures, cap) <= 20.0


def test_backoff_delays_are_jittered() -> None:
    rng = random.Random(1)
    delays = {Backoff().delay(5, rng) for _ in range(20)}
    assert len(delays) == 20
    assert all(8 <= d <= 16 for d in delays)


@pytest.mark.parametrize(
    "kwargs", [{"initial": 0}, {"initial": 2, "maximum": 1}, {"multiplier": 0.5}]
)
def test_backoff_rejects_spinning_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_failure_log_warns_once_per_period(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = FailureLog(logging.getLogger("t"), "Thing", clock=lambda: now[0], period=60)
    with caplog.at_level(logging.DEBUG, logger="t"):
        for _ in range(120):  # two minutes of failing every second
            log.failure(OSError("down"))
            now[0] += 1
        log.success()
    levels = Counter(r.levelname for r in caplog.records)
    assert levels["WARNING"] == 2
    assert levels["INFO"] == 1
    assert "recovered after 120 failed attempts" in caplog.text
    assert log.failures == 0


def _instance(name: str, load: float = 0.0) -> ServiceInstance:
    return ServiceInstance(
        service_name="svc", instance_id=name, host="h", port=1, load_percentage=load
    )


def test_cache_serves_fresh_then_expires() -> None:
    cache = DiscoveryCache(ttl=5)
    cache.store(("svc", True), ServiceInstanceList([_instance("a")], discovery_index=3), now=10)
    hit = cache.fresh(("svc", True), now=14)
    assert hit is not None
    assert (hit.stale, hit.discovery_index, hit.age_seconds) == (False, 3, 4)
    assert cache.fresh(("svc", False), now=14) is None
    assert cache.fresh(("svc", True), now=15) is None


def test_cache_hands_out_copies() -> None:
    cache = DiscoveryCache(ttl=5)
    cache.store(("svc", True), ServiceInstanceList([_instance("a")]), now=0)
    first = cache.fresh(("svc", True), now=1)
    assert first is not None
    first.clear()
    assert cache.fresh(("svc", True), now=1) == [_instance("a")]


def test_cache_fallback_marks_stale_and_holds_it_for_a_ttl() -> None:
    cache = DiscoveryCache(ttl=5)
    assert cache.fallback(("svc", True), now=0) is None
    cache.store(("svc", True), ServiceInstanceList([_instance("a")]), now=0)
    stale = cache.fallback(("svc", True), now=100)
    assert stale is not None
    assert (stale.stale, stale.age_seconds) == (True, 100)
    again = cache.fresh(("svc", True), now=104)
    assert again is not None and again.stale
    assert cache.fresh(("svc", True), now=105) is None
    cache.store(("svc", True), ServiceInstanceList([_instance("b")]), now=106)
    refreshed = cache.fresh(("svc", True), now=106)
    assert refreshed is not None and not refreshed.stale


def test_cache_does_not_keep_an_empty_answer() -> None:
    """A fresh deploy's first instance must be found on the next call, not 5 s later."""
    cache = DiscoveryCache(ttl=5)
    cache.store(("svc", True), ServiceInstanceList([], discovery_index=1), now=0)
    assert cache.fresh(("svc", True), now=0.1) is None
    # And an empty answer replaces an older list: it must not come back as stale.
    cache.store(("svc", True), ServiceInstanceList([_instance("a")]), now=1)
    cache.store(("svc", True), ServiceInstanceList([]), now=2)
    assert cache.fresh(("svc", True), now=2) is None
    assert cache.fallback(("svc", True), now=3) is None


def test_cache_max_stale_drops_old_answers() -> None:
    cache = DiscoveryCache(ttl=5, max_stale=60)
    cache.store(("svc", True), ServiceInstanceList([_instance("a")]), now=0)
    assert cache.fallback(("svc", True), now=60) is not None
    assert cache.fallback(("svc", True), now=61) is None
    assert cache.fallback(("svc", True), now=62) is None


def test_cache_invalidate() -> None:
    cache = DiscoveryCache(ttl=5)
    for key in [("a", True), ("a", False), ("b", True)]:
        cache.store(key, ServiceInstanceList([_instance("a")]), now=0)
    cache.invalidate("a")
    assert cache.fresh(("a", True), 0) is None and cache.fresh(("a", False), 0) is None
    assert cache.fresh(("b", True), 0) is not None
    cache.invalidate()
    assert cache.fresh(("b", True), 0) is None


def test_p2c_trivial_cases() -> None:
    assert power_of_two_choices([]) is None
    only = _instance("only", 0.9)
    assert power_of_two_choices([only]) is only


def _split(loads: list[float], picks: int, seed: int) -> list[float]:
    """Share of ``picks`` that went to each instance (``i0``, ``i1``, ...)."""
    instances = [_instance(f"i{n}", load) for n, load in enumerate(loads)]
    rng = random.Random(seed)
    counts = Counter(power_of_two_choices(instances, rng).instance_id for _ in range(picks))  # type: ignore[union-attr]
    return [counts[f"i{n}"] / picks for n in range(len(loads))]


def test_p2c_two_equal_replicas_share_evenly() -> None:
    shares = _split([0.5, 0.5], picks=10_000, seed=1)
    print(f"equal replicas: {shares[0]:.2%} / {shares[1]:.2%}")
    assert all(0.45 <= share <= 0.55 for share in shares)


@pytest.mark.parametrize("loads", [[0.3, 0.6], [0.30, 0.31]])
def test_p2c_two_replicas_favour_the_less_loaded_without_a_stampede(loads: list[float]) -> None:
    """Two distinct draws made this a pure least-loaded choice: 100 % to one replica."""
    less, more = _split(loads, picks=10_000, seed=2)
    print(f"loads {loads}: {less:.2%} / {more:.2%}")
    assert less > more
    # With replacement the more loaded one is chosen when both draws hit it: 1/4.
    assert 0.20 <= more <= 0.30


def test_p2c_favours_lower_loads_and_starves_none() -> None:
    shares = _split([n / 10 for n in range(5)], picks=10_000, seed=42)
    assert shares[0] > shares[1] > shares[2] > shares[3] > shares[4] > 0
    # The most loaded of n is picked only when both draws hit it: about 1/n².
    assert 0.02 <= shares[4] <= 0.06


def test_p2c_spreads_ties_evenly() -> None:
    instances = [_instance(f"i{n}") for n in range(4)]
    rng = random.Random(7)
    picks = Counter(power_of_two_choices(instances, rng).instance_id for _ in range(8000))  # type: ignore[union-attr]
    assert set(picks) == {"i0", "i1", "i2", "i3"}
    assert all(1700 < count < 2300 for count in picks.values())
