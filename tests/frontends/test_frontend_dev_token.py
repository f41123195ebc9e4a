"""The development token is kept beside the state file, so a restart locks no client out;
cluster mode refuses to start without a secret."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import httpx
import pytest

from conformance.client import instance_body
from conformance.server_process import serving
from frontends.runtime.dev_token import token_file
from frontends.runtime.settings import load_settings
from sd_core import ConfigError


def _env(state_file: Path | str) -> dict[str, str]:
    return {"SERVICE_DISCOVERY_STATE_FILE": str(state_file)}


def test_the_generated_token_is_kept_beside_the_state_file_and_reused(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    old_umask = os.umask(0)  # the file's mode must not depend on the umask
    try:
        first = load_settings(_env(state_file))
    finally:
        os.umask(old_umask)
    second = load_settings(_env(state_file))
    kept = token_file(state_file)
    assert first.secret_generated and second.secret_generated
    assert first.secret_file == second.secret_file == kept == tmp_path / "state.json.token"
    assert second.secret == first.secret and len(first.secret) >= 32
    assert kept.read_text().strip() == first.secret
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json.token"]  # no leftovers

    kept.unlink()  # deleting it is how an operator asks for a new token
    assert load_settings(_env(state_file)).secret != first.secret


def test_without_a_state_file_the_token_is_for_one_run_only(tmp_path: Path) -> None:
    first = load_settings(_env(""))
    second = load_settings(_env(""))
    assert first.secret_file is None and second.secret_file is None
    assert first.secret != second.secret


@pytest.mark.parametrize("kind", ["symlink", "readable-by-others", "empty", "directory"])
def test_a_token_file_that_cannot_be_trusted_is_refused_by_name(tmp_path: Path, kind: str) -> None:
    state_file = tmp_path / "state.json"
    kept = token_file(state_file)
    if kind == "symlink":
        (tmp_path / "elsewhere").write_text("planted-token\n")
        (tmp_path / "elsewhere").chmod(0o600)
        kept.symlink_to(tmp_path / "elsewhere")
    elif kind == "readable-by-others":
        kept.write_text("a-token-everyone-can-read\n")
        kept.chmod(0o644)
    elif kind == "empty":
        kept.touch(mode=0o600)
    else:
        kept.mkdir()
    with pytest.raises(ConfigError) as refused:
        load_settings(_env(state_file))
    assert refused.value.name == "SERVICE_DISCOVERY_SECRET"
    assert str(kept) in refused.value.message


def test_cluster_mode_refuses_to_start_without_a_secret() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"SERVICE_DISCOVERY_ETCD_ENDPOINTS": "http://127.0.0.1:2379"})
    assert refused.value.name == "SERVICE_DISCOVERY_SECRET"
    assert "cluster mode" in refused.value.message


def test_a_restarted_registry_without_a_secret_accepts_the_old_token(tmp_path: Path) -> None:
    env = _env(tmp_path / "state.json")  # the test environment's secret is scrubbed
    with serving("trio", env) as first:
        token = _printed_token(first.stderr())
        with _client(first.url, token) as client:
            body = instance_body("kept-token", "k-1")
            assert client.post("/v1/discovery/register", json=body).status_code == 200
    with serving("quart", env) as second:
        assert _printed_token(second.stderr()) == token
        with _client(second.url, token) as client:
            listed = client.get("/v1/discovery/services/kept-token")
            assert listed.status_code == 200, listed.text
            assert [i["instance_id"] for i in listed.json()["instances"]] == ["k-1"]


def _printed_token(log: str) -> str:
    found = re.search(r"Generated token kept in (\S+) while it exists: (\S+)", log)
    assert found is not None, log
    return found.group(2)


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
