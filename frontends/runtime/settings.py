"""Server settings from the environment, checked before anything starts.

A bad value stops startup with one line naming the variable: an operator
should never have to read a traceback to find a typo in a deployment file.
Numbers are read from two tables, one loop each: the registry's (checked by
`RegistryConfig`) and the server's own (checked against a minimum here; an
unset one keeps the `Settings` default).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from frontends.outbound.cluster_settings import ClusterSettings, load_cluster_settings
from frontends.runtime.dev_token import development_token
from frontends.runtime.dns_settings import DnsSettings, load_dns_settings
from frontends.runtime.state_file import unsafe_directory
from sd_core import ConfigError, RegistryConfig
from sd_core.probe_address_policy import ProbePolicy, parse_networks

# Environment variable -> (RegistryConfig field, parser).
_REGISTRY_VARIABLES: dict[str, tuple[str, Callable[[str], float | int]]] = {
    "HEALTH_CHECK_INTERVAL_SECONDS": ("health_check_interval", float),
    "HEALTH_CHECK_TIMEOUT_SECONDS": ("health_check_timeout", float),
    "HEALTH_CHECK_SUCCESS_THRESHOLD": ("success_threshold", int),
    "HEALTH_CHECK_FAILURE_THRESHOLD": ("failure_threshold", int),
    "SERVICE_REGISTRATION_TTL_SECONDS": ("registration_ttl", float),
    "DEREGISTER_UNHEALTHY_AFTER_SECONDS": ("deregister_unhealthy_after", float),
    "WATCH_LOAD_DELTA": ("watch_load_delta", float),
    "SELF_PRESERVATION_THRESHOLD": ("self_preservation_threshold", float),
    "SELF_PRESERVATION_MIN_INSTANCES": ("self_preservation_min_instances", int),
    "SELF_PRESERVATION_MAX_SECONDS": ("self_preservation_max_seconds", float),
    "SERVICE_DISCOVERY_MAX_INSTANCES": ("max_instances", int),
    "SERVICE_DISCOVERY_MAX_BODY_BYTES": ("max_body_bytes", int),
    "HEALTH_CHECK_MAX_BODY_BYTES": ("probe_max_body_bytes", int),
    "HEALTH_CHECK_FIRST_PROBES_PER_SECOND": ("first_probes_per_second", float),
    "SERVICE_DISCOVERY_FILTER_CACHE_BYTES": ("filter_cache_bytes", int),
    "SERVICE_DISCOVERY_MAX_FILTER_PAIRS": ("max_filter_pairs", int),
    "SERVICE_DISCOVERY_WATCH_MAX_SERVICES": ("max_watched_services", int),
    "SERVICE_DISCOVERY_MAX_METADATA_BYTES": ("max_metadata_bytes", int),
    "HEALTH_CHECK_FIRST_RETRY_SECONDS": ("first_probe_retry", float),
}
_FIELD_TO_VARIABLE = {field: name for name, (field, _) in _REGISTRY_VARIABLES.items()}
_FIELD_TO_VARIABLE["datacenter"] = "SERVICE_DISCOVERY_DATACENTER"
# Environment variable -> (Settings field, parser, minimum). Whole numbers
# count things and must be at least the minimum; seconds must exceed it.
_SERVER_VARIABLES: dict[str, tuple[str, type[int] | type[float], int]] = {
    "MAX_CONCURRENT_HEALTH_CHECKS": ("max_concurrent_probes", int, 1),
    "HEALTH_CHECK_RESOLVER_THREADS": ("resolver_threads", int, 1),
    "SHUTDOWN_GRACE_SECONDS": ("shutdown_grace", float, 0),
    "SERVICE_DISCOVERY_MAX_BLOCKING_QUERIES": ("max_blocking_queries", int, 1),
    "SERVICE_DISCOVERY_MAX_IN_FLIGHT_REQUESTS": ("max_in_flight_requests", int, 1),
    "SERVICE_DISCOVERY_SNAPSHOT_INTERVAL_SECONDS": ("snapshot_interval", float, 0),
    "SERVICE_DISCOVERY_MAX_WATCH_STREAMS": ("max_watch_streams", int, 1),
    "SERVICE_DISCOVERY_WATCH_KEEPALIVE_SECONDS": ("watch_keepalive", float, 0),
    "SERVICE_DISCOVERY_WATCH_BACKLOG_BYTES": ("watch_backlog_bytes", int, 1024),
    "SERVICE_DISCOVERY_BODY_TIMEOUT_SECONDS": ("body_timeout", float, 0),
    "SERVICE_DISCOVERY_BACKLOG": ("backlog", int, 1),
    "SERVICE_DISCOVERY_GC_YOUNG_THRESHOLD": ("gc_young_threshold", int, 0),
    "SERVICE_DISCOVERY_MAX_HEAD_BYTES": ("max_head_bytes", int, 1024),
    "SERVICE_DISCOVERY_HEAD_TIMEOUT_SECONDS": ("head_timeout", float, 0),
    "SERVICE_DISCOVERY_WRITE_TIMEOUT_SECONDS": ("write_timeout", float, 0),
    "SERVICE_DISCOVERY_ERROR_LOG_INTERVAL_SECONDS": ("error_log_interval", float, 0),
}
#: The largest request head (request line, headers, blank line) served by default.
DEFAULT_MAX_HEAD_BYTES = 16 * 1024
#: How far a watch stream's reader may fall behind (bytes queued for it) before it is dropped.
DEFAULT_WATCH_BACKLOG_BYTES = 1024 * 1024
#: Seconds between two log lines about failed accepts or malformed requests, by default.
DEFAULT_ERROR_LOG_INTERVAL = 10.0
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
DEFAULT_PORT = 3004


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a server process needs; `registry` is what the core sees."""

    registry: RegistryConfig
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    fd: int | None = None
    secret: str = ""
    secret_generated: bool = False
    # Where a generated secret is kept (beside the state file); None: this run only.
    secret_file: Path | None = None
    read_token: str | None = None
    max_concurrent_probes: int = 100
    # Threads that resolve probe targets' host names (IP literals need none), so
    # slow DNS holds these and no probe of an address, and shutdown never waits.
    resolver_threads: int = 4
    log_level: str = "INFO"
    shutdown_grace: float = 5.0
    state_file: Path | None = None
    max_blocking_queries: int = 20_000
    max_in_flight_requests: int = 30_000
    snapshot_interval: float = 5.0
    probe_client: str = "builtin"
    cluster: ClusterSettings | None = None  # None: one process, its own registry
    max_watch_streams: int = 20_000
    watch_keepalive: float = 15.0
    # The bytes queued for one watch stream whose reader is behind; past this
    # the stream is dropped (its client resumes by index), so what a reader
    # that stopped reading costs is bounded by this, not by the fleet's changes.
    watch_backlog_bytes: int = DEFAULT_WATCH_BACKLOG_BYTES
    # A request's whole body must arrive within this (408 past it), so a
    # client trickling a body cannot hold a connection and an in-flight slot.
    body_timeout: float = 10.0
    # Listen backlog; an inherited socket's larger backlog is kept.
    backlog: int = 2048
    # Allocations between two young garbage collections; 0 keeps Python's
    # own settings (see frontends/runtime/collector.py for why it is raised).
    gc_young_threshold: int = 25_000
    # A request head is buffered whole before anything can answer it: memory any
    # client holds without a token. Past this, `431` and close, on every kind.
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES
    # A head must be complete this long after the accept or the last response;
    # an idle kept-alive connection is closed after it too.
    head_timeout: float = 5.0
    # How long one write may wait for a client that does not read before the
    # connection is aborted (what was unsent is dropped).
    write_timeout: float = 10.0
    # Failed accepts and malformed requests: one log line with a count per this.
    error_log_interval: float = DEFAULT_ERROR_LOG_INTERVAL
    dns: DnsSettings | None = None  # None: no DNS interface


def _number(name: str, raw: str, parse: Callable[[str], float | int]) -> float | int:
    try:
        value = parse(raw.strip())
    except ValueError:
        kind = "a whole number" if parse is int else "a number"
        raise ConfigError(name, f"must be {kind}, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(name, f"must be a finite number, got {raw!r}")
    return value


def load_settings(
    env: Mapping[str, str],
    *,
    host: str | None = None,
    port: int | None = None,
    fd: int | None = None,
) -> Settings:
    """Read and check every setting; raises ConfigError naming the variable."""
    values: dict[str, float | int] = {}
    for name, (field, parse) in _REGISTRY_VARIABLES.items():
        raw = env.get(name)
        if raw is not None and raw.strip() != "":
            values[field] = _number(name, raw, parse)
    policy = ProbePolicy()
    raw_networks = env.get("HEALTH_CHECK_ALLOWED_NETWORKS", "").strip()
    if raw_networks:
        try:
            policy = ProbePolicy(parse_networks(raw_networks))
        except ValueError as error:
            raise ConfigError("HEALTH_CHECK_ALLOWED_NETWORKS", str(error)) from None
    # Consul's reads (docs/integrations.md): the datacenter, and the node's name
    # in one process (a cluster node is named by its node id instead).
    datacenter = env.get("SERVICE_DISCOVERY_DATACENTER", "").strip() or "dc1"
    host_name = socket.gethostname()
    node_name = host_name if host_name and host_name.isprintable() else "service-discovery"
    try:
        registry = RegistryConfig(
            **values,  # type: ignore[arg-type]
            probe_policy=policy,
            datacenter=datacenter,
            node_name=node_name[:256],
        )
    except ConfigError as error:
        raise ConfigError(_FIELD_TO_VARIABLE.get(error.name, error.name), error.message) from None

    if port is None:
        raw_port = env.get("SERVICE_DISCOVERY_PORT", "").strip()
        port = int(_number("SERVICE_DISCOVERY_PORT", raw_port, int)) if raw_port else DEFAULT_PORT
    if not 1 <= port <= 65535:
        raise ConfigError("SERVICE_DISCOVERY_PORT", f"must be 1-65535, got {port}")
    host = host or env.get("SERVICE_DISCOVERY_HOST", "").strip() or "0.0.0.0"

    numbers: dict[str, float | int] = {}
    for name, (field, parse, minimum) in _SERVER_VARIABLES.items():
        raw = env.get(name, "").strip()
        if not raw:
            continue
        value = numbers[field] = _number(name, raw, parse)
        if parse is int and value < minimum:
            raise ConfigError(name, f"must be at least {minimum}, got {value}")
        if parse is float and value <= minimum:
            raise ConfigError(name, f"must be greater than {minimum}, got {raw}")

    cluster = load_cluster_settings(env, host=host, port=port, fd=fd)
    raw_state = env.get("SERVICE_DISCOVERY_STATE_FILE")
    if raw_state is None:  # unset: the per-user default (not in cluster mode: etcd is the state)
        port_used = port if fd is None else listening_port(fd)
        state_file = default_state_file(env, port_used) if cluster is None else None
    else:  # set: that file; set but empty: none
        state_file = Path(raw_state.strip()) if raw_state.strip() else None
    if state_file is not None and not state_file.parent.is_dir():
        raise ConfigError(
            "SERVICE_DISCOVERY_STATE_FILE", f"directory {state_file.parent} does not exist"
        )
    if state_file is not None and (unsafe := unsafe_directory(state_file)) is not None:
        raise ConfigError("SERVICE_DISCOVERY_STATE_FILE", unsafe)
    if cluster is not None and state_file is not None:
        raise ConfigError(
            "SERVICE_DISCOVERY_STATE_FILE", "has no use in cluster mode (etcd holds the state)"
        )

    probe_client = env.get("SERVICE_DISCOVERY_PROBE_CLIENT", "").strip().lower() or "builtin"
    if probe_client not in ("builtin", "httpx"):
        raise ConfigError(
            "SERVICE_DISCOVERY_PROBE_CLIENT", f"must be builtin or httpx, got {probe_client!r}"
        )

    level = (env.get("LOG_LEVEL", "").strip() or "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError("LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}, got {level!r}")

    secret = env.get("SERVICE_DISCOVERY_SECRET", "")
    generated = not secret
    secret_file = None
    if generated and cluster is not None:
        raise ConfigError(
            "SERVICE_DISCOVERY_SECRET",
            "must be set in cluster mode (every node must accept the same token)",
        )
    if generated:
        secret, secret_file = development_token(state_file)
    _check_token("SERVICE_DISCOVERY_SECRET", secret)
    read_token = env.get("SERVICE_DISCOVERY_READ_TOKEN") or None
    if read_token is not None:
        _check_token("SERVICE_DISCOVERY_READ_TOKEN", read_token)
        if read_token == secret:
            raise ConfigError(
                "SERVICE_DISCOVERY_READ_TOKEN", "must differ from SERVICE_DISCOVERY_SECRET"
            )
    return Settings(
        registry=registry,
        host=host,
        port=port,
        fd=fd,
        secret=secret,
        secret_generated=generated,
        secret_file=secret_file,
        read_token=read_token,
        log_level=level,
        state_file=state_file,
        probe_client=probe_client,
        cluster=cluster,
        dns=load_dns_settings(env),
        **numbers,  # type: ignore[arg-type]
    )


def default_state_file(env: Mapping[str, str], port: int | None) -> Path | None:
    """`$XDG_STATE_HOME/service-discovery/registry-<port>.json` (or `~/.local/state/...`).

    Why a default at all: without a state file, a restarted registry answered
    `200 []` until every service's next heartbeat, which no client treats as
    an error. Why keyed by port: two registries on one machine (a laptop, a
    test suite starting many servers) must never load each other's fleet; the
    file is also locked while in use (`state_file.claim`). None when there is
    no home to put it in, or the port is unknown: the registry then runs
    without one, as it did before.
    """
    if port is None:
        return None
    try:
        base = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        directory = base / "service-discovery"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except (OSError, RuntimeError):
        return None
    return directory / f"registry-{port}.json"


def listening_port(fd: int) -> int | None:
    """The port of an inherited listening socket (the default state file is keyed by it)."""
    try:
        with socket.socket(fileno=os.dup(fd)) as inherited:
            address = inherited.getsockname()
    except OSError:
        return None
    return address[1] if isinstance(address, tuple) else None


def _check_token(name: str, token: str) -> None:
    # Tokens travel in an HTTP header: printable ASCII without spaces only.
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError(name, "must be printable ASCII without spaces")
