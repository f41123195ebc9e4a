"""The garbage-collector settings a server process starts with (`frontends/runtime/collector.py`).

Each test restores the interpreter's collector as it found it, since the
test process is the one being tuned.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from frontends.runtime.collector import MIDDLE_THRESHOLD, OLD_THRESHOLD, tune_collector
from frontends.runtime.settings import load_settings
from sd_core import ConfigError

SECRET = "collector-test-secret-" + "x" * 16


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_the_default_raises_the_young_threshold() -> None:
    assert load_settings({"SERVICE_DISCOVERY_SECRET": SECRET}).gc_young_threshold == 25_000


@pytest.mark.parametrize(("raw", "expected"), [("0", 0), (" 40000 ", 40_000), ("", 25_000)])
def test_the_threshold_is_read_from_the_environment(raw: str, expected: int) -> None:
    env = {"SERVICE_DISCOVERY_SECRET": SECRET, "SERVICE_DISCOVERY_GC_YOUNG_THRESHOLD": raw}
    assert load_settings(env).gc_young_threshold == expected


@pytest.mark.parametrize("raw", ["-1", "lots", "1.5"])
def test_a_bad_threshold_is_refused_naming_the_variable(raw: str) -> None:
    env = {"SERVICE_DISCOVERY_SECRET": SECRET, "SERVICE_DISCOVERY_GC_YOUNG_THRESHOLD": raw}
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert raised.value.name == "SERVICE_DISCOVERY_GC_YOUNG_THRESHOLD"


@pytest.mark.usefixtures("collector")
def test_tuning_freezes_what_exists_and_sets_the_thresholds() -> None:
    gc.unfreeze()
    survivor = [object() for _ in range(10)]  # tracked: a list holding objects
    assert tune_collector(30_000) == (30_000, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    assert gc.get_threshold() == (30_000, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    assert gc.get_freeze_count() > 0
    assert not any(obj is survivor for obj in gc.get_objects())  # frozen: scanned by no collection
    assert gc.isenabled()


@pytest.mark.usefixtures("collector")
def test_zero_keeps_pythons_own_settings() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    assert tune_collector(0) == (700, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("collector")
def test_frozen_cycles_made_after_tuning_are_still_collected() -> None:
    """Freezing covers what startup built; garbage made later is collected as before."""
    tune_collector(30_000)

    class Node:
        other: object = None

    first, second = Node(), Node()
    first.other, second.other = second, first
    del first, second
    assert gc.collect() >= 2
