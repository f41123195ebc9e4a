"""What a watch stream may name: service names as every endpoint checks them, a bounded number."""

from __future__ import annotations

import pytest

from sd_core.errors import RequestError
from sd_core.watch_stream import parse_watch


def _refusal(query: str, max_services: int = 256) -> tuple[int, str, str]:
    with pytest.raises(RequestError) as caught:
        parse_watch(query.encode(), None, max_services)
    error = caught.value
    return error.status, error.details[0].field, error.details[0].message


@pytest.mark.parametrize(
    "query",
    [
        "service=%00",
        "service=..%2F..",
        "service=a%2Fb",
        "service=",
        "service=-leading-dash",
        "service=" + "a" * 129,
        "service=ok&service=caf%C3%A9",
        "service=sp%20ace",
    ],
)
def test_a_name_no_service_could_have_is_422(query: str) -> None:
    status, field, message = _refusal(query)
    assert (status, field) == (422, "service")
    assert "service name" in message


def test_valid_names_and_every_service_are_accepted() -> None:
    spec = parse_watch(b"service=game-service&service=a.b_c-1&service=" + b"a" * 128, None, 256)
    assert spec.services == frozenset({"game-service", "a.b_c-1", "a" * 128})
    assert parse_watch(b"service=*", None, 256).services is None


def test_a_stream_names_at_most_max_services() -> None:
    names = "&".join(f"service=s{n}" for n in range(5))
    assert parse_watch(names.encode(), None, 5).services is not None
    repeated = names + "&service=s0"  # a name given twice counts once
    assert parse_watch(repeated.encode(), None, 5).services is not None
    status, field, message = _refusal(names + "&service=s5", 5)
    assert (status, field) == (422, "service")
    assert "at most 5" in message
