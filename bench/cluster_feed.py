"""Other nodes' heartbeats as node A's watch brings them, without their CPU on this machine.

`bench.cluster`'s table 2 asks what one of N nodes serves when each is loaded alike and
has a core of its own. On two cores, the other N - 1 nodes cannot be loaded beside A
without taking A's core or the load generators'. What they cost A is what their
heartbeats bring through its watch: soft puts, group-committed into txns. A `SoftFeed`
writes those txns straight to etcd, from a thread of the benchmark process, at a set
rate of puts per second: every `TICK` seconds, one txn of every put due by then (a node
under load sends one txn per etcd round trip, a few milliseconds apart). The keys are
the soft keys of instances registered through another node, the values what
`SoftRecord` writes, with the time of the put, so every node applies each one as a
heartbeat of an instance it knows.
"""

from __future__ import annotations

import http.client
import threading
import time

from sd_core.cluster import KeyLayout, SoftRecord
from sd_etcd import PutOp, txn_request

#: Seconds between two txns of the feed.
TICK = 0.005


class SoftFeed:
    """Soft puts of `ids` of `service` under `prefix`, written to the etcd on `port`."""

    def __init__(self, port: int, prefix: str, service: str, ids: list[str]) -> None:
        layout = KeyLayout(prefix)
        self.port = port
        self.keys = [layout.soft(service, instance) for instance in ids]
        self.written = 0  # puts etcd answered 200 to, over every run

    def run(self, rate: float, seconds: float) -> threading.Thread:
        """Start writing `rate` puts per second for `seconds`, in a thread (joined by the
        caller). Each txn carries the puts due since the last one, a key at most once."""
        thread = threading.Thread(target=self._write, args=(rate, seconds), daemon=True)
        thread.start()
        return thread

    def _write(self, rate: float, seconds: float) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        start = time.monotonic()
        sent = 0
        try:
            while (now := time.monotonic()) < start + seconds:
                due = int((now - start) * rate) - sent
                if due > 0:
                    sent += due
                    self.written += self._txn(connection, due)
                time.sleep(max(0.0, TICK - (time.monotonic() - now)))
        finally:
            connection.close()

    def _txn(self, connection: http.client.HTTPConnection, count: int) -> int:
        """One txn of `count` puts over the keys in turn (repeats folded, as the group
        commit does); returns `count` when etcd took it, else 0."""
        value = SoftRecord.text(time.time(), 0.0, None)
        keys = {self.keys[(self.written + n) % len(self.keys)] for n in range(count)}
        request = txn_request((), [PutOp(key, value) for key in sorted(keys)])
        headers = {"Content-Type": "application/json"}
        connection.request("POST", request.path, request.body, headers)
        answer = connection.getresponse()
        answer.read()
        return count if answer.status == 200 else 0
