"""The development token: generated when `SERVICE_DISCOVERY_SECRET` is unset, and kept.

A registry with a state file comes back after a restart with every instance; a token
made up anew at each start locked all of those instances' clients out (401 on every
call once their caches ran out). So the generated token is kept beside the state file,
in `<state file>.token`, and reused while that file exists; deleting it makes the next
start generate a new one.

The file holds a bearer token, so it is created the way a key is: written in full to a
fresh temporary file of mode 0600 in the same directory, then linked into place, which
fails rather than follow or replace anything already there (a second registry starting
at the same moment then reads the winner's token). A file found there is used only if
it is a regular file of this user that no one else may read.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from pathlib import Path

from sd_core import ConfigError

VARIABLE = "SERVICE_DISCOVERY_SECRET"
#: Bytes of randomness of a generated token (43 characters of URL-safe base64).
TOKEN_BYTES = 32


def token_file(state_file: Path) -> Path:
    """Where the development token of the registry with this state file is kept."""
    return state_file.with_name(state_file.name + ".token")


def development_token(state_file: Path | None) -> tuple[str, Path | None]:
    """The token to use without a secret, and the file it is kept in (None: this run only)."""
    if state_file is None:
        return secrets.token_urlsafe(TOKEN_BYTES), None
    path = token_file(state_file)
    try:
        return _read(path), path
    except FileNotFoundError:
        pass
    try:
        _create(path, secrets.token_urlsafe(TOKEN_BYTES))
    except FileExistsError:  # another registry created it meanwhile
        pass
    except OSError as error:
        raise ConfigError(VARIABLE, f"unset, and {path} cannot be written: {error}") from None
    return _read(path), path


def _read(path: Path) -> str:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise ConfigError(VARIABLE, f"unset, and {path} cannot be read: {error}") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise ConfigError(VARIABLE, f"unset, and {path} is not a file of this user")
        if info.st_mode & 0o077:
            raise ConfigError(
                VARIABLE,
                f"unset, and {path} may be read by others (mode {stat.S_IMODE(info.st_mode):o}): "
                "delete it for a new token, or chmod 600 it",
            )
        token = os.read(descriptor, 1024).decode("ascii", errors="replace").strip()
    finally:
        os.close(descriptor)
    if not token or not token.isprintable() or " " in token or not token.isascii():
        raise ConfigError(VARIABLE, f"unset, and {path} holds no token: delete it for a new one")
    return token


def _create(path: Path, token: str) -> None:
    """Write `token` to `path`, which must not exist; never a partly written file."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(token.encode("ascii") + b"\n")
            file.flush()
            os.fsync(file.fileno())
        os.link(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
