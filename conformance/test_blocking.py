"""Blocking queries (``?index=<n>&wait=<d>``), Consul-style.

Each held request runs in a worker thread with its own client, so the test
thread can change the registry while it is held. Time bounds check
correctness, not speed: a woken query must come back within a couple of
seconds of the change, a timed-out one no earlier than its wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass

import httpx
import pytest

from conformance.client import (
    Api,
    assert_timestamp,
    assert_validation_error,
    index_of,
    instance_body,
    make_client,
)
from conformance.common import SECRET
from conformance.fixture_types import Names
from conformance.server_process import ServerProcess

#: How long a query must stay held before the test changes anything: long
#: enough that the request has surely reached the server and is parked.
SETTLE_SECONDS = 0.5


@dataclass
class Held:
    """A finished blocking query: its response and how long it took."""

    response: httpx.Response
    elapsed: float


class Watcher:
    """Starts blocking GETs in threads; joins every thread at teardown."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="blocking-query")

    def start(self, path: str, params: dict[str, str]) -> Future[Held]:
        def run() -> Held:
            with make_client(self.base_url, SECRET, timeout=30.0) as client:
                started = time.monotonic()
                response = client.get(path, params=params)
                return Held(response, time.monotonic() - started)

        return self.pool.submit(run)

    def start_held(self, path: str, params: dict[str, str]) -> Future[Held]:
        """Start a query and check it is actually being held, not answered."""
        future = self.start(path, params)
        wait_futures([future], timeout=SETTLE_SECONDS)
        if future.done():
            held = future.result()
            raise AssertionError(
                f"GET {path}?{params} was answered at once ({held.response.status_code}, "
                f"index {held.response.headers.get('x-discovery-index')}), not held"
            )
        return future

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def watcher(server: ServerProcess) -> Iterator[Watcher]:
    w = Watcher(server.url)
    try:
        yield w
    finally:
        w.close()


ENDPOINTS = {
    "service": "/v1/discovery/services/{service}",
    "healthy": "/v1/discovery/services/{service}/healthy",
    "sd-instances": "/v1/discovery/services/{service}/instances",
    "all-services": "/v1/discovery/services",
    "prometheus": "/v1/discovery/prometheus",
}


@pytest.mark.parametrize("template", ENDPOINTS.values(), ids=ENDPOINTS)
def test_held_query_wakes_when_an_instance_is_added(
    api: Api, watcher: Watcher, unique: Names, template: str
) -> None:
    service = unique("block-add")
    api.register_ok(instance_body(service, "first"))
    path = template.format(service=service)
    current = index_of(api.http.get(path))
    future = watcher.start_held(path, {"index": str(current), "wait": "10s"})
    changed_at = time.monotonic()
    api.register_ok(instance_body(service, "second"))
    held = future.result(timeout=15)
    woke_after = time.monotonic() - changed_at
    assert held.response.status_code == 200, held.response.text
    assert index_of(held.response) > current
    assert woke_after < 3.0, f"woke {woke_after:.2f} s after the change"
    if template.endswith("{service}"):
        ids = [i["instance_id"] for i in held.response.json()["instances"]]
        assert ids == ["first", "second"], "the answer must carry the change"


def _unregister_first(api: Api, service: str) -> None:
    assert api.unregister(service, "first").status_code == 200


def _change_metadata(api: Api, service: str) -> None:
    api.register_ok(instance_body(service, "first", metadata={"v": "2"}))


def _jump_load(api: Api, service: str) -> None:
    api.heartbeat_ok(service, "first", load_percentage=0.5)


def _move(api: Api, service: str) -> None:
    api.register_ok(instance_body(service, "first", port=2001))


CHANGES: dict[str, Callable[[Api, str], None]] = {
    "unregister": _unregister_first,
    "metadata": _change_metadata,
    "load-jump": _jump_load,
    "address": _move,
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES)
def test_held_query_wakes_on_each_kind_of_change(
    api: Api, watcher: Watcher, unique: Names, change: Callable[[Api, str], None]
) -> None:
    service = unique("block-kind")
    api.register_ok(instance_body(service, "first"))
    api.register_ok(instance_body(service, "keep"))
    path = f"/v1/discovery/services/{service}/instances"
    current = index_of(api.http.get(path))
    future = watcher.start_held(path, {"index": str(current), "wait": "10s"})
    changed_at = time.monotonic()
    change(api, service)
    held = future.result(timeout=15)
    assert held.response.status_code == 200, held.response.text
    assert index_of(held.response) > current
    assert time.monotonic() - changed_at < 3.0


def test_held_query_times_out_with_the_same_index(
    api: Api, watcher: Watcher, unique: Names
) -> None:
    service = unique("block-timeout")
    api.register_ok(instance_body(service, "i"))
    path = f"/v1/discovery/services/{service}"
    current = index_of(api.http.get(path))
    held = watcher.start(path, {"index": str(current), "wait": "1s"}).result(timeout=15)
    assert held.response.status_code == 200, held.response.text
    assert index_of(held.response) == current
    assert 0.9 <= held.elapsed < 5.0, f"wait=1s took {held.elapsed:.2f} s"
    assert [i["instance_id"] for i in held.response.json()["instances"]] == ["i"]


@pytest.mark.parametrize(
    ("wait", "low", "high"),
    [("500ms", 0.45, 4.0), ("1", 0.9, 5.0)],
    ids=["milliseconds", "bare-number-is-seconds"],
)
def test_wait_units(
    api: Api, watcher: Watcher, unique: Names, wait: str, low: float, high: float
) -> None:
    service = unique("block-units")
    api.register_ok(instance_body(service, "i"))
    path = f"/v1/discovery/services/{service}/healthy"
    current = index_of(api.http.get(path))
    held = watcher.start(path, {"index": str(current), "wait": wait}).result(timeout=15)
    assert held.response.status_code == 200, held.response.text
    assert low <= held.elapsed < high, f"wait={wait} took {held.elapsed:.2f} s"


def test_heartbeats_do_not_wake_a_held_query(api: Api, watcher: Watcher, unique: Names) -> None:
    """Timestamps alone never wake watchers; the answer still carries them fresh."""
    service = unique("block-hb")
    api.register_ok(instance_body(service, "i"))
    path = f"/v1/discovery/services/{service}"
    current = index_of(api.http.get(path))
    future = watcher.start(path, {"index": str(current), "wait": "2s"})
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline and not future.done():
        api.heartbeat_ok(service, "i", load_percentage=0.01)
        time.sleep(0.2)
    last = api.instance(service, "i")
    assert last is not None
    held = future.result(timeout=15)
    assert held.response.status_code == 200, held.response.text
    assert held.elapsed >= 1.9, f"woken after {held.elapsed:.2f} s by heartbeats alone"
    assert index_of(held.response) == current
    [instance] = held.response.json()["instances"]
    assert assert_timestamp(instance["last_heartbeat"]) >= assert_timestamp(last["last_heartbeat"])
    assert instance["load_percentage"] == 0.01


def test_index_from_a_previous_registry_life_gets_the_lower_index(
    api: Api, watcher: Watcher, unique: Names
) -> None:
    """An index ahead of the registry's (it restarted) must come back lower.

    docs/api.md says a request is held "until the index is greater than n"
    (Consul holds here too) but also that an index going backwards is the
    restart signal; whether the request is first held for its wait is left
    open, so both are accepted: what a watcher needs is a 200 carrying the
    registry's real, lower index, no later than the wait.
    """
    service = unique("block-future")
    api.register_ok(instance_body(service, "i"))
    path = f"/v1/discovery/services/{service}"
    current = index_of(api.http.get(path))
    held = watcher.start(path, {"index": str(current + 1000), "wait": "1s"}).result(timeout=15)
    assert held.response.status_code == 200, held.response.text
    assert index_of(held.response) == current
    assert held.elapsed < 5.0


@pytest.mark.parametrize("index", ["0", "1"])
def test_index_zero_or_passed_answers_at_once(
    api: Api, watcher: Watcher, unique: Names, index: str
) -> None:
    service = unique("block-now")
    api.register_ok(instance_body(service, "i"))
    path = f"/v1/discovery/services/{service}"
    held = watcher.start(path, {"index": index, "wait": "30s"}).result(timeout=15)
    assert held.response.status_code == 200
    assert held.elapsed < 2.0, f"index={index} was held {held.elapsed:.2f} s"


@pytest.mark.parametrize("wait", ["10m", "2h", "300s"])
def test_long_waits_are_clamped_not_rejected(api: Api, wait: str) -> None:
    response = api.http.get("/v1/discovery/services", params={"index": "0", "wait": wait})
    assert response.status_code == 200, response.text
    index_of(response)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"index": "abc"}, "index"),
        ({"index": "-1"}, "index"),
        ({"index": "1.5"}, "index"),
        ({"index": ""}, "index"),
        ({"index": "1", "wait": "abc"}, "wait"),
        ({"index": "1", "wait": "10x"}, "wait"),
        ({"index": "1", "wait": "-1s"}, "wait"),
        ({"index": "1", "wait": "s"}, "wait"),
    ],
    ids=[
        "index-abc",
        "index-negative",
        "index-fraction",
        "index-empty",
        "wait-abc",
        "wait-bad-unit",
        "wait-negative",
        "wait-unit-only",
    ],
)
def test_malformed_index_or_wait_is_422(api: Api, params: dict[str, str], field: str) -> None:
    for path in ("/v1/discovery/services", "/v1/discovery/services/anything/healthy"):
        assert_validation_error(api.http.get(path, params=params), field)
