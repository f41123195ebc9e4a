"""JSON bodies of the read endpoints, built from per-instance cached fragments.

A read of an unchanged service must cost a dict lookup, and a listing of
100,000 instances must not re-encode the ones that did not change: each
instance keeps its encoded object (and its Prometheus target group) until a
shown field changes, and a response is those fragments joined.

In a live fleet nearly every instance changes between two listings (each
heartbeat moves `last_heartbeat`), so re-encoding a fragment must be cheap
too, while holding little more per instance: a fragment is an f-string
(strings that need no escaping skip the encoder) plus the encoded metadata
and registration time kept since the last (re-)registration
(`Instance.rendered_tail`), and timestamps reuse the formatted second they fall in.

A large fragment (most of it metadata) is not kept beside the bodies made of
it: once a service's `instances` or `targets` body is joined, each large
fragment becomes a `memoryview` of its place in that body, and the tail one
of its place in the fragment (`share_fragments`). So an instance's JSON is
held once by its record and the view it was joined into, not once more per
fragment. Small fragments stay bytes: a memoryview (184 bytes) and the
slicing would cost more than they save.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from .instance import Instance

_encode = json.JSONEncoder(separators=(",", ":")).encode
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_LABEL_VALID = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Labels metadata may never set: ours (`maintenance` included, so metadata
# cannot fake a drain), and `job`, which would move a target into another
# scrape job's series.
BUILTIN_LABELS = frozenset(
    {"instance", "service_name", "status", "load_percentage", "job", "maintenance"}
)
_NOT_IN_MAINTENANCE = b',"maintenance":null}'
#: Fragments from this size on are shared with the body they were joined into.
SHARE_MIN = 512

Fragment = bytes | memoryview


def encode(document: object) -> bytes:
    return _encode(document).encode()


# Formatted seconds, "YYYY-MM-DDTHH:MM:SS": timestamps of one fleet fall in
# few of them. Bounded, so a long-running process does not grow it forever.
_SECONDS: dict[int, str] = {}
_SECONDS_KEPT = 8192


def iso_timestamp(wall_seconds: float) -> str:
    """ISO 8601 in UTC with a `Z`, always with microseconds (one fixed width).

    The same text as `datetime.fromtimestamp(t, UTC).strftime(...%fZ)`, whose
    microseconds are the fraction rounded half to even, at a fraction of the
    cost (see the property test in tests/core/test_core_render.py).
    """
    fraction, whole = math.modf(wall_seconds)
    micros = round(fraction * 1e6)
    second = int(whole)
    if micros >= 1_000_000:
        second += 1
        micros -= 1_000_000
    elif micros < 0:
        second -= 1
        micros += 1_000_000
    prefix = _SECONDS.get(second)
    if prefix is None:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        _SECONDS[second] = prefix
    return f"{prefix}.{micros:06d}Z"


def _string(text: str) -> str:
    """`text` as a JSON string, as the encoder writes it (ASCII only, escapes)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'  # nothing to escape: the common case, without the encoder
    return _encode(text)


def instance_json(instance: Instance, wall_offset: float) -> Fragment:
    cached = instance.rendered_json
    if cached is None:
        tail = instance.rendered_tail
        if tail is None:  # what only a re-registration changes, and the dearest to encode
            registered = iso_timestamp(instance.registered_at + wall_offset)
            text = (
                f',"metadata":{_encode(instance.metadata)}{_tags_json(instance.tags)}'
                f',"registered_at":"{registered}"'
                f',"check":{{"type":"{instance.check.value}"}}'
            )
            instance.rendered_tail = tail = text.encode()
        checked = instance.last_health_check
        checked_text = "null" if checked is None else f'"{iso_timestamp(checked + wall_offset)}"'
        # Key order and number format are json.dumps's: the fields in the
        # order of the API's Instance schema, floats as repr() writes them.
        head = (
            f'{{"service_name":{_string(instance.service_name)}'
            f',"instance_id":{_string(instance.instance_id)}'
            f',"host":{_string(instance.host)},"port":{instance.port}'
            f',"health_endpoint":{_string(instance.health_endpoint)}'
            f',"status":"{instance.status.value}","last_health_check":{checked_text}'
            f',"last_heartbeat":"{iso_timestamp(instance.last_heartbeat + wall_offset)}"'
            f',"load_percentage":{instance.load!r}'
        )
        head_bytes = head.encode()
        cached = head_bytes + tail + _maintenance_json(instance, wall_offset)
        instance.rendered_json = cached
        if len(tail) >= SHARE_MIN:  # the tail is kept as a view of the fragment
            instance.rendered_tail = memoryview(cached)[
                len(head_bytes) : len(head_bytes) + len(tail)
            ]
            instance.keep_metadata_as_text()
    return cached


def _tags_json(tags: tuple[str, ...]) -> str:
    """The `"tags"` field, only for a tagged instance: an untagged one's JSON is
    what it was before tags existed, so clients that compare bodies see no change."""
    return f',"tags":{_encode(tags)}' if tags else ""


def tags_label(tags: tuple[str, ...]) -> str:
    """Tags as one Prometheus label value, in Consul's `__meta_consul_tags` form
    `,a,b,`: the outer commas let a relabel regex match a whole tag (`.*,a,.*`)."""
    return f",{','.join(tags)},"


def _maintenance_json(instance: Instance, wall_offset: float) -> bytes:
    """The closing `"maintenance"` field: null, or its reason and start."""
    maintenance = instance.maintenance
    if maintenance is None:
        return _NOT_IN_MAINTENANCE
    reason = "null" if maintenance.reason is None else _string(maintenance.reason)
    since = iso_timestamp(maintenance.since + wall_offset)
    return f',"maintenance":{{"reason":{reason},"since":"{since}"}}}}'.encode()


def metadata_labels(metadata: dict[str, str]) -> dict[str, str]:
    """Metadata that may become Prometheus labels, under their sanitised names.

    Keys are taken in sorted order so that when two keys sanitise to the same
    label the choice does not depend on insertion order.
    """
    labels: dict[str, str] = {}
    for key in sorted(metadata):
        name = _LABEL_INVALID.sub("_", key)
        if (
            name.startswith("__")
            or name in BUILTIN_LABELS
            or name in labels
            or not _LABEL_VALID.match(name)
        ):
            continue
        labels[name] = metadata[key]
    return labels


def target_group_json(instance: Instance) -> Fragment:
    cached = instance.rendered_target
    if cached is None:
        labels = {
            "instance": instance.instance_id,
            "service_name": instance.service_name,
            "status": instance.status.value,
            "load_percentage": repr(instance.load),
        }
        if instance.maintenance is not None:
            labels["maintenance"] = "true"
        labels.update(metadata_labels(instance.metadata))
        if instance.tags:  # after the metadata: a `tags` key cannot fake them
            labels["tags"] = tags_label(instance.tags)
        cached = encode(
            {"targets": [f"{instance.bracketed_host}:{instance.port}"], "labels": labels}
        )
        instance.rendered_target = cached
    return cached


def join_instances(instances: Iterable[Instance], wall_offset: float) -> bytes:
    return b"[" + b",".join(instance_json(i, wall_offset) for i in instances) + b"]"


def instances_body(
    prefix: bytes, instances: list[Instance], suffix: bytes, wall_offset: float, *, share: bool
) -> bytes:
    """`prefix` + the instances' JSON array + `suffix`; `share`: its large fragments then
    become views of it (only for a body cached until they change: a filtered one may
    be evicted at any time, and must not be kept alive by them)."""
    fragments = [instance_json(i, wall_offset) for i in instances]
    body = b"".join((prefix, b"[", b",".join(fragments), b"]", suffix))
    if share:
        share_fragments(body, len(prefix) + 1, instances, fragments, wall_offset)
    return body


def targets_body(instances: list[Instance], *, share: bool) -> bytes:
    """The instances' target groups as one array; `share` as for `instances_body`."""
    fragments = [target_group_json(i) for i in instances]
    body = b"[" + b",".join(fragments) + b"]"
    if share:
        share_fragments(body, 1, instances, fragments, None)
    return body


def share_fragments(
    body: bytes,
    start: int,
    instances: list[Instance],
    fragments: list[Fragment],
    wall_offset: float | None,
) -> None:
    """Point each large fragment at its place in `body`, which lists them from `start`
    separated by commas: the copy it was is freed. `wall_offset` None: target groups.
    """
    view: memoryview | None = None
    position = start
    for instance, fragment in zip(instances, fragments, strict=True):
        size = len(fragment)
        if size >= SHARE_MIN:
            if view is None:
                view = memoryview(body)
            shared = view[position : position + size]
            if wall_offset is None:
                instance.rendered_target = shared
            else:
                instance.rendered_json = shared
                tail = instance.rendered_tail
                if tail is not None and len(tail) >= SHARE_MIN:
                    # JSON = head + tail + maintenance: the tail ends where that starts.
                    end = size - len(_maintenance_json(instance, wall_offset))
                    instance.rendered_tail = shared[end - len(tail) : end]
        position += size + 1
