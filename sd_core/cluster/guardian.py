"""Self-preservation in cluster mode: one node (the guardian) decides, and keeps the
quiet instances' leases alive while expiry is paused.

Expiry is etcd's (each instance's lease), so pausing it means renewing the leases of
the instances that went quiet. The soft state lets any node see every heartbeat, so
one node can decide with the single-process rules and state (`Registry.expiry_paused`,
`self_preservation.SelfPreservation`, same settings): the guardian is the live node
with the lowest node id in its view (ties cannot happen: ids are keys), and a stale
node is never the guardian. The mode is shown on every node through the
`self-preservation` key, which the guardian writes on its own node lease while the mode
is on and deletes when it ends; if the guardian dies, the key goes with its lease and
the next guardian decides afresh. The guardian keeps its decision state apart from what
its registry shows, which follows the key like every other node's.

An expiry is "due" when an instance's lease would run out within `margin` (its last
heartbeat, or the guardian's last renewal of it, plus the TTL): the guardian looks at
that moment, so the mode starts when one process's would, just before etcd would
expire the lease. While paused, it renews each quiet lease every half TTL (one
keepalive per quiet instance: the JSON gateway takes one lease per request).
"""

from __future__ import annotations

from collections.abc import Callable

from sd_etcd import (
    EtcdError,
    delete_range_request,
    lease_keepalive_request,
    parse_delete_range,
    parse_lease_keepalive,
    parse_put,
    put_request,
)

from ..self_preservation import RECHECK_SECONDS, SelfPreservation
from .effects import instance_lease_ttl
from .layout import PreservationRecord, wall
from .link import StoreLink
from .view import ClusterView, Entry, InstanceKey

#: How long before a lease would run out the guardian renews it when the mode starts.
DUE_MARGIN_SECONDS = 0.1


class Guardian:
    """The self-preservation decisions of one node (acting only while it is the guardian)."""

    def __init__(
        self,
        view: ClusterView,
        link: StoreLink,
        *,
        node_id: str,
        node_lease: Callable[[], int],
        is_current: Callable[[], bool],
        wall_offset: float,
    ) -> None:
        self.view = view
        self.link = link
        self.node_id = node_id
        self._node_lease = node_lease
        self._is_current = is_current  # the link is ok and this node is in the view
        self.wall_offset = wall_offset
        self.next_at: float | None = 0.0
        # The decision's own state; the registry shows what the store holds, on every
        # node alike (this one included), so no node shows the mode before the others.
        self.decision = SelfPreservation(view.registry.config, lambda changed: None)
        self._renewed: dict[InstanceKey, float] = {}  # wall clock, by the guardian
        self._stored = False  # the self-preservation key is ours and up

    @property
    def guarding(self) -> bool:
        nodes = self.view.nodes
        return self._is_current() and bool(nodes) and min(nodes) == self.node_id

    def on_timer(self, now: float) -> None:
        registry = self.view.registry
        config = registry.config
        self.next_at = now + RECHECK_SECONDS
        if config.self_preservation_threshold <= 0:
            self.next_at = None
            return
        if not self.guarding:
            self._renewed.clear()
            if self.decision.active:  # should this node decide again, it starts afresh
                self.decision = SelfPreservation(config, lambda changed: None)
            if self._stored:  # another node decides now: our key must not linger
                self._unstore()
            return
        ttl = instance_lease_ttl(config.registration_ttl)
        wall_now = wall(now + self.wall_offset)
        alive = {key: self._alive(key, entry) for key, entry in self.view.entries.items()}
        due = any(last + ttl - DUE_MARGIN_SECONDS <= wall_now for last in alive.values())
        if not registry.expiry_paused(self.decision, now, due=due):
            self._renewed.clear()
            if self._stored:
                self._unstore()
            # Look again when the next lease is due (or in a second, whichever first).
            soonest = min(alive.values(), default=None)
            if soonest is not None:
                at = soonest + ttl - DUE_MARGIN_SECONDS - self.wall_offset
                if at > now:
                    self.next_at = min(self.next_at, at)
            return
        if not self._stored:
            self._store(now)
        for key, last in alive.items():
            if last + ttl / 2 <= wall_now:
                self._renew(key, self.view.entries[key], wall_now)
        self.next_at = min(self.next_at, now + ttl / 4)

    def _alive(self, key: InstanceKey, entry: Entry) -> float:
        """When the instance's lease was last renewed, as far as this node knows (wall)."""
        heartbeat = entry.soft.heartbeat_at if entry.soft is not None else entry.record.updated_at
        return max(heartbeat, self._renewed.get(key, heartbeat))

    def _renew(self, key: InstanceKey, entry: Entry, wall_now: float) -> None:
        self._renewed[key] = wall_now
        self.link.call(
            lease_keepalive_request(entry.lease), self._answered(parse_lease_keepalive), _ignore
        )

    def _store(self, now: float) -> None:
        lease = self._node_lease()
        active, reason = self.decision.active, self.decision.reason
        if not lease or not active or reason is None:
            return  # no node lease yet: the next look stores it
        self._stored = True
        record = PreservationRecord(reason, wall(now + self.wall_offset), self.node_id)
        request = put_request(self.view.layout.preservation(), record.encode(), lease=lease)
        self.link.call(request, self._answered(parse_put, False), self._retry(False))

    def _unstore(self) -> None:
        self._stored = False
        request = delete_range_request(self.view.layout.preservation())
        self.link.call(request, self._answered(parse_delete_range, True), self._retry(True))

    def _retry(self, stored: bool) -> Callable[[float], None]:
        """A key write that failed: the next look (a second later) tries it again."""

        def failed(now: float) -> None:
            self._stored = stored

        return failed

    def _answered(
        self, parse: Callable[[int, bytes], object], stored: bool | None = None
    ) -> Callable[[int, bytes, float], None]:
        def answered(status: int, body: bytes, now: float) -> None:
            try:
                parse(status, body)
            except EtcdError as error:
                self.link.store_error(error)
                if stored is not None:
                    self._stored = stored

        return answered


def _ignore(now: float) -> None:
    """A renewal that got no answer: the link counts it; the next look renews again."""
