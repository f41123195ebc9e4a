"""The optional snapshot file that lets a restarted registry keep its fleet.

Written atomically (temporary file, fsync, rename, fsync of the directory),
so a crash at any moment leaves either the old snapshot or the new one, never
half of one. The temporary file is created, never opened: `O_EXCL` and
`O_NOFOLLOW`, mode 0600, so a link planted at its name in a shared directory
cannot redirect the snapshot (metadata included) into another user's file,
and the snapshot is readable by its owner only. A file that cannot be read
is moved aside with one log line and the registry starts empty: losing the
snapshot is bad, refusing to start is worse.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

from frontends.runtime.logs import logfmt
from sd_core import Registry

log = logging.getLogger("sd.registry")


#: Lock files this process holds, by state file: kept open for its whole life.
_CLAIMED: dict[Path, int] = {}


def claim(path: Path) -> bool:
    """Take `path` for this process; False when another registry holds it.

    Two registries sharing one state file would overwrite each other's
    snapshots and restore each other's fleets, so the second one to start
    runs without it (and says so) rather than not at all. The lock is an
    `flock` on `<file>.lock`, released by the kernel when the process ends,
    however it ends.
    """
    if path in _CLAIMED:
        return True
    lock = path.with_name(f"{path.name}.lock")
    try:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        log.error(logfmt("state_file_unusable", path=path, error=error, action="running without"))
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        log.warning(
            logfmt(
                "state_file_in_use",
                path=path,
                action="running without a state file: another registry holds it",
            )
        )
        return False
    _CLAIMED[path] = descriptor
    return True


def unsafe_directory(path: Path) -> str | None:
    """Why `path`'s directory may not hold a state file, or None when it may.

    A directory anyone may write to, without the sticky bit, lets anyone
    replace the snapshot (rename over it) or the file it is written through.
    """
    try:
        mode = path.parent.stat().st_mode
    except OSError as error:
        return f"directory {path.parent} cannot be read: {error.strerror}"
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        return f"directory {path.parent} is world-writable without the sticky bit"
    return None


def encode_snapshot(snapshot: dict[str, Any]) -> bytes:
    return json.dumps(snapshot, separators=(",", ":")).encode()


#: How the temporary file is opened: created here or not at all, never through a link.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see all of it or none of it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, _CREATE, 0o600)
    except FileExistsError:
        # Left by a crash of a process with this pid, or planted: remove the
        # name (a link itself, not what it points to) and create it afresh. In
        # a sticky directory someone else's file cannot be removed: that fails.
        os.unlink(temporary)
        descriptor = os.open(temporary, _CREATE, 0o600)
    with open(descriptor, "wb") as handle:
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
