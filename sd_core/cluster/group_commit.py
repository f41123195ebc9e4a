"""Soft-state puts sent together: one etcd txn carries every put pending at the time.

Every heartbeat and every probe that changes nothing rewrites its instance's soft key
(`layout.SoftRecord`). One etcd request per put would make a node's store calls grow
with its heartbeat rate; instead at most one batch is in flight: a put made while one is
answered waits in `pending`, and when the batch is answered everything pending goes as
the next one (split into txns of at most `max_ops` puts: etcd's `--max-txn-ops`,
`sd_etcd.MAX_TXN_OPS` by default). An idle node sends a put at once, so a lone
heartbeat waits for no one; under load one request carries many. Two puts of one key
in a batch keep the later one (etcd refuses a txn that names a key twice), and both
waiters are told.

Each put may carry a guard (the instance it belongs to still exists, as the view saw
it): a soft key is only worth writing while its instance lives, and a put for an
instance that is gone must not bring its key back. A guard that fails fails the whole
txn without saying which, so that batch is sent again one put per txn, and only the
put whose guard failed is told its instance is gone. Sans-I/O like the rest of the
node: calls go through the `StoreLink`, time only comes in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sd_etcd import EtcdError, EtcdUnavailable, PutOp, parse_txn_outcome, txn_request
from sd_etcd.requests import Compare

from .link import StoreLink


class SoftWaiter(Protocol):
    """Who waits for a soft put (a heartbeat's answer): `written(revision, now)` once the
    store holds it, `gone(now)` when its instance is gone, `refused(error, now)`
    when the store refused or did not answer (nothing was written)."""

    def written(self, revision: int, now: float) -> None: ...
    def gone(self, now: float) -> None: ...
    def refused(self, error: EtcdError, now: float) -> None: ...


@dataclass(slots=True)
class _Put:
    op: PutOp
    guard: Compare | None
    waiters: list[SoftWaiter] = field(default_factory=list)


class GroupCommit:
    """The node's soft puts, at most one batch in flight (see the module docstring)."""

    def __init__(self, link: StoreLink, *, max_ops: int) -> None:
        if max_ops < 1:
            raise ValueError("max_ops must be at least 1")
        self.link = link
        self.max_ops = max_ops
        self._pending: dict[bytes, _Put] = {}
        self._in_flight = 0  # txns of the current batch not answered yet

    @property
    def pending(self) -> int:
        """Puts waiting for the batch in flight to be answered."""
        return len(self._pending)

    def put(
        self,
        op: PutOp,
        waiter: SoftWaiter | None = None,
        *,
        guard: Compare | None = None,
        ahead: PutOp | None = None,
    ) -> None:
        """Write `op` with the next batch (now, if none is in flight), if `guard` holds;
        `ahead` (a service's mark) goes in the same batch, before it."""
        if ahead is not None and ahead.key not in self._pending:
            self._pending[ahead.key] = _Put(ahead, None)
        found = self._pending.get(op.key)
        waiters = [] if found is None else found.waiters
        if waiter is not None:
            waiters.append(waiter)
        self._pending[op.key] = _Put(op, guard, waiters)
        if not self._in_flight:
            self._flush()

    def _flush(self) -> None:
        batch = list(self._pending.values())
        self._pending.clear()
        for start in range(0, len(batch), self.max_ops):
            self._send(batch[start : start + self.max_ops])

    def _send(self, batch: list[_Put]) -> None:
        self._in_flight += 1

        def answered(status: int, body: bytes, now: float) -> None:
            self._in_flight -= 1
            try:
                result = parse_txn_outcome(status, body)
            except EtcdError as error:
                self._refused(batch, error, now)
                self._next()
                return
            self.link.saw(result.header)
            if result.succeeded:
                for put in batch:
                    for waiter in put.waiters:
                        waiter.written(result.header.revision, now)
            elif len(batch) == 1:
                for waiter in batch[0].waiters:
                    waiter.gone(now)
            else:  # some instance in it is gone: find out which, one put per txn
                for put in batch:
                    self._send([put])
            self._next()

        def failed(now: float) -> None:
            self._in_flight -= 1
            self._refused(batch, EtcdUnavailable("no answer from the store"), now)
            self._next()

        guards = [put.guard for put in batch if put.guard is not None]
        self.link.call(txn_request(guards, [put.op for put in batch]), answered, failed)

    def _refused(self, batch: list[_Put], error: EtcdError, now: float) -> None:
        self.link.store_error(error)
        for put in batch:
            for waiter in put.waiters:
                waiter.refused(error, now)

    def _next(self) -> None:
        if not self._in_flight and self._pending:
            self._flush()
