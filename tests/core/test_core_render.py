"""Read bodies: instance rendering, ordering, healthy filter, Prometheus HTTP SD labels."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from core_support import PROMETHEUS, SERVICES, START, Core, iso, with_config
from hypothesis import example, given
from hypothesis import strategies as st

from sd_core.body import as_bytes
from sd_core.instance import Instance
from sd_core.render import instance_json, iso_timestamp

SVC = "game-service"

# (id, metadata, the labels expected beside the four built-in ones)
LABELS: list[tuple[str, dict[str, str], dict[str, str]]] = [
    ("plain", {"version": "1.0.0", "zone": "eu"}, {"version": "1.0.0", "zone": "eu"}),
    ("__address__ dropped", {"__address__": "evil:6666"}, {}),
    ("__meta dropped", {"__meta_x": "1", "__scheme__": "https"}, {}),
    ("sanitised to __ dropped", {"_-x": "1", "-_y": "2"}, {}),
    (
        "built-ins not overridden",
        {"instance": "x", "service_name": "x", "status": "x", "load_percentage": "x"},
        {},
    ),
    ("sanitised built-in dropped", {"service-name": "x", "load.percentage": "y"}, {}),
    ("job dropped", {"job": "other-job"}, {}),
    ("case differs from built-in", {"Instance": "I"}, {"Instance": "I"}),
    ("dash", {"app-version": "2"}, {"app_version": "2"}),
    ("dot and space", {"a.b c": "v"}, {"a_b_c": "v"}),
    ("non-ascii", {"région": "eu"}, {"r_gion": "eu"}),
    ("collision dash dot", {"app.version": "dot", "app-version": "dash"}, {"app_version": "dash"}),
    (
        "collision with exact",
        {"app_version": "exact", "app-version": "dash"},
        {"app_version": "dash"},
    ),
    ("leading digit dropped", {"9abc": "x", "1": "y"}, {}),
    ("leading underscore kept", {"_x": "y"}, {"_x": "y"}),
    ("leading dash becomes _", {"-x": "y"}, {"_x": "y"}),
    ("empty value", {"e": ""}, {"e": ""}),
]


@pytest.mark.parametrize(
    ("metadata", "extra"), [(c[1], c[2]) for c in LABELS], ids=[c[0] for c in LABELS]
)
def test_prometheus_labels(metadata: dict[str, str], extra: dict[str, str]) -> None:
    core = Core()
    core.register(
        SVC, "game-1", host="localhost", port=8080, metadata=metadata, load_percentage=0.3
    )
    groups = core.targets()
    assert groups == [
        {
            "targets": ["localhost:8080"],
            "labels": {
                "instance": "game-1",
                "service_name": SVC,
                "status": "unknown",
                "load_percentage": "0.3",
                **extra,
            },
        }
    ]
    assert core.get(f"{SERVICES}/{SVC}/instances").body == groups
    assert core.get(PROMETHEUS).body == groups
    # the instance itself still shows its metadata unchanged
    assert core.instance(SVC, "game-1")["metadata"] == metadata


def test_collision_winner_does_not_depend_on_insertion_order() -> None:
    first, second = Core(), Core()
    first.register(metadata={"app-version": "a", "app.version": "b", "app_version": "c"})
    second.register(metadata={"app_version": "c", "app.version": "b", "app-version": "a"})
    assert first.targets() == second.targets()
    assert first.targets()[0]["labels"]["app_version"] == "a"


#: (host as registered, host:port as Prometheus targets and the probe URL show it).
ADDRESSES = [
    ("::1", "[::1]:8080"),
    ("[::1]", "[::1]:8080"),
    ("2001:db8::7", "[2001:db8::7]:8080"),
    ("10.0.0.1", "10.0.0.1:8080"),
    ("game.local", "game.local:8080"),
]


@pytest.mark.parametrize(("host", "target"), ADDRESSES)
def test_ipv6_is_bracketed_in_target_and_probe_url_only(host: str, target: str) -> None:
    core = Core()
    core.register(host=host)
    assert core.targets()[0]["targets"] == [target]
    assert core.take_probe().url == f"http://{target}/health"
    assert core.instance()["host"] == host  # shown exactly as sent


@pytest.mark.parametrize(
    ("load", "label"), [(None, "0.0"), (0.3, "0.3"), (1, "1.0"), (0.1 + 0.2, "0.30000000000000004")]
)
def test_every_label_value_is_a_string(load: float | None, label: str) -> None:
    core = Core()
    core.register(metadata={"a": "1", "b": "x"}, load_percentage=load)
    labels = core.targets()[0]["labels"]
    assert all(isinstance(v, str) for v in labels.values())
    assert labels["load_percentage"] == label


def test_targets_show_every_instance_with_its_status() -> None:
    core = Core(with_config(failure_threshold=1))
    core.register(SVC, "game-1")
    core.register(SVC, "game-2")
    core.probe(SVC, "game-1", passed=True)
    core.probe(SVC, "game-2", passed=False)
    statuses = {g["labels"]["instance"]: g["labels"]["status"] for g in core.targets()}
    assert statuses == {"game-1": "healthy", "game-2": "unhealthy"}


def test_ordering_by_service_then_instance() -> None:
    core = Core()
    for service, iid in [("b", "2"), ("a", "z"), ("b", "10"), ("a", "b"), ("B", "1"), ("a", "A")]:
        core.register(service, iid)
    services = core.get(SERVICES).body["services"]
    assert list(services) == ["B", "a", "b"]
    assert [i["instance_id"] for i in services["a"]] == ["A", "b", "z"]
    assert [i["instance_id"] for i in services["b"]] == ["10", "2"]
    groups = core.get(PROMETHEUS).body
    assert [(g["labels"]["service_name"], g["labels"]["instance"]) for g in groups] == [
        ("B", "1"),
        ("a", "A"),
        ("a", "b"),
        ("a", "z"),
        ("b", "10"),
        ("b", "2"),
    ]
    assert [i["instance_id"] for i in core.get(f"{SERVICES}/a").body["instances"]] == [
        "A",
        "b",
        "z",
    ]


def test_service_and_healthy_bodies() -> None:
    core = Core(with_config(failure_threshold=1))
    for iid in ("game-3", "game-1", "game-2"):
        core.register(SVC, iid)
    core.probe(SVC, "game-1", passed=True)
    core.probe(SVC, "game-2", passed=False)
    core.probe(SVC, "game-3", passed=True)
    service = core.get(f"{SERVICES}/{SVC}").body
    assert list(service) == ["service_name", "instances"]
    assert service["service_name"] == SVC
    assert [i["status"] for i in service["instances"]] == ["healthy", "unhealthy", "healthy"]
    healthy = core.get(f"{SERVICES}/{SVC}/healthy").body
    assert list(healthy) == ["service_name", "healthy_instances"]
    assert [i["instance_id"] for i in healthy["healthy_instances"]] == ["game-1", "game-3"]
    assert healthy["healthy_instances"][0] == service["instances"][0]


def test_timestamps_are_utc_with_microseconds_and_z() -> None:
    core = Core(start=0.0)
    core.now = 0.5
    core.register()
    probe = core.take_probe()
    core.now = 12.000001
    core.answer(probe, passed=True)
    instance = core.instance()
    assert instance["registered_at"] == "2024-01-15T10:30:00.500000Z"
    assert instance["last_heartbeat"] == "2024-01-15T10:30:00.500000Z"
    assert instance["last_health_check"] == iso(12.000001) == "2024-01-15T10:30:12.000001Z"


def test_empty_registry_bodies() -> None:
    core = Core()
    assert core.get(SERVICES).body == {"services": {}}
    assert core.get(PROMETHEUS).raw == b"[]"


def test_rendered_json_is_valid_with_awkward_strings() -> None:
    core = Core()
    awkward = {"quote": 'a"b', "backslash": "a\\b", "unicode": "日本 ✓ \u2028", "slash": "</x>"}
    core.register(metadata=awkward, health_endpoint='/h?q="x"&y=\\')
    body: Any = json.loads(as_bytes(core.registry.views.all_services()))
    assert body["services"][SVC][0]["metadata"] == awkward
    assert body["services"][SVC][0]["health_endpoint"] == '/h?q="x"&y=\\'
    assert json.loads(as_bytes(core.registry.views.all_targets()))[0]["labels"]["quote"] == 'a"b'


def test_registered_at_survives_reregistration_in_the_body() -> None:
    core = Core()
    core.register()
    core.now = START + 77
    core.register(port=1)
    assert core.instance()["registered_at"] == iso(START)
    assert core.instance()["last_heartbeat"] == iso(START + 77)


# ------------------------------------------------ cheap re-rendering


@given(st.floats(min_value=0.0, max_value=4_102_444_800.0, allow_nan=False))
@example(1.0000005)  # half a microsecond: rounds to even
@example(1.0000015)
@example(59.9999995)  # rounds up into the next second
@example(1_700_000_000.9999996)
def test_timestamps_read_as_datetime_formats_them(seconds: float) -> None:
    expected = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert iso_timestamp(seconds) == expected


@given(
    names=st.tuples(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8)),
    metadata=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    load=st.floats(min_value=0.0, max_value=1.0),
    checked=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e6)),
    host=st.sampled_from(["10.0.0.1", "::1", "db.internal", 'odd"host\\']),
    tags=st.lists(st.text(min_size=1, max_size=8), max_size=3, unique=True).map(tuple),
)
@example(
    names=("svc", 'i-"1"', "/h?x=1"), metadata={}, load=0.5, checked=None, host="10.0.0.1", tags=()
)
@example(
    names=("a\\b", "c", "/d"), metadata={}, load=0.0, checked=None, host="10.0.0.1", tags=("a",)
)
@example(
    names=("s\u00e9rvice", "tab\there", "/\u2028"),
    metadata={"\x7f": "\x00"},
    load=1.0,
    checked=3.5,
    host="::1",
    tags=("traefik.enable=true", "r\u00e9gion=eu", 'q"\\'),
)
def test_a_fragment_is_what_json_dumps_writes(
    names: tuple[str, str, str],
    metadata: dict[str, str],
    load: float,
    checked: float | None,
    host: str,
    tags: tuple[str, ...],
) -> None:
    """The fragment is the object json.dumps writes, with `tags` only for a tagged instance
    (an untagged one's body is byte for byte what it was before tags existed)."""
    service, instance_id, endpoint = names
    instance = Instance(service, instance_id, host, 8080, endpoint, metadata, load, 12.5, tags=tags)
    instance.last_health_check = checked
    instance.last_heartbeat = 99.25
    offset = 1_700_000_000.0
    expected = json.dumps(
        {
            "service_name": service,
            "instance_id": instance_id,
            "host": host,
            "port": 8080,
            "health_endpoint": endpoint,
            "status": "unknown",
            "last_health_check": None if checked is None else iso(checked, offset),
            "last_heartbeat": iso(99.25, offset),
            "load_percentage": load,
            "metadata": metadata,
            **({"tags": list(tags)} if tags else {}),
            "registered_at": iso(12.5, offset),
            "check": {"type": "http"},
            "maintenance": None,
        },
        separators=(",", ":"),
    ).encode()
    assert instance_json(instance, offset) == expected


def test_a_heartbeat_leaves_the_prometheus_bodies_cached_unless_the_load_moves() -> None:
    core = Core()
    core.register(load_percentage=0.25)
    core.register(instance="game-2")
    targets = core.registry.views.all_targets()
    service_targets = core.registry.views.service_targets(SVC)
    listing = core.registry.views.all_services()
    core.now += 1
    assert core.heartbeat(load=0.25).status == 200
    assert core.registry.views.all_targets() is targets
    assert core.registry.views.service_targets(SVC) is service_targets
    assert core.registry.views.all_services() != listing  # last_heartbeat moved
    assert core.instance()["last_heartbeat"] == iso(core.now)
    assert core.heartbeat(load=0.3).status == 200  # under WATCH_LOAD_DELTA: no index raise
    labels = json.loads(as_bytes(core.registry.views.all_targets()))[0]["labels"]
    assert labels["load_percentage"] == "0.3"
    assert core.registry.views.service_targets(SVC) is not service_targets


def test_a_probe_that_changes_nothing_shown_in_targets_keeps_them_cached() -> None:
    core = Core(with_config(failure_threshold=1))
    core.register()
    core.probe(passed=True)
    targets = core.registry.views.all_targets()
    core.probe(passed=True)
    assert core.registry.views.all_targets() is targets
    assert core.instance()["last_health_check"] == iso(core.now)
    core.probe(passed=True, load=0.5)
    assert (
        json.loads(as_bytes(core.registry.views.all_targets()))[0]["labels"]["load_percentage"]
        == "0.5"
    )
    core.probe(passed=False)
    assert (
        json.loads(as_bytes(core.registry.views.all_targets()))[0]["labels"]["status"]
        == "unhealthy"
    )


def test_reregistration_renders_the_new_address_and_metadata() -> None:
    core = Core()
    core.register(metadata={"zone": "a"})
    assert core.instance()["metadata"] == {"zone": "a"}
    core.register(metadata={"zone": "b"}, host="10.0.0.9", port=9999, health_endpoint="/ok")
    instance = core.instance()
    assert (instance["metadata"], instance["host"], instance["port"]) == (
        {"zone": "b"},
        "10.0.0.9",
        9999,
    )
    assert instance["health_endpoint"] == "/ok"
    assert core.targets()[0]["targets"] == ["10.0.0.9:9999"]
    assert core.targets()[0]["labels"]["zone"] == "b"


def _target_labels(core: Core) -> dict[str, str]:
    labels: dict[str, str] = json.loads(as_bytes(core.registry.views.all_targets()))[0]["labels"]
    return labels
