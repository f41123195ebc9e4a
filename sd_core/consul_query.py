"""The query string of a Consul read: blocking, filters and the options we accept.

Consul clients send more than our own reads know (`stale`, `dc`, `near`,
`node-meta`, `cached`...). What changes the answer is honoured: `index` and
`wait` (Go duration syntax, 5 min by default, at most 10 min), `passing`,
`tag` (repeatable: every one must be on the instance), `dc` (ours, or a 400)
and `node-meta` (our nodes have no metadata, so any asked for matches no
node). `stale` and `consistent` are accepted: every read is answered from
this node's view either way (docs/integrations.md says what that means).
`filter` is refused with a 400 rather than ignored: a consumer that filters
must not get a broader answer than it asked for. The rest is ignored, as
Consul ignores parameters an endpoint does not use.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import parse_qsl

from .errors import RequestError, query_error

#: Consul's blocking defaults: 5 minutes, and never more than 10.
DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
# Go's `time.ParseDuration`: `1.5s`, `.5s`, `5.s`, `1m30s`, `µs` or `us`, and a bare `0`.
_NUMBER = r"(?:[0-9]{1,12}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})"
_UNIT = r"(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
_DURATION = re.compile(rf"0|(?:{_NUMBER}{_UNIT})+")
_PART = re.compile(rf"({_NUMBER})({_UNIT})")
_MICRO = 1e-6
_UNITS = {"ns": 1e-9, "us": _MICRO, "\u00b5s": _MICRO, "\u03bcs": _MICRO, "ms": 1e-3, "s": 1.0}
_UNITS |= {"m": 60.0, "h": 3600.0}
_TRUE = frozenset({"", "1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})
_MAX_INDEX = 2**64 - 1


class ConsulQuery(NamedTuple):
    """A Consul read's parameters, parsed. `wait_index` None: no blocking asked for."""

    wait_index: int | None
    wait: float
    passing: bool
    tags: tuple[str, ...]  # sorted, distinct
    no_node: bool  # a `node-meta` filter: nothing matches it


def parse_duration(value: str) -> float | None:
    """Seconds of a Go duration (`30s`, `5m`, `1m30s`, `120000ms`, `.5s`, `0`), or None if
    it is not one."""
    if _DURATION.fullmatch(value) is None:
        return None
    try:
        return sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(value))
    except ValueError:  # `1.2.3s`: the pattern allows one dot, so never, but stay total
        return None


def query_pairs(query: bytes) -> list[tuple[str, str]]:
    """The (key, value) pairs of a query string, values kept even when empty."""
    try:
        return parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        return []


def query_token(query: bytes) -> str | None:
    """The `?token=` of a query, for authentication (discouraged: it ends up in logs)."""
    for key, value in query_pairs(query):
        if key == "token" and value:
            return value
    return None


def parse_query(query: bytes, datacenter: str) -> ConsulQuery:
    """`query` parsed, or the error (422, or 400 for `filter`) naming what is wrong."""
    index: int | None = None
    wait = DEFAULT_WAIT
    passing = False
    tags: set[str] = set()
    no_node = False
    for key, value in query_pairs(query):
        if key == "index":
            digits = value.isascii() and value.isdigit() and len(value) <= 20
            if not digits or int(value) > _MAX_INDEX:
                raise query_error("index", "must be a non-negative integer")
            index = int(value)
        elif key == "wait":
            seconds = parse_duration(value)
            if seconds is None:
                raise query_error("wait", "must be a duration like 30s, 5m or 1m30s")
            # Consul: no wait (0) means the default one; past the most, the most.
            wait = min(MAX_WAIT, seconds) if seconds > 0 else DEFAULT_WAIT
        elif key == "passing":
            if value not in _TRUE and value not in _FALSE:
                raise query_error("passing", "must be empty, 1, true, 0 or false")
            passing = value in _TRUE
        elif key == "tag":
            tags.add(value)
        elif key == "node-meta":
            no_node = True
        elif key == "dc" and value and value != datacenter:
            message = f"No such datacenter: {value[:64]} (this is {datacenter})"
            raise RequestError("unknown_datacenter", 400, message)
        elif key == "filter" and value:
            raise RequestError(
                "filter_not_supported",
                400,
                "?filter= is not supported here; use ?tag= and ?passing, "
                "or our own API's ?meta.<key>= filters",
            )
    return ConsulQuery(index, wait, passing, tuple(sorted(tags)), no_node)
