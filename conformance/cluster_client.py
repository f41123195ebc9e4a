"""How the suite talks to a cluster: round-robin over the nodes, reading its own writes.

Each request goes to the next node in turn (one counter per cluster, shared by every
client of the run), so consecutive requests of a test land on different nodes. The
nodes agree (same bytes, same index) but each follows etcd through its own watch, so
a node may be a few milliseconds behind another. The rule, as docs/cluster.md
("Consistency model") gives it to clients: remember the highest revision you have
seen, and do not use a node until it has seen it too.

- After a write a node answered, its `/health` `store.revision` is at least the
  write's revision (a node answers a write once its own view shows it): that is seen.
- Every read's `X-Discovery-Index` is a revision the answering node had: that is seen.
- Before a request goes to a node whose last known revision is below what was seen,
  the node's `/health` is polled until it catches up (a few milliseconds; after 5 s
  the request is sent anyway, and whatever is stale shows in the test).

This is what the SDK does by sticking to one node until it fails, and what any client
spreading requests over nodes must do to read its own writes.
"""

from __future__ import annotations

import itertools
import ssl
import threading
import time
from collections.abc import Sequence

import httpx

#: How long a request waits for its node to catch up before it is sent anyway.
CATCH_UP_SECONDS = 5.0

_WRITES = frozenset({"POST", "PUT", "DELETE", "PATCH"})


class ClusterSession:
    """What this test process has seen of one cluster, shared by all its clients."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.turn = itertools.count()
        self.seen = 0
        self.known = dict.fromkeys(urls, 0)
        self.lock = threading.Lock()

    def saw(self, revision: int) -> None:
        with self.lock:
            self.seen = max(self.seen, revision)

    def node_at(self, url: str, revision: int) -> None:
        with self.lock:
            self.known[url] = max(self.known[url], revision)


_sessions: dict[tuple[str, ...], ClusterSession] = {}
_sessions_lock = threading.Lock()


def session_for(urls: Sequence[str]) -> ClusterSession:
    with _sessions_lock:
        return _sessions.setdefault(tuple(urls), ClusterSession(urls))


class RoundRobinTransport(httpx.BaseTransport):
    """Sends each request to the next node's URL, after that node caught up."""

    def __init__(self, urls: Sequence[str], verify: ssl.SSLContext) -> None:
        self.urls = [httpx.URL(url) for url in urls]
        self.session = session_for(urls)
        self.inner = httpx.HTTPTransport(verify=verify)
        # Plain, unhooked: these /health calls are the transport's, not the test's.
        self.probe = httpx.Client(timeout=5.0, verify=verify, trust_env=False)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        node = self.urls[next(self.session.turn) % len(self.urls)]
        self._catch_up(node)
        request.url = request.url.copy_with(host=node.host, port=node.port)
        request.headers["Host"] = f"{node.host}:{node.port}"
        response = self.inner.handle_request(request)
        index = response.headers.get("x-discovery-index", "")
        if index.isdigit():
            self.session.saw(int(index))
        elif request.method in _WRITES and response.status_code < 400:
            self.session.saw(self._revision(node))
        return response

    def _revision(self, node: httpx.URL) -> int:
        """The node's `store.revision` (every change up to it is in its view)."""
        try:
            answer = self.probe.get(node.join("/health"))
            revision = int(answer.json()["store"]["revision"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return 0
        self.session.node_at(str(node), revision)
        return revision

    def _catch_up(self, node: httpx.URL) -> None:
        key = str(node)
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while self.session.known[key] < self.session.seen and time.monotonic() < deadline:
            if self._revision(node) < self.session.seen:
                time.sleep(0.005)  # a real node following a real etcd; nothing to fake

    def close(self) -> None:
        self.inner.close()
        self.probe.close()
