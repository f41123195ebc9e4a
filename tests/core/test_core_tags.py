"""Tags on registration (docs/api.md "Tags"): validated, kept, and carried through a restart
and the cluster store's records, with untagged instances' records unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest
from core_support import REGISTER, Core, register_body

from sd_core.cluster.layout import InstanceRecord
from sd_core.models import RegisterRequest


def test_tags_are_kept_in_order_without_duplicates() -> None:
    core = Core()
    core.register(tags=["traefik.enable=true", "urlprefix-/game", "traefik.enable=true"])
    found = core.registry.instance_snapshot("game-service", "game-1")
    assert found is not None
    assert found.tags == ("traefik.enable=true", "urlprefix-/game")


def test_untagged_instances_have_none() -> None:
    core = Core()
    core.register()
    found = core.registry.instance_snapshot("game-service", "game-1")
    assert found is not None and found.tags == ()


@pytest.mark.parametrize(
    ("tags", "field"),
    [
        (["a,b"], "tags.0"),
        ([""], "tags.0"),
        (["x" * 257], "tags.0"),
        (["é" * 129], "tags.0"),
        (["ok", "bad\n"], "tags.1"),
        (["t"] * 65, "tags"),
        ("primary", "tags"),
        ([7], "tags.0"),
    ],
)
def test_bad_tags_are_refused_and_change_nothing(tags: Any, field: str) -> None:
    core = Core()
    core.register(tags=["before"])
    index = core.registry.global_index
    reply = core.send("POST", REGISTER, register_body(tags=tags))
    assert reply.status == 422, reply.body
    assert field in reply.detail_fields
    assert core.registry.global_index == index
    found = core.registry.instance_snapshot("game-service", "game-1")
    assert found is not None and found.tags == ("before",)


def test_a_tag_of_256_bytes_and_64_tags_are_accepted() -> None:
    core = Core()
    core.register(tags=["x" * 256, *[f"t{n}" for n in range(63)]])
    found = core.registry.instance_snapshot("game-service", "game-1")
    assert found is not None and len(found.tags) == 64


def test_changing_only_the_tags_raises_the_index() -> None:
    core = Core()
    core.register(tags=["blue"])
    before = core.registry.service_index("game-service")
    core.register(tags=["blue"])
    assert core.registry.service_index("game-service") == before
    core.register(tags=["green"])
    assert core.registry.service_index("game-service") > before


def test_tags_survive_a_restart() -> None:
    source = Core()
    source.register(tags=["canary", "v2"])
    document = json.loads(json.dumps(source.registry.snapshot()))
    target = Core(start=5_000.0)
    assert target.registry.restore(document, target.now) == (1, 0)
    found = target.registry.instance_snapshot("game-service", "game-1")
    assert found is not None and found.tags == ("canary", "v2")


def _record(**fields: Any) -> InstanceRecord:
    request = RegisterRequest.model_validate(register_body(**fields))
    return InstanceRecord(request, 1.0, 2.0, 0.0)


def test_store_records_carry_tags_and_untagged_ones_have_no_field() -> None:
    tagged = _record(tags=["a", "b"])
    decoded = InstanceRecord.decode(tagged.encode())
    assert decoded is not None and decoded.request.tags == ("a", "b")
    assert b'"tags"' not in _record().encode()
