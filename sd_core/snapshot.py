"""The snapshot document: what survives a restart, and reading it back safely.

Apart from the state machine because it is a file format with its own rules
(a version, validation of every entry, timestamps in wall-clock time), while
putting the instances back is an ordinary registration (`Registry.restore`).
Health is left out on purpose: a restored instance starts `unknown` with a
full TTL, because the registry cannot know what happened while it was down.
The last heartbeat's time is kept, for display only: a restored instance shows
the heartbeat that really happened, not the restart. Maintenance is kept (an
operator's decision, not a measurement).

Fields were added without a new version: `check` (read like a registration's),
`maintenance` (`{"reason", "since"}`, present only while in maintenance) and
`last_heartbeat`. A snapshot from before them loads as http checks out of
maintenance showing their registration as the last heartbeat, and an older
registry reading a newer snapshot ignores them rather than refusing the whole
file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple, TypeGuard

from .instance import Instance
from .models import MaintenanceRequest, RegisterRequest

SNAPSHOT_FORMAT = "service-discovery-snapshot"
SNAPSHOT_VERSION = 1
_LATEST_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z, the last a timestamp can show


class SavedInstance(NamedTuple):
    """One valid entry: the registration to replay and its wall-clock registration time."""

    request: RegisterRequest
    registered_at: float
    maintenance: tuple[str | None, float] | None = None  # (reason, wall-clock since)
    heartbeat_at: float | None = None  # wall clock; None when the entry has none


def write_snapshot(
    instances: Iterable[Instance], global_index: int, wall_offset: float
) -> dict[str, Any]:
    """The JSON-ready document for `instances` (in the order given)."""
    return {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "global_index": global_index,
        "instances": [_saved(i, wall_offset) for i in instances],
    }


def _saved(instance: Instance, wall_offset: float) -> dict[str, Any]:
    saved: dict[str, Any] = {
        "service_name": instance.service_name,
        "instance_id": instance.instance_id,
        "host": instance.host,
        "port": instance.port,
        "health_endpoint": instance.health_endpoint,
        "metadata": dict(instance.metadata),
        "load_percentage": instance.load,
        "registered_at": instance.registered_at + wall_offset,
        "last_heartbeat": instance.last_heartbeat + wall_offset,
        "check": {"type": instance.check.value},
    }
    if instance.tags:
        saved["tags"] = list(instance.tags)
    maintenance = instance.maintenance
    if maintenance is not None:
        saved["maintenance"] = {
            "reason": maintenance.reason,
            "since": maintenance.since + wall_offset,
        }
    return saved


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
    if not _is_timestamp(registered_at):
        return None
    heartbeat = entry.get("last_heartbeat")
    return SavedInstance(
        request,
        float(registered_at),
        _maintenance(entry.get("maintenance")),
        float(heartbeat) if _is_timestamp(heartbeat) else None,
    )


def _maintenance(saved: object) -> tuple[str | None, float] | None:
    """A saved maintenance, or None (also for a malformed one: the instance still loads)."""
    if not isinstance(saved, dict):
        return None
    try:
        reason = MaintenanceRequest.model_validate({"reason": saved.get("reason")}).reason
    except ValueError:
        return None
    since = saved.get("since")
    if not _is_timestamp(since):
        return None
    return reason, float(since)


def _is_timestamp(value: object) -> TypeGuard[int | float]:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and 0 <= value <= _LATEST_TIMESTAMP
    )
