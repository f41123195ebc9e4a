"""Snapshots across a restart (docs/api.md "Restarts") and the probe address policy."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from core_support import REGISTER, START, Core, iso, register_body, with_config

from sd_core import DriverError
from sd_core.probe_address_policy import ProbePolicy, is_ip_literal, parse_networks

# ---------------------------------------------------------------- snapshots


def _source() -> Core:
    core = Core(with_config(failure_threshold=1))
    core.register("game", "g-2", host="::1", port=9000, metadata={"v": "2"}, load_percentage=0.5)
    core.now += 10
    core.register("game", "g-1", health_endpoint="/ready?x=1")
    core.register("chat", "c-1", host="chat.internal")
    core.probe("game", "g-1", passed=True)
    core.probe("game", "g-2", passed=False)
    assert core.status("game", "g-1") == "healthy"
    return core


def _reloaded(document: dict[str, Any], *, start: float = 5_000.0) -> Core:
    """A fresh registry (as after a restart) loaded with a snapshot that went through JSON."""
    core = Core(start=start)
    restored, skipped = core.registry.restore(json.loads(json.dumps(document)), core.now)
    assert skipped == 0
    assert restored == len(document["instances"])
    core.drain()
    return core


def test_snapshot_round_trip_keeps_descriptions_not_health() -> None:
    source = _source()
    before = source.services()
    target = _reloaded(source.registry.snapshot())
    after = target.services()
    assert list(after) == list(before)
    for name in before:
        assert [i["instance_id"] for i in after[name]] == [i["instance_id"] for i in before[name]]
        for old, new in zip(before[name], after[name], strict=True):
            for key in (
                "host",
                "port",
                "health_endpoint",
                "metadata",
                "load_percentage",
                "registered_at",
            ):
                assert new[key] == old[key], key
            assert new["status"] == "unknown"
            assert new["last_health_check"] is None
            # The heartbeat that happened, not the restart (none happened since).
            assert new["last_heartbeat"] == old["last_heartbeat"]
    assert target.registry.status_counts() == {"unknown": 3, "healthy": 0, "unhealthy": 0}


def test_restored_index_continues_above_the_saved_one() -> None:
    source = _source()
    for n in range(30):  # push the saved index well above the number of instances
        source.heartbeat("game", "g-1", load=(n % 2) * 0.5)
    saved = source.registry.global_index
    assert saved > 10
    target = _reloaded(source.registry.snapshot())
    assert target.registry.global_index > saved
    for name in ("game", "chat"):
        assert target.registry.service_index(name) > saved
    assert target.get("/v1/discovery/services").index == target.registry.global_index


def test_restored_instances_get_a_full_ttl() -> None:
    target = _reloaded(_source().registry.snapshot())
    restored_at = target.now
    target.advance_to(restored_at + 179)
    assert target.registry.instance_count == 3
    assert target.heartbeat("game", "g-1").status == 200
    target.advance_to(restored_at + 180)
    assert target.services().keys() == {"game"}
    assert [i["instance_id"] for i in target.services()["game"]] == ["g-1"]


def test_restored_instances_show_the_heartbeat_that_happened() -> None:
    source = Core(with_config(registration_ttl=1e6))
    source.register("game", "g-1")
    source.now += 40
    source.heartbeat("game", "g-1")
    heartbeat = source.instance("game", "g-1")["last_heartbeat"]
    document = source.registry.snapshot()
    assert document["instances"][0]["last_heartbeat"] == source.now + 1_705_314_600.0
    # The registry is down for ten minutes, then restores the snapshot.
    target = _reloaded(document, start=source.now + 600)
    assert target.instance("game", "g-1")["last_heartbeat"] == heartbeat
    # Its TTL still runs from the restart: a full TTL of grace (above), not from then.
    target.now += 1
    target.heartbeat("game", "g-1")
    assert target.instance("game", "g-1")["last_heartbeat"] == iso(target.now)


def test_a_snapshot_without_heartbeats_shows_the_registration_instead() -> None:
    entry = _entry()
    document = {
        "format": "service-discovery-snapshot",
        "version": 1,
        "global_index": 3,
        "instances": [entry, _entry(instance_id="i-2", last_heartbeat="yesterday")],
    }
    target = _reloaded(document)
    for instance in ("i-1", "i-2"):
        shown = target.instance("svc", instance)
        assert shown["last_heartbeat"] == shown["registered_at"]  # not the restart


def test_restored_instances_are_probed_at_once_then_spread() -> None:
    target = _reloaded(_source().registry.snapshot())
    restored_at = target.now
    assert target.registry.next_deadline() == restored_at
    target.registry.on_timer(restored_at)
    target.drain()
    first = {(p.service_name, p.instance_id): p for p in target.pending}
    assert set(first) == {("game", "g-1"), ("game", "g-2"), ("chat", "c-1")}
    assert first[("game", "g-2")].url == "http://[::1]:9000/health"
    assert first[("game", "g-1")].url == "http://10.0.0.1:8080/ready?x=1"
    for probe in list(target.pending):
        target.answer(probe, passed=True)
    target.pending.clear()
    target.advance_to(restored_at + 30)
    later = [t for t, p in target.probes_issued if t > restored_at]
    assert len(later) == 3
    assert all(restored_at < t <= restored_at + 30 for t in later)
    assert len(set(later)) == 3  # spread by key, not all at once


def test_restored_probes_are_not_stale_and_count() -> None:
    target = _reloaded(_source().registry.snapshot())
    target.registry.on_timer(target.now)
    target.drain()
    probe = next(p for p in target.pending if p.instance_id == "g-1")
    assert target.answer(probe, passed=True) is True
    assert target.status("game", "g-1") == "healthy"


def _entry(**override: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "service_name": "svc",
        "instance_id": "i-1",
        "host": "10.0.0.9",
        "port": 80,
        "health_endpoint": "/health",
        "metadata": {},
        "load_percentage": 0.0,
        "registered_at": 1_700_000_000.0,
    }
    entry.update(override)
    return {k: v for k, v in entry.items() if v is not None}


BAD_ENTRIES: list[tuple[str, Any]] = [
    ("not an object", "svc/i-1"),
    ("missing host", _entry(host=None)),
    ("bad port", _entry(port=0)),
    ("port as string", _entry(port="80")),
    ("bad name", _entry(instance_id="-x")),
    ("metadata control char", _entry(metadata={"k": "\x00"})),
    ("load above 1", _entry(load_percentage=2.0)),
    ("missing registered_at", _entry(registered_at=None)),
    ("registered_at string", _entry(registered_at="2024-01-01T00:00:00Z")),
    ("registered_at bool", _entry(registered_at=True)),
    ("registered_at negative", _entry(registered_at=-1.0)),
    ("registered_at year 10000", _entry(registered_at=253_402_300_800.0)),
]


@pytest.mark.parametrize("entry", [c[1] for c in BAD_ENTRIES], ids=[c[0] for c in BAD_ENTRIES])
def test_a_bad_entry_is_skipped_not_fatal(entry: Any) -> None:
    core = Core()
    document = {
        "format": "service-discovery-snapshot",
        "version": 1,
        "global_index": 3,
        "instances": [entry, _entry(instance_id="good")],
    }
    assert core.registry.restore(document, core.now) == (1, 1)
    assert [i["instance_id"] for i in core.services()["svc"]] == ["good"]


def test_duplicates_and_the_instance_cap_are_skipped() -> None:
    core = Core(with_config(max_instances=2))
    core.register("svc", "live")
    document = {
        "format": "service-discovery-snapshot",
        "version": 1,
        "global_index": 1,
        "instances": [_entry(instance_id="live"), _entry(instance_id="a"), _entry(instance_id="b")],
    }
    assert core.registry.restore(document, core.now) == (1, 2)
    assert core.registry.instance_count == 2
    assert core.instance("svc", "live")["host"] == "10.0.0.1"  # the live one was kept


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        {"format": "other", "version": 1, "instances": []},
        {"format": "service-discovery-snapshot", "version": 2, "instances": []},
        {"format": "service-discovery-snapshot", "version": 1, "instances": {}},
        {"format": "service-discovery-snapshot", "version": 1},
    ],
)
def test_other_documents_are_refused_and_change_nothing(document: Any) -> None:
    core = _source()
    core.drain()
    before = core.snapshot("game", "chat")
    with pytest.raises(ValueError, match="snapshot"):
        core.registry.restore(document, core.now)
    assert core.snapshot("game", "chat") == before


def test_restore_with_time_going_backwards_is_a_driver_error() -> None:
    core = Core()
    with pytest.raises(DriverError):
        core.registry.restore(_source().registry.snapshot(), core.now - 1)


def test_snapshot_is_json_ready_and_versioned() -> None:
    document = _source().registry.snapshot()
    assert document["format"] == "service-discovery-snapshot"
    assert document["version"] == 1
    assert json.loads(json.dumps(document)) == document
    registered = {i["instance_id"]: i["registered_at"] for i in document["instances"]}
    assert registered["g-2"] == START + 1_705_314_600.0  # wall-clock seconds
    assert "status" not in document["instances"][0]


# ------------------------------------------------------------ probe policy

# (address, allowed networks or None for the default, refused?)
POLICY: list[tuple[str, str | None, bool]] = [
    ("10.0.0.1", None, False),
    ("127.0.0.1", None, False),
    ("::1", None, False),
    ("[::1]", None, False),
    ("169.254.169.254", None, True),
    ("169.254.0.1", None, True),
    ("fe80::1", None, True),
    ("[fe80::1]", None, True),
    ("fd00:ec2::254", None, True),
    ("::ffff:169.254.169.254", None, True),  # IPv4-mapped: checked as the IPv4 address
    ("10.1.2.3", "10.0.0.0/8", False),
    ("192.168.1.1", "10.0.0.0/8", True),
    ("192.168.1.1", "10.0.0.0/8, 192.168.1.1", False),
    ("169.254.169.254", "0.0.0.0/0", True),  # even everything does not open link-local
    ("fe80::1", "::/0", True),
    ("169.254.169.254", "169.254.169.254/32", False),  # named explicitly
    ("169.254.10.10", "169.254.0.0/16", False),
    ("::ffff:10.0.0.1", "10.0.0.0/8", False),
]


@pytest.mark.parametrize(("address", "networks", "refused"), POLICY)
def test_probe_policy(address: str, networks: str | None, refused: bool) -> None:
    policy = ProbePolicy() if networks is None else ProbePolicy(parse_networks(networks))
    reason = policy.refusal(address)
    assert (reason is not None) is refused, reason
    if refused:
        assert reason


def test_parse_networks() -> None:
    assert parse_networks(" 10.0.0.0/8 , 127.0.0.1,, ") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
    )
    assert parse_networks("10.0.0.1/8") == (ipaddress.ip_network("10.0.0.0/8"),)
    with pytest.raises(ValueError, match="nonsense"):
        parse_networks("10.0.0.0/8, nonsense")


@pytest.mark.parametrize(
    ("host", "literal"),
    [
        ("10.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", False),
        ("1.2.3.4.nip.io", False),
    ],
)
def test_is_ip_literal(host: str, literal: bool) -> None:
    assert is_ip_literal(host) is literal


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("169.254.169.254", True),
        ("[fe80::1]", True),
        ("10.0.0.1", False),
        ("metadata.internal", False),
    ],  # names are resolved and checked by the driver
)
def test_registering_a_refused_address_succeeds_and_says_so(host: str, refused: bool) -> None:
    core = Core()
    reply = core.send("POST", REGISTER, register_body("svc", "i-1", host=host))
    assert reply.status == 200
    message = reply.body["message"]
    assert message.startswith("Service svc:i-1 registered successfully")
    assert ("; health checks refused: " in message) is refused
    assert core.present("svc", "i-1")
