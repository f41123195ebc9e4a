"""The state file in a shared directory: no link redirects it, nobody else reads it.

The snapshot holds every instance's metadata; written through a link planted
at its temporary name, it overwrote another user's file.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from frontends.runtime.settings import load_settings
from frontends.runtime.state_file import write_atomically
from sd_core import ConfigError


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def test_the_snapshot_is_written_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    write_atomically(path, b"{}")
    assert path.read_bytes() == b"{}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_link_planted_at_the_temporary_name_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim-secrets"
    victim.write_bytes(b"the victim's own data")
    victim.chmod(0o600)
    path = tmp_path / "registry.json"
    _temporary_name(path).symlink_to(victim)
    write_atomically(path, b'{"snapshot":1}')
    assert victim.read_bytes() == b"the victim's own data"
    assert path.read_bytes() == b'{"snapshot":1}'
    assert not path.is_symlink()
    assert not _temporary_name(path).exists()


def test_a_stale_temporary_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    _temporary_name(path).write_bytes(b"left by a crash")
    write_atomically(path, b"{}")
    assert path.read_bytes() == b"{}"


@pytest.mark.parametrize(("mode", "refused"), [(0o777, True), (0o1777, False), (0o755, False)])
def test_a_world_writable_directory_without_the_sticky_bit_is_refused(
    tmp_path: Path, mode: int, refused: bool
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    env = {
        "SERVICE_DISCOVERY_SECRET": "state-file-secret",
        "SERVICE_DISCOVERY_STATE_FILE": str(shared / "registry.json"),
    }
    if not refused:
        assert load_settings(env).state_file == shared / "registry.json"
        return
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert raised.value.name == "SERVICE_DISCOVERY_STATE_FILE"
    assert "world-writable without the sticky bit" in raised.value.message


def test_startup_with_such_a_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    env = {
        **os.environ,
        "SERVICE_DISCOVERY_SECRET": "state-file-secret",
        "SERVICE_DISCOVERY_STATE_FILE": str(shared / "registry.json"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "frontends", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "SERVICE_DISCOVERY_STATE_FILE" in lines[0]
