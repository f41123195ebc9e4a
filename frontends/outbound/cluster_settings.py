"""Cluster-mode settings: which etcd to share, how to reach it, and who this node is.

`SERVICE_DISCOVERY_ETCD_ENDPOINTS` is the switch: unset, the server is today's single
process with its in-memory registry, unchanged; set, it becomes one node of a cluster.
Every value is checked here, before anything starts, and a bad one is a `ConfigError`
naming its variable (startup then ends with one line and exit code 2, like every other
setting).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from sd_core import ConfigError
from sd_core.cluster import DEFAULT_PREFIX

_N = TypeVar("_N", int, float)

#: Every variable read here (the test helpers scrub them from inherited environments).
CLUSTER_VARIABLES = (
    "SERVICE_DISCOVERY_ETCD_ENDPOINTS",
    "SERVICE_DISCOVERY_ETCD_PREFIX",
    "SERVICE_DISCOVERY_ETCD_USERNAME",
    "SERVICE_DISCOVERY_ETCD_PASSWORD",
    "SERVICE_DISCOVERY_ETCD_CA_FILE",
    "SERVICE_DISCOVERY_ETCD_CERT_FILE",
    "SERVICE_DISCOVERY_ETCD_KEY_FILE",
    "SERVICE_DISCOVERY_ETCD_WATCH_TIMEOUT_SECONDS",
    "SERVICE_DISCOVERY_NODE_ID",
    "SERVICE_DISCOVERY_NODE_TTL_SECONDS",
    "SERVICE_DISCOVERY_RESUME_WAIT_SECONDS",
    "SERVICE_DISCOVERY_STALE_AFTER_SECONDS",
)

#: How long one store call may take before it counts as failed: below etcd's own 7 s
#: "no quorum" answer, so a client learns of an outage in about this long.
CALL_TIMEOUT_SECONDS = 3.0
#: How long the watch may stay silent before it counts as dead. etcd sends a progress
#: notification every `--experimental-watch-progress-notify-interval` (10 minutes by
#: default): keep this above that interval, or a quiet watch is torn down for nothing.
DEFAULT_WATCH_TIMEOUT_SECONDS = 660.0
#: The node lease's TTL: how long after a node dies the others take over its probes.
#: Its keepalive runs every third of it, so two keepalives may be lost in a row.
DEFAULT_NODE_TTL_SECONDS = 10
#: Below this a keepalive would run more than once a second, and etcd's own minimum
#: lease TTL (1.5 election timeouts, 2 s by default) could round it up anyway.
MIN_NODE_TTL_SECONDS = 3
#: How long a read naming a revision this node has not seen yet (a blocking query's
#: index, a watch's Last-Event-ID, taken from another node) waits for the node's view
#: to reach it before it starts over. Nodes are milliseconds apart in steady state.
DEFAULT_RESUME_WAIT_SECONDS = 5.0
#: Reads say `X-Discovery-Stale: true` once the node has heard nothing from etcd for this
#: long. A quiet node hears etcd at least every node keepalive (a third of the node TTL).
DEFAULT_STALE_AFTER_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """How this node reaches etcd, and its name and address among the nodes."""

    endpoints: tuple[str, ...]
    node_id: str
    url: str
    prefix: str = DEFAULT_PREFIX
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    call_timeout: float = CALL_TIMEOUT_SECONDS
    watch_timeout: float = DEFAULT_WATCH_TIMEOUT_SECONDS
    node_ttl: int = DEFAULT_NODE_TTL_SECONDS
    resume_wait: float = DEFAULT_RESUME_WAIT_SECONDS
    stale_after: float = DEFAULT_STALE_AFTER_SECONDS


def _endpoints(raw: str) -> tuple[str, ...]:
    name = "SERVICE_DISCOVERY_ETCD_ENDPOINTS"
    found: list[str] = []
    for part in raw.split(","):
        url = part.strip().rstrip("/")
        if not url:
            continue
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as error:
            raise ConfigError(name, f"bad URL {url!r}: {error}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(name, f"must be http:// or https:// URLs, got {url!r}")
        if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
            raise ConfigError(name, f"must be bare scheme://host:port URLs, got {url!r}")
        found.append(url)
    if not found:
        raise ConfigError(name, "must list at least one URL")
    return tuple(found)


def _file(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    path = Path(raw)
    if not path.is_file():
        raise ConfigError(name, f"file {raw} does not exist")
    return path


def _number(
    env: Mapping[str, str],
    name: str,
    parse: Callable[[str], _N],
    default: _N,
    *,
    above: float,
) -> _N:
    """A finite number above `above` from `env[name]`, or `default` when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    kind = "a whole number" if parse is int else "a number"
    try:
        value = parse(raw)
    except ValueError:
        raise ConfigError(name, f"must be {kind}, got {raw!r}") from None
    if not above < value < float("inf"):
        raise ConfigError(name, f"must be {kind} more than {above:g}, got {raw}")
    return value


def _listen_address(host: str, port: int, fd: int | None) -> tuple[str, int]:
    """The host and port this node is reached at (an inherited socket knows its own)."""
    if fd is not None:
        with contextlib.suppress(OSError), socket.socket(fileno=socket.dup(fd)) as sock:
            address = sock.getsockname()
            host, port = str(address[0]), int(address[1])
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return host, port


def load_cluster_settings(
    env: Mapping[str, str], *, host: str, port: int, fd: int | None
) -> ClusterSettings | None:
    """The cluster settings, or None when `SERVICE_DISCOVERY_ETCD_ENDPOINTS` is unset."""
    raw = env.get("SERVICE_DISCOVERY_ETCD_ENDPOINTS", "").strip()
    if not raw:
        return None
    endpoints = _endpoints(raw)
    prefix = env.get("SERVICE_DISCOVERY_ETCD_PREFIX", "").strip() or DEFAULT_PREFIX
    if not prefix.startswith("/") or not prefix.endswith("/") or not prefix.isprintable():
        raise ConfigError(
            "SERVICE_DISCOVERY_ETCD_PREFIX", f"must start and end with '/', got {prefix!r}"
        )
    username = env.get("SERVICE_DISCOVERY_ETCD_USERNAME", "") or None
    password = env.get("SERVICE_DISCOVERY_ETCD_PASSWORD", "") or None
    if (username is None) != (password is None):
        missing = "PASSWORD" if password is None else "USERNAME"
        raise ConfigError(f"SERVICE_DISCOVERY_ETCD_{missing}", "username and password go together")
    ca_file = _file(env, "SERVICE_DISCOVERY_ETCD_CA_FILE")
    cert_file = _file(env, "SERVICE_DISCOVERY_ETCD_CERT_FILE")
    key_file = _file(env, "SERVICE_DISCOVERY_ETCD_KEY_FILE")
    if (cert_file is None) != (key_file is None):
        missing = "KEY_FILE" if key_file is None else "CERT_FILE"
        raise ConfigError(
            f"SERVICE_DISCOVERY_ETCD_{missing}", "a client certificate needs both files"
        )
    watch_timeout = _number(
        env,
        "SERVICE_DISCOVERY_ETCD_WATCH_TIMEOUT_SECONDS",
        float,
        DEFAULT_WATCH_TIMEOUT_SECONDS,
        above=CALL_TIMEOUT_SECONDS,
    )
    node_ttl = _number(
        env,
        "SERVICE_DISCOVERY_NODE_TTL_SECONDS",
        int,
        DEFAULT_NODE_TTL_SECONDS,
        above=MIN_NODE_TTL_SECONDS - 1,
    )
    resume_wait = _number(
        env, "SERVICE_DISCOVERY_RESUME_WAIT_SECONDS", float, DEFAULT_RESUME_WAIT_SECONDS, above=0
    )
    stale_after = _number(
        env,
        "SERVICE_DISCOVERY_STALE_AFTER_SECONDS",
        float,
        DEFAULT_STALE_AFTER_SECONDS,
        above=node_ttl / 3,  # the node keepalive: a quiet node's contact with etcd
    )
    listen_host, listen_port = _listen_address(host, port, fd)
    shown = f"[{listen_host}]" if ":" in listen_host else listen_host
    node_id = env.get("SERVICE_DISCOVERY_NODE_ID", "").strip() or f"{shown}:{listen_port}"
    if "/" in node_id or not node_id.isprintable() or " " in node_id:
        raise ConfigError(
            "SERVICE_DISCOVERY_NODE_ID", f"must be printable, without '/' or spaces: {node_id!r}"
        )
    return ClusterSettings(
        endpoints=endpoints,
        node_id=node_id,
        url=f"http://{shown}:{listen_port}",
        prefix=prefix,
        username=username,
        password=password,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        watch_timeout=watch_timeout,
        node_ttl=node_ttl,
        resume_wait=resume_wait,
        stale_after=stale_after,
    )
