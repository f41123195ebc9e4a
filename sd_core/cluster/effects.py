"""What a `ClusterNode` asks its driver to do, and how it is configured.

Frozen values, like the core's own effects: the driver executes them and reports
back through the node's methods (see `ClusterNode` for the full contract).
"""

from __future__ import annotations

from dataclasses import dataclass

from sd_etcd import MAX_TXN_OPS, GatewayRequest

from ..http_api import HttpResponse
from .layout import DEFAULT_PREFIX


@dataclass(frozen=True, slots=True)
class StoreCall:
    """POST `request` to the gateway; answer with `store_answered(token, status, body,
    now)`, or `store_failed(token, now)` on a connection error or after the driver's own
    timeout (about 3 s, shorter than etcd's 7 s)."""

    token: int
    request: GatewayRequest


@dataclass(frozen=True, slots=True)
class OpenWatch:
    """Open the streaming watch `request` (closing any other); feed its body with
    `watch_data(watch, bytes, now)` and report its end, however it ends (EOF, error
    status, connection failure, read timeout), with `watch_ended(watch, now)`."""

    watch: int
    request: GatewayRequest


@dataclass(frozen=True, slots=True)
class CloseWatch:
    """Close watch `watch`: drop its connection. Sent before any new watch opens and when
    the watch or a listing fails; etcd keeps a canceled watch's stream open, so only the
    driver can end it."""

    watch: int


@dataclass(frozen=True, slots=True)
class WriteDone:
    """The parked request `PendingWrite(token)` is answered: send `response`. A success
    is sent once the node's view shows the write (or the wait for the view ran out after
    the store confirmed it); an error as soon as the store refused or failed the write."""

    token: int
    response: HttpResponse


@dataclass(frozen=True, slots=True)
class StoreWentBack:
    """The store answered with a revision below one this node's view had reached: etcd
    lost its data (restarted on an empty data dir, or restored from an old backup). The
    node forgot its view and lists the store afresh; log it once, as an error."""

    synced_revision: int
    store_revision: int


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Reads held until the view reached a revision (`ClusterNode.hold_until`):
    `reached`, the revisions the view has now reached (resume from them); `expired`,
    the ones it did not reach in `resume_wait` (start over)."""

    reached: frozenset[int]
    expired: frozenset[int]


ClusterEffect = StoreCall | OpenWatch | CloseWatch | WriteDone | StoreWentBack | CaughtUp


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """One node's place in the cluster (registry behaviour stays in `RegistryConfig`).

    `node_ttl`/`keepalive_interval`: the node lease, whose expiry hands this node's
    probes to the others; `retry_interval`: how soon a broken watch or a failed
    liveness call is tried again; `write_wait`: how long a confirmed write waits for
    the view to show it before it is answered anyway; `list_page`: keys per page of a
    listing; `soft_batch`: soft-state puts per txn of a group commit (etcd's
    `--max-txn-ops` by default); `resume_wait`: how long a read naming a revision the
    view has not reached (a blocking query's index, a watch's `Last-Event-ID`) waits
    for it before it starts over (0: never waits); `max_holds`: how many distinct
    revisions may be waited for at once (one more starts over at once: a client can
    name any number of future revisions, and each held one costs memory until
    `resume_wait`); `stale_after`: reads are flagged stale once the node has heard
    nothing from the store for this long."""

    node_id: str
    url: str = ""
    frontend: str = "unknown"
    prefix: str = DEFAULT_PREFIX
    node_ttl: int = 10
    keepalive_interval: float = 3.0
    retry_interval: float = 1.0
    write_wait: float = 5.0
    list_page: int = 1000
    soft_batch: int = MAX_TXN_OPS
    resume_wait: float = 5.0
    max_holds: int = 40_000  # a node's runtime passes its parked-read limits
    stale_after: float = 10.0

    def __post_init__(self) -> None:
        if not self.node_id or "/" in self.node_id:
            raise ValueError("node_id must be non-empty and hold no '/'")
        if not 0 < self.keepalive_interval < self.node_ttl:
            raise ValueError("keepalive_interval must be positive and below node_ttl")
        if self.resume_wait < 0 or self.stale_after <= 0:
            raise ValueError("resume_wait must be at least 0 and stale_after positive")
        if self.soft_batch < 1 or self.max_holds < 1:
            raise ValueError("soft_batch and max_holds must be at least 1")
