"""`load_settings`: every variable read, every bad value refused by its variable's name."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import tempfile
from operator import attrgetter
from pathlib import Path

import pytest
from settings_cases import Refusal, each_refused

from frontends.runtime.settings import DEFAULT_PORT, load_settings
from frontends.runtime.state_file import claim
from sd_core import ConfigError, RegistryConfig
from sd_core.probe_address_policy import ProbePolicy, parse_networks

SECRET = "settings-secret"
NO_STATE_FILE = {"SERVICE_DISCOVERY_STATE_FILE": ""}


def test_defaults() -> None:
    settings = load_settings({"SERVICE_DISCOVERY_SECRET": SECRET})
    # Consul's reads name this node by the host name (docs/integrations.md).
    assert settings.registry == RegistryConfig(node_name=socket.gethostname())
    assert settings.host == "0.0.0.0"
    assert settings.port == DEFAULT_PORT == 3004
    assert settings.fd is None
    assert settings.secret == SECRET
    assert settings.secret_generated is False
    assert settings.read_token is None
    assert settings.max_concurrent_probes == 100
    assert settings.log_level == "INFO"
    assert settings.shutdown_grace == 5.0
    assert settings.state_file == (
        Path.home() / ".local" / "state" / "service-discovery" / "registry-3004.json"
    )
    assert settings.snapshot_interval == 5.0
    assert settings.max_blocking_queries == 20_000
    assert settings.max_in_flight_requests == 30_000
    assert settings.registry.probe_policy == ProbePolicy()
    assert settings.max_head_bytes == 16384
    assert settings.head_timeout == 5.0
    assert settings.write_timeout == 10.0
    assert settings.watch_backlog_bytes == 1024 * 1024
    assert settings.error_log_interval == 10.0


NETWORKS = "10.0.0.0/8, 127.0.0.1"
POLICY = ProbePolicy(parse_networks("10.0.0.0/8,127.0.0.1/32"))
STATE_FILE = Path(tempfile.gettempdir()) / "registry.json"

#: Each variable: a raw value, where the parsed setting lives (a dotted attribute path
#: from the settings) and what it must read there. Numbers first, then text, then values
#: parsed into objects.
EVERY_VARIABLE = {
    "HEALTH_CHECK_INTERVAL_SECONDS": ("12.5", "registry.health_check_interval", 12.5),
    "HEALTH_CHECK_TIMEOUT_SECONDS": ("0.25", "registry.health_check_timeout", 0.25),
    "HEALTH_CHECK_SUCCESS_THRESHOLD": ("3", "registry.success_threshold", 3),
    "HEALTH_CHECK_FAILURE_THRESHOLD": ("4", "registry.failure_threshold", 4),
    "SERVICE_REGISTRATION_TTL_SECONDS": ("90.5", "registry.registration_ttl", 90.5),
    "DEREGISTER_UNHEALTHY_AFTER_SECONDS": ("600", "registry.deregister_unhealthy_after", 600.0),
    "WATCH_LOAD_DELTA": ("0.05", "registry.watch_load_delta", 0.05),
    "SELF_PRESERVATION_THRESHOLD": ("0.75", "registry.self_preservation_threshold", 0.75),
    "SELF_PRESERVATION_MIN_INSTANCES": ("20", "registry.self_preservation_min_instances", 20),
    "SELF_PRESERVATION_MAX_SECONDS": ("120.5", "registry.self_preservation_max_seconds", 120.5),
    "SERVICE_DISCOVERY_MAX_INSTANCES": ("500", "registry.max_instances", 500),
    "SERVICE_DISCOVERY_MAX_BODY_BYTES": ("2048", "registry.max_body_bytes", 2048),
    "HEALTH_CHECK_MAX_BODY_BYTES": ("4096", "registry.probe_max_body_bytes", 4096),
    "SERVICE_DISCOVERY_FILTER_CACHE_BYTES": ("65536", "registry.filter_cache_bytes", 65536),
    "SERVICE_DISCOVERY_MAX_FILTER_PAIRS": ("4", "registry.max_filter_pairs", 4),
    "SERVICE_DISCOVERY_WATCH_MAX_SERVICES": ("32", "registry.max_watched_services", 32),
    "SERVICE_DISCOVERY_MAX_METADATA_BYTES": ("2048", "registry.max_metadata_bytes", 2048),
    "SERVICE_DISCOVERY_PORT": (" 8081 ", "port", 8081),
    "MAX_CONCURRENT_HEALTH_CHECKS": ("7", "max_concurrent_probes", 7),
    "HEALTH_CHECK_FIRST_RETRY_SECONDS": ("0.5", "registry.first_probe_retry", 0.5),
    "HEALTH_CHECK_RESOLVER_THREADS": ("2", "resolver_threads", 2),
    "SHUTDOWN_GRACE_SECONDS": ("2.5", "shutdown_grace", 2.5),
    "SERVICE_DISCOVERY_MAX_BLOCKING_QUERIES": ("50", "max_blocking_queries", 50),
    "SERVICE_DISCOVERY_MAX_IN_FLIGHT_REQUESTS": ("60", "max_in_flight_requests", 60),
    "SERVICE_DISCOVERY_SNAPSHOT_INTERVAL_SECONDS": ("2.5", "snapshot_interval", 2.5),
    "SERVICE_DISCOVERY_MAX_HEAD_BYTES": ("4096", "max_head_bytes", 4096),
    "SERVICE_DISCOVERY_HEAD_TIMEOUT_SECONDS": ("1.5", "head_timeout", 1.5),
    "SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS": ("2.5", "write_timeout", 2.5),
    "SERVICE_DISCOVERY_WATCH_BACKLOG_BYTES": ("65536", "watch_backlog_bytes", 65536),
    "SERVICE_DISCOVERY_ERROR_LOG_INTERVAL_SECONDS": ("60", "error_log_interval", 60.0),
    "SERVICE_DISCOVERY_HOST": ("127.0.0.1", "host", "127.0.0.1"),
    "LOG_LEVEL": ("debug", "log_level", "DEBUG"),
    "SERVICE_DISCOVERY_READ_TOKEN": ("read-only-token", "read_token", "read-only-token"),
    "SERVICE_DISCOVERY_PROBE_CLIENT": (" HTTPX ", "probe_client", "httpx"),
    "HEALTH_CHECK_ALLOWED_NETWORKS": (NETWORKS, "registry.probe_policy", POLICY),
    "SERVICE_DISCOVERY_STATE_FILE": (str(STATE_FILE), "state_file", STATE_FILE),
}


def test_every_variable_is_read() -> None:
    env = {name: raw for name, (raw, _, _) in EVERY_VARIABLE.items()}
    settings = load_settings({**env, "SERVICE_DISCOVERY_SECRET": SECRET})
    for name, (_, where, expected) in EVERY_VARIABLE.items():
        value = attrgetter(where)(settings)
        assert value == expected, name
        assert type(value) is type(expected), name


@pytest.mark.parametrize("name", sorted(EVERY_VARIABLE))
def test_each_variable_alone_changes_only_its_setting(name: str) -> None:
    raw, where, expected = EVERY_VARIABLE[name]
    env = {"SERVICE_DISCOVERY_SECRET": SECRET, name: raw}
    if name == "HEALTH_CHECK_INTERVAL_SECONDS":
        env["HEALTH_CHECK_TIMEOUT_SECONDS"] = "1"  # keep timeout <= interval
    assert attrgetter(where)(load_settings(env)) == expected


def test_empty_values_mean_the_default() -> None:
    env = {name: "  " for name in EVERY_VARIABLE}
    env["SERVICE_DISCOVERY_READ_TOKEN"] = ""  # a token of spaces is refused, not ignored
    settings = load_settings({**env, "SERVICE_DISCOVERY_SECRET": SECRET})
    default = load_settings({"SERVICE_DISCOVERY_SECRET": SECRET})
    # ... except the state file: empty is how an operator turns the default one off.
    assert settings.state_file is None
    assert settings == dataclasses.replace(default, state_file=None)


def test_flags_win_over_the_environment() -> None:
    env = {
        "SERVICE_DISCOVERY_SECRET": SECRET,
        "SERVICE_DISCOVERY_HOST": "10.0.0.1",
        "SERVICE_DISCOVERY_PORT": "9000",
    }
    settings = load_settings(env, host="127.0.0.1", port=9100, fd=7)
    assert (settings.host, settings.port, settings.fd) == ("127.0.0.1", 9100, 7)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("HEALTH_CHECK_INTERVAL_SECONDS", "0.5"),
        ("HEALTH_CHECK_TIMEOUT_SECONDS", "0.001"),
        ("SERVICE_REGISTRATION_TTL_SECONDS", "0.75"),
        ("DEREGISTER_UNHEALTHY_AFTER_SECONDS", "1.5"),
        ("SELF_PRESERVATION_MAX_SECONDS", "0.5"),
        ("SHUTDOWN_GRACE_SECONDS", "0.1"),
        ("SERVICE_DISCOVERY_SNAPSHOT_INTERVAL_SECONDS", "0.5"),
        ("SERVICE_DISCOVERY_HEAD_TIMEOUT_SECONDS", "0.5"),
        ("SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS", "0.5"),
        ("SERVICE_DISCOVERY_ERROR_LOG_INTERVAL_SECONDS", "0.5"),
    ],
)
def test_seconds_may_be_fractional(name: str, raw: str) -> None:
    env = {"SERVICE_DISCOVERY_SECRET": SECRET, name: raw}
    if name == "HEALTH_CHECK_INTERVAL_SECONDS":
        env["HEALTH_CHECK_TIMEOUT_SECONDS"] = "0.25"
    assert attrgetter(EVERY_VARIABLE[name][1])(load_settings(env)) == float(raw)


#: Each variable's bad values: alone in the environment, each must be refused by name.
BAD_VALUES: list[Refusal] = [
    *each_refused(
        {
            "HEALTH_CHECK_INTERVAL_SECONDS": ["-1", "0", "abc", "nan", "inf"],
            "HEALTH_CHECK_TIMEOUT_SECONDS": ["31", "0"],
            "HEALTH_CHECK_SUCCESS_THRESHOLD": ["0"],
            "HEALTH_CHECK_FAILURE_THRESHOLD": ["1.5", "two"],
            "SERVICE_REGISTRATION_TTL_SECONDS": ["-5"],
            "DEREGISTER_UNHEALTHY_AFTER_SECONDS": ["-1"],
            "WATCH_LOAD_DELTA": ["1.5"],
            "SELF_PRESERVATION_THRESHOLD": ["1"],
            "SELF_PRESERVATION_MIN_INSTANCES": ["-1"],
            "SELF_PRESERVATION_MAX_SECONDS": ["0"],
            "SERVICE_DISCOVERY_MAX_INSTANCES": ["0"],
            "SERVICE_DISCOVERY_MAX_BODY_BYTES": ["1k"],
            "HEALTH_CHECK_MAX_BODY_BYTES": ["0"],
            "SERVICE_DISCOVERY_PORT": ["0", "65536", "http", "80.5"],
            "MAX_CONCURRENT_HEALTH_CHECKS": ["0", "lots"],
            "HEALTH_CHECK_FIRST_RETRY_SECONDS": ["-1"],
            "HEALTH_CHECK_RESOLVER_THREADS": ["0"],
            "SHUTDOWN_GRACE_SECONDS": ["0", "soon"],
            "LOG_LEVEL": ["bogus", "TRACE"],
            "SERVICE_DISCOVERY_READ_TOKEN": [SECRET, "has space"],
            "SERVICE_DISCOVERY_SECRET": ["tab\tinside", "schlüssel"],
            "HEALTH_CHECK_ALLOWED_NETWORKS": ["10.0.0.0/33", "10.0.0.0/8, intranet"],
            "SERVICE_DISCOVERY_MAX_BLOCKING_QUERIES": ["0", "many"],
            "SERVICE_DISCOVERY_PROBE_CLIENT": ["requests"],
            "SERVICE_DISCOVERY_MAX_IN_FLIGHT_REQUESTS": ["-3"],
            "SERVICE_DISCOVERY_SNAPSHOT_INTERVAL_SECONDS": ["0", "nan"],
            "SERVICE_DISCOVERY_STATE_FILE": ["/no/such/directory/registry.json"],
            "SERVICE_DISCOVERY_MAX_FILTER_PAIRS": ["0"],
            "SERVICE_DISCOVERY_WATCH_MAX_SERVICES": ["0"],
            "SERVICE_DISCOVERY_MAX_METADATA_BYTES": ["0"],
            "SERVICE_DISCOVERY_FILTER_CACHE_BYTES": ["-1"],
            "SERVICE_DISCOVERY_MAX_HEAD_BYTES": ["1023", "16k"],
            "SERVICE_DISCOVERY_HEAD_TIMEOUT_SECONDS": ["0", "inf"],
            "SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS": ["-1", "x"],
            "SERVICE_DISCOVERY_WATCH_BACKLOG_BYTES": ["1023", "1m"],
            "SERVICE_DISCOVERY_ERROR_LOG_INTERVAL_SECONDS": ["0"],
        }
    ),
    # Two variables that are fine alone: the error names the one that breaks the pair.
    (
        {"HEALTH_CHECK_INTERVAL_SECONDS": "2", "HEALTH_CHECK_TIMEOUT_SECONDS": "2.5"},
        "HEALTH_CHECK_TIMEOUT_SECONDS",
    ),
]


@pytest.mark.parametrize(("env", "name"), BAD_VALUES, ids=[n for _, n in BAD_VALUES])
def test_a_bad_value_raises_config_error_naming_the_variable(
    env: dict[str, str], name: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"SERVICE_DISCOVERY_SECRET": SECRET, **env})
    assert raised.value.name == name
    assert raised.value.message
    assert "\n" not in str(raised.value)


def test_a_bad_port_flag_is_refused_too() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"SERVICE_DISCOVERY_SECRET": SECRET}, port=0)
    assert raised.value.name == "SERVICE_DISCOVERY_PORT"


@pytest.mark.parametrize(
    "env",
    [NO_STATE_FILE, {"SERVICE_DISCOVERY_SECRET": "", **NO_STATE_FILE}],
)
def test_without_a_secret_a_random_token_is_generated(env: dict[str, str]) -> None:
    """Without a state file, that is: beside one, it is kept (test_frontend_dev_token.py)."""
    first = load_settings(env)
    second = load_settings(env)
    assert first.secret_generated and second.secret_generated
    assert len(first.secret) >= 32
    assert first.secret != second.secret
    assert first.secret.isascii() and first.secret.isprintable() and " " not in first.secret


def test_the_state_file_defaults_to_one_per_port_under_the_users_state_home(
    tmp_path: Path,
) -> None:
    env = {"SERVICE_DISCOVERY_SECRET": SECRET, "XDG_STATE_HOME": str(tmp_path)}
    first = load_settings(env, port=3004).state_file
    second = load_settings(env, port=3005).state_file
    assert first == tmp_path / "service-discovery" / "registry-3004.json"
    assert second == tmp_path / "service-discovery" / "registry-3005.json"
    assert first.parent.is_dir()


def test_an_empty_state_file_setting_turns_it_off(tmp_path: Path) -> None:
    env = {"SERVICE_DISCOVERY_SECRET": SECRET, "XDG_STATE_HOME": str(tmp_path)}
    assert load_settings({**env, "SERVICE_DISCOVERY_STATE_FILE": ""}).state_file is None


def test_the_default_state_file_follows_an_inherited_sockets_port(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        env = {"SERVICE_DISCOVERY_SECRET": SECRET, "XDG_STATE_HOME": str(tmp_path)}
        state_file = load_settings(env, fd=listener.fileno()).state_file
    assert state_file == tmp_path / "service-discovery" / f"registry-{port}.json"


def test_a_state_file_held_by_another_registry_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert claim(path) is False
    finally:
        holder.communicate("", timeout=10)  # closing stdin ends it
    assert claim(path) is True  # the kernel released the lock with the process
    assert claim(path) is True  # and this process may ask again


#: Another registry, as far as the lock goes: holds it until its stdin closes.
HOLD_LOCK = """
import fcntl, sys
handle = open(sys.argv[1] + ".lock", "w")
fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
sys.stdin.read()
"""
