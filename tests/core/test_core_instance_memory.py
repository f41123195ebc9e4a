"""What an instance costs: its metadata capped in bytes, its rendered JSON held once per body.

Measured with tracemalloc over the core alone (no server, no allocator
slack), so the figures are deterministic: the same operations allocate the
same bytes on one CPython.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Iterator

import pytest
from core_support import PROMETHEUS, REGISTER, SERVICES, Core, register_body, with_config

from sd_core import body as pieces_module
from sd_core import render
from sd_core.body import Pieces
from sd_core.render import instance_json

#: 31 entries of 6 + 120 bytes: 3,906 bytes, inside the default cap of 4,096.
CAPPED = {f"key{n:02d}": "v" * 120 for n in range(31)}
VIEWS = (SERVICES, f"{SERVICES}/svc", f"{SERVICES}/svc/healthy", f"{SERVICES}/svc/instances")
EVERY_VIEW = (*VIEWS, PROMETHEUS)


def test_metadata_over_the_byte_cap_is_422_and_changes_nothing() -> None:
    core = Core(with_config(max_metadata_bytes=100))
    at_cap = {"k": "v" * 99}
    assert core.send("POST", REGISTER, register_body("svc", "i-1", metadata=at_cap)).status == 200
    over = {"k": "v" * 99, "x": ""}
    reply = core.send("POST", REGISTER, register_body("svc", "i-2", metadata=over))
    assert (reply.status, reply.error, reply.detail_fields) == (
        422,
        "validation_error",
        ["metadata"],
    )
    assert "at most 100 bytes" in reply.body["details"][0]["message"]
    assert not core.present("svc", "i-2")


def test_the_cap_counts_utf8_bytes_of_keys_and_values() -> None:
    core = Core(with_config(max_metadata_bytes=10))
    assert (
        core.send("POST", REGISTER, register_body("svc", "i-1", metadata={"é": "éé"})).status == 200
    )
    reply = core.send("POST", REGISTER, register_body("svc", "i-1", metadata={"é": "ééééé"}))
    assert reply.status == 422  # 12 bytes in UTF-8, 6 characters


def test_the_default_cap_is_4_kib() -> None:
    core = Core()
    just_over = {f"k{n}": "v" * 1000 for n in range(4)} | {"k": "v" * 93}  # 4,102 bytes
    reply = core.send("POST", REGISTER, register_body("svc", "i-1", metadata=just_over))
    assert (reply.status, reply.detail_fields) == (422, ["metadata"])
    assert core.send("POST", REGISTER, register_body("svc", "i-1", metadata=CAPPED)).status == 200


def _fleet(core: Core, count: int) -> None:
    for n in range(count):
        core.register("svc", f"i-{n:03d}", metadata=CAPPED)
    for n in range(0, count, 2):
        core.probe(service="svc", instance=f"i-{n:03d}", passed=True)


def test_an_instance_at_the_cap_costs_under_3x_its_json_once_every_view_is_read() -> None:
    """Registered, then every view read: record, fragments and five cached bodies together.

    A large fragment is a view of the service's body rather than a copy, the
    metadata's encoded tail a view of the fragment, and the global and
    `healthy` bodies views of the service's `instances` and `targets` bodies
    (`sd_core.body.Pieces`), and the metadata kept only as that encoded tail
    (`Instance.keep_metadata_as_text`): 2.47x here, against 3.85x with the
    parsed metadata kept too, 6.3x with a copy per body and 9.1x with a copy of
    each fragment too. What is left: the `instances` body (1x), the `targets`
    body (1x, its labels repeat the metadata), the record and its views.
    """
    core = Core()
    core.register("warm", "w", metadata=CAPPED)  # first-use allocations out of the figure
    for path in EVERY_VIEW:
        core.handle("GET", path)
    count = 200
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _fleet(core, count)
        for path in EVERY_VIEW:
            core.handle("GET", path)
        gc.collect()
        each = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    instance = core.registry._services["svc"].instances["i-001"]
    size = len(instance_json(instance, core.registry.wall_offset))
    print(f"\n{each:.0f} bytes an instance, {each / size:.2f}x its {size}-byte JSON")
    assert each <= 3 * size, f"{each:.0f} bytes an instance, {each / size:.2f}x its JSON"
    assert each <= 13 * 1024


def test_metadata_kept_as_text_reads_back_filters_and_changes() -> None:
    """Once the dict is dropped, every reader of the metadata still gets all of it."""
    core = Core()
    core.register("svc", "i-1", metadata=CAPPED)
    core.handle("GET", "/v1/discovery/services/svc")
    instance = core.registry._services["svc"].instances["i-1"]
    assert instance._metadata is None  # kept once, as the rendered text
    assert instance.metadata == CAPPED
    key, value = next(iter(CAPPED.items()))
    filtered = core.get("/v1/discovery/services/svc", query=f"meta.{key}={value}")
    assert [i["instance_id"] for i in filtered.body["instances"]] == ["i-1"]
    assert core.registry.snapshot()["instances"][0]["metadata"] == CAPPED
    labels = core.targets()[0]["labels"]
    assert labels[key] == value
    changed = {**CAPPED, key: "other"}
    before = core.registry.service_index("svc")
    core.register("svc", "i-1", metadata=changed)
    assert core.registry.service_index("svc") > before
    assert core.instance("svc", "i-1")["metadata"] == changed
    assert instance.metadata == changed


@pytest.fixture
def unshared(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(render, "SHARE_MIN", 10**9)
    monkeypatch.setattr(pieces_module, "VIEW_MIN", 10**9)
    yield


def _history(core: Core) -> list[bytes]:
    """Reads between heartbeats, drains and re-registrations: every body, in order."""
    bodies: list[bytes] = []

    def read_all() -> None:
        for path in EVERY_VIEW:
            bodies.append(core.send("GET", path).raw)

    _fleet(core, 6)
    read_all()
    core.heartbeat("svc", "i-001")
    read_all()
    core.send("PUT", "/v1/discovery/maintenance/svc/i-002", {"reason": "deploy"})
    read_all()
    core.register("svc", "i-003", metadata={**CAPPED, "key00": "changed" * 10})
    core.heartbeat("svc", "i-004", load=0.5)
    read_all()
    core.probe(service="svc", instance="i-005", passed=True)
    core.unregister("svc", "i-000")
    read_all()
    return bodies


def test_shared_fragments_render_the_same_bytes(unshared: None) -> None:
    expected = _history(Core())
    for body in expected:
        json.loads(body)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(render, "SHARE_MIN", 512)
        patch.setattr(pieces_module, "VIEW_MIN", 512)
        assert _history(Core()) == expected


def test_a_large_fragment_is_a_view_of_the_cached_body() -> None:
    core = Core()
    _fleet(core, 3)
    core.handle("GET", f"{SERVICES}/svc")
    body = core.registry._services["svc"].cache["instances"]
    instance = core.registry._services["svc"].instances["i-001"]
    assert isinstance(instance.rendered_json, memoryview)
    assert instance.rendered_json.obj is body
    assert isinstance(instance.rendered_tail, memoryview)
    assert instance.rendered_tail.obj is body
    core.handle("GET", f"{SERVICES}/svc", query="meta.key00=" + "v" * 120)
    assert instance.rendered_json.obj is body  # never a filtered body: it may be evicted


def test_the_global_and_healthy_bodies_are_views_of_the_service_bodies() -> None:
    """No copy of an instance's JSON per view: `/services`, `healthy` and `/prometheus`
    point into the service's cached `instances` and `targets` bodies."""
    core = Core()
    _fleet(core, 6)  # every other instance healthy: three runs of one
    views = core.registry.views
    every, healthy, targets = (
        views.all_services(),
        views.healthy_instances("svc"),
        views.all_targets(),
    )
    cache = core.registry._services["svc"].cache
    assert isinstance(every, Pieces) and isinstance(healthy, Pieces)
    assert isinstance(targets, Pieces)
    for pieces, source in ((every, "instances"), (healthy, "instances"), (targets, "targets")):
        views_of = {part.obj for part in pieces._parts if isinstance(part, memoryview)}
        assert views_of == {cache[source]}
    assert len(healthy._parts) == 7  # the prefix, three runs, the two commas, the end
    assert json.loads(bytes(healthy))["healthy_instances"] == [
        i for i in json.loads(cache["instances"])["instances"] if i["status"] == "healthy"
    ]
