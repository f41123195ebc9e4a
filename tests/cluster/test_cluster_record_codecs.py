"""The soft record's hand-written codec and the key parser's memory: what every
heartbeat goes through, on every node, says what the generic JSON path says."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sd_core.cluster import layout
from sd_core.cluster.layout import KeyLayout, ParsedKey, SoftRecord, wall

times = st.floats(min_value=-1e22, max_value=1e22, allow_nan=False)
loads = st.one_of(st.floats(min_value=0, max_value=1), st.sampled_from([0.0, 1.0, 0.5]))


def _sorted_json(heartbeat: float, load: float, checked: float | None) -> bytes:
    document = {
        "heartbeat_at": wall(heartbeat),
        "load": load,
        "checked_at": None if checked is None else wall(checked),
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


@given(times, loads, st.one_of(st.none(), times))
def test_a_soft_record_encodes_as_sorted_json_and_decodes_back(
    heartbeat: float, load: float, checked: float | None
) -> None:
    raw = SoftRecord(heartbeat, load, checked).encode()
    assert raw == _sorted_json(heartbeat, load, checked)
    rounded = None if checked is None else wall(checked)
    assert SoftRecord.decode(raw) == SoftRecord(wall(heartbeat), load, rounded)


def test_a_soft_record_that_is_not_a_finite_float_is_still_json() -> None:
    assert SoftRecord(math.inf, 1, None).encode() == _sorted_json(math.inf, 1, None)


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3),
)


@given(
    st.dictionaries(st.sampled_from(["checked_at", "heartbeat_at", "load", "extra"]), values),
    st.sampled_from([(",", ":"), (", ", ": ")]),
)
def test_a_soft_record_decodes_as_the_json_reader_does(
    document: dict[str, object], separators: tuple[str, str]
) -> None:
    raw = json.dumps(document, separators=separators, sort_keys=True).encode()
    parsed = json.loads(raw)
    assert SoftRecord.decode(raw) == SoftRecord._from_document(parsed)


def test_a_soft_record_in_another_form_or_broken_reads_as_before() -> None:
    assert SoftRecord.decode(b'{"load":0.5,"heartbeat_at":3}') == SoftRecord(3.0, 0.5, None)
    for raw in (b'{"checked_at":01,"heartbeat_at":1,"load":1}', b"{", b"[]"):
        assert SoftRecord.decode(raw) is None


def test_parsed_keys_are_remembered_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "PARSED_KEYS", 3)
    keys = KeyLayout("/p/")
    first = keys.parse(b"/p/soft/api/a1")
    assert first == ParsedKey("soft", "api", "a1")
    assert keys.parse(b"/p/soft/api/a1") is first
    assert keys.parse(b"/elsewhere") is None
    for n in range(10):
        parsed = keys.parse(f"/p/instances/api/{n}".encode())
        assert parsed == ParsedKey("instances", "api", str(n))
        assert len(keys._parsed) <= 3
