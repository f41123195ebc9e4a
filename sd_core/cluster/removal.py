"""Removing an instance from the store: one txn for every way an instance goes.

Instances have no lease (the registry, not etcd, decides when one has gone quiet), so
an unregistration, an expiry and a deregistration after being unhealthy too long all
delete the instance's four keys themselves, in one txn that also rewrites the
service's mark (the removal is a visible change: its revision is the service's index
on every node, listed or watched). Each is guarded by what the decision was taken
on, so a write that raced it (a heartbeat, a re-registration, a new status) wins and
the deletion writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sd_etcd import (
    DeleteRangeOp,
    EtcdError,
    GatewayRequest,
    PutOp,
    TxnOp,
    TxnResult,
    parse_txn,
    txn_request,
)
from sd_etcd.requests import Compare

from ..events import RemovalReason
from .layout import MARK, KeyLayout
from .link import StoreLink
from .mirror import InstanceKey, StoreMirror


def removal_request(
    layout: KeyLayout,
    key: InstanceKey,
    guards: Sequence[Compare],
    failure: Sequence[TxnOp] = (),
) -> GatewayRequest:
    """The txn that removes instance `key` if every guard holds: the service's mark
    first (see `mirror`), then the instance's keys; else `failure` (reads of what won)."""
    ops: list[TxnOp] = [PutOp(layout.service(key[0]), MARK)]
    ops += [DeleteRangeOp(k) for k in layout.instance_keys(*key)]
    return txn_request(guards, ops, failure)


class Removals:
    """The removals this node decided on its own (expiry, unhealthy too long): at most
    one in flight per instance, until the view shows it gone or the store refused."""

    def __init__(self, mirror: StoreMirror, link: StoreLink) -> None:
        self.mirror = mirror
        self.link = link
        self._in_flight: set[InstanceKey] = set()

    def __contains__(self, key: InstanceKey) -> bool:
        return key in self._in_flight

    def removed(self, key: InstanceKey) -> None:
        """The view applied the instance's removal."""
        self._in_flight.discard(key)

    def remove(
        self,
        key: InstanceKey,
        guards: Sequence[Compare],
        reason: RemovalReason,
        *,
        failure: Sequence[TxnOp] = (),
        raced: Callable[[TxnResult, float], None] | None = None,
    ) -> None:
        """Remove `key` if `guards` hold; when they do not, `raced` is told what the
        txn's `failure` branch read (after the instance is no longer in flight)."""
        if key in self._in_flight:
            return
        self._in_flight.add(key)
        self.mirror.removal_reasons[key] = reason

        def lost(now: float) -> None:
            self._in_flight.discard(key)
            if self.mirror.removal_reasons.get(key) is reason:
                del self.mirror.removal_reasons[key]

        def answered(status: int, body: bytes, now: float) -> None:
            try:
                result = parse_txn(status, body)
            except EtcdError as error:
                self.link.store_error(error)
                lost(now)
                return
            self.link.saw(result.header)
            if not result.succeeded:  # a racing write won: the instance stays
                lost(now)
                if raced is not None:
                    raced(result, now)

        request = removal_request(self.mirror.layout, key, guards, failure)
        self.link.call(request, answered, lost)
