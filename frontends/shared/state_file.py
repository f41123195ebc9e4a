"""The optional snapshot file that lets a restarted registry keep its fleet.

Written atomically (temporary file, fsync, rename, fsync of the directory),
so a crash at any moment leaves either the old snapshot or the new one, never
half of one. A file that cannot be read is moved aside with one log line and
the registry starts empty: losing the snapshot is bad, refusing to start is
worse.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from sd_core import Registry

from .logs import logfmt

log = logging.getLogger("sd.registry")


def encode_snapshot(snapshot: dict[str, Any]) -> bytes:
    return json.dumps(snapshot, separators=(",", ":")).encode()


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see all of it or none of it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def restore_from_file(path: Path, registry: Registry, now: float) -> int:
    """Load the snapshot into `registry`; returns how many instances came back."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        log.info(logfmt("snapshot_missing", path=path, action="starting empty"))
        return 0
    except OSError as error:
        log.error(logfmt("snapshot_unreadable", path=path, error=error, action="starting empty"))
        return 0
    try:
        restored, skipped = registry.restore(json.loads(data), now)
    except (ValueError, RecursionError) as error:  # bad JSON, bad UTF-8, absurd nesting
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        log.error(
            logfmt(
                "snapshot_corrupt",
                path=path,
                error=str(error)[:200],
                moved_to=aside,
                action="starting empty",
            )
        )
        return 0
    log.info(logfmt("snapshot_restored", path=path, instances=restored, skipped=skipped))
    return restored
