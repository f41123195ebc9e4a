"""Real nodes on a real etcd, under faults a plain outage does not show.

- A node slightly behind the others (its link to etcd paused by a proxy) is asked to
  resume a watch stream, or a blocking query, from an index it has not seen: it holds
  the request until its view gets there and never sends an older state; when the view
  does not get there in `SERVICE_DISCOVERY_RESUME_WAIT_SECONDS`, it starts over.
- etcd restarted on an empty data dir (same ports, same cluster id): every node notices,
  drops what etcd no longer holds, answers heartbeats 404 so clients re-register, and
  logs it once as an error.
- A node that stopped reading its watch while etcd took thousands of puts and then
  compacted re-lists and converges.

Waits poll the servers for a state, with generous bounds; no assertion is about speed.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import httpx
import pytest

from conformance.client import Api, api_for, index_of, instance_body, poll_until
from tests.etcd.etcd_process import EtcdCluster, etcd_missing_reason

from .conftest import SECRET, StartNode, instance_ids, node_env, store_health
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.skipif(
    etcd_missing_reason() is not None, reason=str(etcd_missing_reason())
)

EVENTUALLY = 45.0


def _event_ids(text: str) -> list[int]:
    return [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]


class _Behind:
    """Node `behind` reaches etcd through a proxy; node `direct` does not."""

    def __init__(self, proxy: TcpProxy, behind: Api, direct: Api, behind_url: str) -> None:
        self.proxy, self.behind, self.direct = proxy, behind, direct
        self.behind_url = behind_url

    def synced(self) -> None:
        head = index_of(self.direct.service("api"))
        poll_until(
            lambda: store_health(self.behind_url)["revision"] >= head or None,
            EVENTUALLY,
            "the node behind the proxy caught up",
        )


@pytest.fixture
def pair(etcd: EtcdCluster, start_node: StartNode, request: pytest.FixtureRequest) -> Any:
    """The node behind is quart unless the test names another frontend (indirect)."""
    frontend = getattr(request, "param", "quart")
    other = "trio" if frontend == "quart" else "quart"
    host, port = etcd.url.removeprefix("http://").split(":")
    with TcpProxy(host, int(port)) as proxy:
        env = {"SERVICE_DISCOVERY_RESUME_WAIT_SECONDS": "8"}
        behind = start_node(frontend, node_env(proxy.url, **env))
        direct = start_node(other, node_env(etcd.url, **env))
        with api_for(behind.url, SECRET) as b, api_for(direct.url, SECRET) as d:
            yield _Behind(proxy, b, d, behind.url)
            proxy.unpause()


@pytest.mark.parametrize("pair", ["quart", "trio"], indirect=True)
def test_a_watch_resumed_on_a_node_behind_sends_no_older_state(pair: _Behind) -> None:
    pair.direct.register_ok(instance_body("api", "a1"))
    pair.synced()
    pair.proxy.pause()
    assert pair.direct.unregister("api", "a1").status_code == 200
    seen = index_of(pair.direct.http.get("/v1/discovery/services/api/healthy"))
    received: list[str] = []
    opened = threading.Event()

    def follow() -> None:
        headers = {"authorization": f"Bearer {SECRET}", "last-event-id": str(seen)}
        url = f"{pair.behind_url}/v1/discovery/watch?service=api"
        with httpx.stream("GET", url, headers=headers, timeout=30) as answer:
            opened.set()
            for chunk in answer.iter_text():
                received.append(chunk)
                if "id: " in "".join(received):
                    return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert opened.wait(10)
    pair.direct.register_ok(instance_body("api", "a2"))
    pair.proxy.unpause()
    reader.join(EVENTUALLY)
    text = "".join(received)
    # Without the wait, the node sent "api" as it had it: a1 present, an id below `seen`.
    assert '"a1"' not in text, text
    # The first event past `seen` is a2's registration, or a later state when the owner's
    # probe has moved a2's status by then (at a revision of its own): never one below.
    ids = _event_ids(text)
    assert ids and min(ids) > seen, text
    assert '"a2"' in text


class _HeldQuery:
    """A blocking query on the node behind for an index only the other node has: api
    has a1 on both, then a2 is registered while the node behind is paused."""

    def __init__(self, pair: _Behind, wait: str) -> None:
        pair.direct.register_ok(instance_body("api", "a1"))
        pair.synced()
        self.before = index_of(pair.behind.service("api"))
        pair.proxy.pause()
        pair.direct.register_ok(instance_body("api", "a2"))
        self.wanted = index_of(pair.direct.service("api"))
        self.answers: list[httpx.Response] = []
        path = f"/v1/discovery/services/api?index={self.wanted}&wait={wait}"
        self._asker = threading.Thread(
            target=lambda: self.answers.append(pair.behind.http.get(path)), daemon=True
        )
        self._asker.start()
        self._asker.join(1.0)

    def answer(self) -> httpx.Response:
        self._asker.join(EVENTUALLY)
        assert self.answers and self.answers[0].status_code == 200
        return self.answers[0]


@pytest.mark.parametrize("pair", ["quart", "trio"], indirect=True)
def test_a_blocking_query_on_a_node_behind_waits_for_its_index(pair: _Behind) -> None:
    query = _HeldQuery(pair, "20s")
    assert not query.answers  # held, not answered with the older index
    pair.proxy.unpause()
    answer = query.answer()
    assert index_of(answer) >= query.wanted > query.before
    assert answer.headers["x-discovery-last-contact"].isdigit()
    assert {i["instance_id"] for i in answer.json()["instances"]} == {"a1", "a2"}


def test_an_index_the_node_never_reaches_starts_over_after_the_wait(pair: _Behind) -> None:
    query = _HeldQuery(pair, "60s")
    assert not query.answers  # held for SERVICE_DISCOVERY_RESUME_WAIT_SECONDS (8 s here)
    # The view never got there: the lower index says "start over".
    assert index_of(query.answer()) == query.before


def test_etcd_restarted_empty_is_noticed_and_clients_re_register(
    etcd: EtcdCluster, start_node: StartNode
) -> None:
    nodes = [start_node("quart", node_env(etcd.url)), start_node("trio", node_env(etcd.url))]
    with api_for(nodes[0].url, SECRET) as q, api_for(nodes[1].url, SECRET) as t:
        for instance in ("a1", "a2", "a3"):
            q.register_ok(instance_body("api", instance))
        poll_until(
            lambda: instance_ids(t, "api") == {"a1", "a2", "a3"} or None, EVENTUALLY, "synced"
        )
        old = store_health(nodes[1].url)["revision"]
        etcd.restart_empty()
        for node, api in zip(nodes, (q, t), strict=True):
            poll_until(
                lambda api=api: instance_ids(api, "api") == set() or None, EVENTUALLY, "dropped"
            )
            assert store_health(node.url)["resets"] == 1
        assert t.heartbeat("api", "a1").status_code == 404  # the SDK's cue to register
        q.register_ok(instance_body("api", "a1"))
        poll_until(lambda: instance_ids(t, "api") == {"a1"} or None, EVENTUALLY, "visible again")
        assert index_of(t.service("api")) < old  # the index started over with the store
        assert store_health(nodes[0].url)["state"] == "ok"
    for node in nodes:
        node.shutdown(timeout=10)
        log = node.stderr()
        assert log.count("event=store_went_back") == 1, log[-3000:]


def test_a_watch_etcd_cancels_for_falling_behind_a_compaction_relists(
    etcd: EtcdCluster, pair: _Behind
) -> None:
    pair.direct.register_ok(instance_body("api", "x1"))
    pair.synced()
    pair.proxy.pause()  # the node stops reading: etcd's buffers for its watch fill
    filler = base64.b64encode(b"x" * 4096).decode()
    with httpx.Client(base_url=etcd.url, timeout=10) as http:
        for n in range(2000):
            key = base64.b64encode(f"/service-discovery/filler/{n}".encode()).decode()
            assert http.post("/v3/kv/put", json={"key": key, "value": filler}).status_code == 200
        pair.direct.register_ok(instance_body("api", "x2"))
        head = http.post("/v3/kv/range", json={"key": "AA=="}).json()["header"]["revision"]
        assert http.post("/v3/kv/compaction", json={"revision": head}).status_code == 200
    pair.proxy.unpause()
    both = {"x1", "x2"}
    poll_until(lambda: instance_ids(pair.behind, "api") == both or None, EVENTUALLY, "x2")
    assert store_health(pair.behind_url)["listings"] == 2
