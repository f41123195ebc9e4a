"""Streaming watches (`GET /v1/discovery/watch`): what the events are, decided once.

A stream follows some services (or every one, `service=*`). Its first events
carry each followed service's current state; after that, one event per index
rise of any of them. The frontends only hold the connections and write the
bytes handed out here: an index rise is rendered once per (service, index)
and the same bytes object goes to every stream that follows the service.

Event format (Server-Sent Events)::

    event: service
    id: 42
    data: {"index":42,"service_name":"a","instances":[...]}

`data` is the body of `GET /v1/discovery/services/{name}` plus `index` (an
unknown or removed service: `"instances":[]`). The SSE `id` is a *global*
index position: having received the event with id N, the client has seen
every change to its services up to the registry's global index N. That works
because a service's index is the global index of its last change. Resuming
with `Last-Event-ID: N` (or `?index=N` on the first request) sends the
current state of every followed service whose index passed N, oldest first,
then live events: no change is missed. First events go out ordered by index,
and when several events share one index only the last of them carries the id,
so a stream cut between them is resumed before them, never after.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import parse_qsl

from .errors import query_error
from .models import NAME_PATTERN
from .registry import Registry
from .render import encode

WATCH_ROUTE = "/v1/discovery/watch"
EVENT_STREAM = "text/event-stream"
EVERY_SERVICE = "*"
#: The rule every endpoint applies to a service name (`models.ServiceName`).
_SERVICE_NAME = re.compile(NAME_PATTERN)
#: What a keep-alive writes: an SSE comment, ignored by every client.
KEEPALIVE = b": keepalive\n\n"
#: The first bytes of every stream: the reconnection delay EventSource clients use.
STREAM_PREAMBLE = b"retry: 2000\n\n"
STREAM_HEADERS = (
    ("content-type", EVENT_STREAM),
    ("cache-control", "no-cache"),
    # Proxies that buffer responses (nginx) would hold events back.
    ("x-accel-buffering", "no"),
)


class WatchSpec(NamedTuple):
    """What one stream follows: `services` (None: every service) from index `since`."""

    services: frozenset[str] | None
    since: int | None


def parse_watch(query: bytes, last_event_id: str | None, max_services: int) -> WatchSpec:
    """The stream a request asks for, or the 422 naming the bad parameter.

    A name is checked as every other endpoint checks one (no stream follows
    a service that could never exist), and a stream names at most
    `max_services` (`*` follows every one). `Last-Event-ID` wins over
    `?index=`: a reconnecting EventSource sends the header on the URL of its
    first request, whose index is older.
    """
    names: set[str] = set()
    every = False
    index: str | None = None
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key == "service":
            if value == EVERY_SERVICE:
                every = True
            elif _SERVICE_NAME.fullmatch(value) is None:
                raise query_error(
                    "service", "must be a service name (1-128 of [A-Za-z0-9._-]) or *"
                )
            else:
                names.add(value)
                if len(names) > max_services:
                    raise query_error("service", f"at most {max_services} services; use * for more")
        elif key == "index":
            index = value
    if not every and not names:
        raise query_error("service", "name at least one service, or * for every service")
    if last_event_id is not None and last_event_id.strip():
        index, field = last_event_id.strip(), "Last-Event-ID"
    else:
        field = "index"
    since: int | None = None
    if index is not None:
        if not index.isascii() or not index.isdigit() or len(index) > 19:
            raise query_error(field, "must be a non-negative integer")
        since = int(index)
    return WatchSpec(None if every else frozenset(names), since)


class _Rendered(NamedTuple):
    service_index: int
    source: bytes | None  # the views body it was built from (None: no instances)
    with_id: bytes
    without_id: bytes


class LiveEvent(NamedTuple):
    """One service's index rise, rendered once for every stream that follows it."""

    name: str
    service_index: int
    with_id: bytes
    without_id: bytes


class StreamEvents:
    """Event bytes per service, rendered once per (service, index) and shown state.

    A body in the registry's render cache stays the same object until
    something it shows changes, so (index, that object) identifies a state.
    """

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._rendered: dict[str, _Rendered] = {}

    def _current(self, name: str) -> _Rendered:
        registry = self._registry
        index = registry.service_index(name)
        source = registry.views.service_instances(name)
        rendered = self._rendered.get(name)
        if rendered is None or rendered.service_index != index or rendered.source is not source:
            body = (
                source
                if source is not None
                else (b'{"service_name":' + encode(name) + b',"instances":[]}')
            )
            without_id = b'event: service\ndata: {"index":%d,' % index + body[1:] + b"\n\n"
            rendered = _Rendered(index, source, _with_id(without_id, index), without_id)
            if len(self._rendered) > 2 * registry.service_count + 1024:
                self._rendered.clear()  # forget services that went away
            self._rendered[name] = rendered
        return rendered

    def first_events(self, spec: WatchSpec) -> bytes:
        """What a new stream starts with: the preamble, then each service it has not seen.

        Without `since`: every named service (every current one for `*`).
        With it: those whose index passed it, including removed ones (a
        `since` ahead of the registry, after a restart, counts as nothing seen).
        """
        registry = self._registry
        since = spec.since
        if since is None or since > registry.global_index:
            since = -1
        names = registry.watched_names(since) if spec.services is None else spec.services
        wanted = sorted(
            (index, name) for name in names if (index := registry.service_index(name)) > since
        )
        return STREAM_PREAMBLE + join_events([self.live(name) for _, name in wanted])

    def live(self, name: str) -> LiveEvent:
        """The event for `name`'s current state (after an index rise)."""
        rendered = self._current(name)
        return LiveEvent(name, rendered.service_index, rendered.with_id, rendered.without_id)

    def changed(self, services: Iterable[str]) -> list[LiveEvent]:
        """One event per raised service, ordered by index: what every follower is sent."""
        return sorted((self.live(name) for name in services), key=lambda event: event.service_index)


def join_events(events: list[LiveEvent]) -> bytes:
    """Events ordered by index in one piece; events sharing an index carry the id once, last.

    So a stream cut between two events of one index is resumed before both.
    """
    if len(events) == 1:
        return events[0].with_id
    pieces = []
    for position, event in enumerate(events):
        tie = (
            position + 1 < len(events) and events[position + 1].service_index == event.service_index
        )
        pieces.append(event.without_id if tie else event.with_id)
    return b"".join(pieces)


def _with_id(without_id: bytes, index: int) -> bytes:
    return without_id[:-1] + b"id: %d\n\n" % index
