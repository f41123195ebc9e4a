"""The snapshot document: what survives a restart, and reading it back safely.

Apart from the state machine because it is a file format with its own rules
(a version, validation of every entry, timestamps in wall-clock time), while
putting the instances back is an ordinary registration (`Registry.restore`).
Health and heartbeat times are left out on purpose: a restored instance
starts `unknown` with a full TTL, because the registry cannot know what
happened while it was down.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from .instance import Instance
from .models import RegisterRequest

SNAPSHOT_FORMAT = "service-discovery-snapshot"
SNAPSHOT_VERSION = 1
_LATEST_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z, the last a timestamp can show


class SavedInstance(NamedTuple):
    """One valid entry: the registration to replay and its wall-clock registration time."""

    request: RegisterRequest
    registered_at: float


def write_snapshot(
    instances: Iterable[Instance], global_index: int, wall_offset: float
) -> dict[str, Any]:
    """The JSON-ready document for `instances` (in the order given)."""
    return {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "global_index": global_index,
        "instances": [
            {
                "service_name": i.service_name,
                "instance_id": i.instance_id,
                "host": i.host,
                "port": i.port,
                "health_endpoint": i.health_endpoint,
                "metadata": dict(i.metadata),
                "load_percentage": i.load,
                "registered_at": i.registered_at + wall_offset,
            }
            for i in instances
        ],
    }


def read_snapshot(document: object) -> tuple[list[SavedInstance | None], int | None]:
    """Its entries (None for each invalid one) and its saved global index.

    Raises ValueError for anything but a version 1 snapshot. Entries are
    validated like registrations; a bad entry is left out, not fatal, so one
    corrupt record cannot cost the whole fleet.
    """
    if (
        not isinstance(document, dict)
        or document.get("format") != SNAPSHOT_FORMAT
        or document.get("version") != SNAPSHOT_VERSION
        or not isinstance(document.get("instances"), list)
    ):
        raise ValueError(f"not a version {SNAPSHOT_VERSION} registry snapshot")
    entries = [_entry(entry) for entry in document["instances"]]
    saved_index = document.get("global_index")
    return entries, saved_index if isinstance(saved_index, int) else None


def _entry(entry: Any) -> SavedInstance | None:
    try:
        request = RegisterRequest.model_validate(entry)
        registered_at = entry["registered_at"]
    except (ValueError, TypeError, KeyError):
        return None
    if (
        isinstance(registered_at, bool)
        or not isinstance(registered_at, int | float)
        or not 0 <= registered_at <= _LATEST_TIMESTAMP
    ):
        return None
    return SavedInstance(request, float(registered_at))
