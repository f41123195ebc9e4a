"""Cluster mode on a simulated cluster: reads that name a revision a node has not
reached, a store that lost its data, how fresh a node's view is, and a watch etcd
cancels for falling behind a compaction."""

from __future__ import annotations

import threading
from dataclasses import replace

from frontends.runtime.scope_events import ScopeEvents
from frontends.runtime.watch_streams import Stream, StreamHub
from sd_core import HttpRequest, HttpResponse, RegistryConfig
from sd_core.cluster import CaughtUp, StoreWentBack, WriteDone, catch_up_scope
from sd_core.cluster.testing import SimulatedCluster
from sd_core.events import IndexRaised
from sd_core.http_api import BlockingWait
from sd_core.testing import DEFAULT_SECRET
from sd_core.watch_stream import STREAM_PREAMBLE, StreamEvents, WatchSpec
from sd_etcd import Header, WatchCreated
from sd_etcd.watch import render_line

FAST = RegistryConfig(health_check_interval=5.0, health_check_timeout=1.0, registration_ttl=30.0)
RESUME_WAIT = 5.0  # ClusterConfig's default


def _get(path: str, query: str = "") -> HttpRequest:
    return HttpRequest("GET", path, query.encode(), f"Bearer {DEFAULT_SECRET}", None, b"")


def _index(response: HttpResponse) -> int:
    return int(dict(response.headers)["x-discovery-index"])


def _behind(cluster: SimulatedCluster) -> tuple[int, int]:
    """Node 1 saw `api` at the first index, node 0 at the second (node 1's watch held)."""
    cluster.register(0, "api", "a1")
    seen = cluster.index(1, "api")
    cluster.hold_watch(1)
    cluster.register(0, "api", "a2")
    ahead = cluster.index(0, "api")
    assert cluster.index(1, "api") == seen < ahead
    return seen, ahead


def _caught_up(cluster: SimulatedCluster, node: int) -> list[CaughtUp]:
    return [e for e in cluster.effects[node] if isinstance(e, CaughtUp)]


# ------------------------------------------------------------ blocking queries


def test_a_blocking_query_from_the_future_waits_for_a_node_behind_then_goes_on() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    _, ahead = _behind(cluster)
    node = cluster.nodes[1]
    request = _get("/v1/discovery/services/api", f"index={ahead}&wait=60s")
    held = node.handle(request, cluster.clock.now)
    # Not answered at once with the older index: held until the view reaches it.
    assert held == BlockingWait(catch_up_scope(ahead), ahead, RESUME_WAIT)
    cluster.release_watch(1)
    assert _caught_up(cluster, 1)[-1] == CaughtUp(frozenset({ahead}), frozenset())
    woken = node.handle(request, cluster.clock.now, may_block=False)
    assert isinstance(woken, HttpResponse) and _index(woken) == ahead
    # Asked again with what it got, it blocks as on any node that is up to date.
    assert node.handle(request, cluster.clock.now) == BlockingWait("api", ahead, 60.0)


def test_a_blocking_query_from_a_future_that_never_comes_starts_over_after_the_wait() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    seen, ahead = _behind(cluster)
    started = cluster.clock.now
    reply = cluster.request(1, "GET", "/v1/discovery/services/api", query=f"index={ahead}")
    # The bound ran out: the lower index is the contract's "start over".
    assert cluster.clock.now - started == RESUME_WAIT
    assert (reply.status, reply.index) == (200, seen)
    assert _caught_up(cluster, 1)[-1] == CaughtUp(frozenset(), frozenset({ahead}))


def test_the_wait_for_a_node_behind_is_never_longer_than_the_query_wait() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    _, ahead = _behind(cluster)
    request = _get("/v1/discovery/services/api", f"index={ahead}&wait=1s")
    held = cluster.nodes[1].handle(request, cluster.clock.now)
    assert held == BlockingWait(catch_up_scope(ahead), ahead, 1.0)


def test_an_index_the_node_has_passed_is_still_answered_at_once() -> None:
    """Ahead of the service's index but not of the view: the registry started over."""
    cluster = SimulatedCluster(nodes=1, config=FAST)
    cluster.register(0, "api", "a1")
    index = cluster.index(0, "api")
    cluster.register(0, "other", "o1")
    future = cluster.nodes[0].mirror.synced_revision
    assert future > index
    result = cluster.nodes[0].handle(
        _get("/v1/discovery/services/api", f"index={future}"), cluster.clock.now
    )
    assert isinstance(result, HttpResponse) and _index(result) == index


# ------------------------------------------------------------ watch streams


class _Recorded(Stream):
    def wake(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _hub(cluster: SimulatedCluster, node: int) -> StreamHub:
    hub = StreamHub(StreamEvents(cluster.nodes[node].registry))
    hub.hold = lambda since: cluster.nodes[node].hold_until(since, cluster.clock.now)
    return hub


def _route(cluster: SimulatedCluster, node: int, hub: StreamHub, start: int) -> int:
    """What the runtime's `settle` does with the node's effects since `start`."""
    effects = cluster.effects[node]
    for effect in effects[start:]:
        if isinstance(effect, IndexRaised):
            hub.changed(effect.services)
        elif isinstance(effect, CaughtUp):
            hub.caught_up(effect.reached, effect.expired)
    return len(effects)


def _ids(data: bytes) -> list[int]:
    return [int(line[4:]) for line in data.split(b"\n") if line.startswith(b"id: ")]


def test_a_watch_resumed_on_a_node_behind_sends_no_older_state() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    _, ahead = _behind(cluster)
    hub = _hub(cluster, 1)
    stream = _Recorded(frozenset({"api"}))
    done = len(cluster.effects[1])
    hub.open(stream, WatchSpec(frozenset({"api"}), ahead))
    assert stream.take() == STREAM_PREAMBLE  # not the state at `seen`
    cluster.register(0, "api", "a3")  # a change after the client's id
    newer = cluster.index(0, "api")
    done = _route(cluster, 1, hub, done)
    assert stream.take() == b""  # still held: node 1 has not reached the id
    cluster.release_watch(1)
    _route(cluster, 1, hub, done)
    sent = stream.take()
    assert _ids(sent) == [newer]  # resumed from the id: only what came after it
    assert b'"a3"' in sent
    done = len(cluster.effects[1])
    cluster.register(0, "api", "a4")  # live again, like any stream
    _route(cluster, 1, hub, done)
    assert _ids(stream.take()) == [cluster.index(0, "api")]


def test_a_watch_resumed_from_an_id_that_never_comes_starts_over_and_says_so() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    seen, ahead = _behind(cluster)
    hub = _hub(cluster, 1)
    stream = _Recorded(None)
    done = len(cluster.effects[1])
    hub.open(stream, WatchSpec(None, ahead))
    assert stream.take() == STREAM_PREAMBLE
    cluster.advance(RESUME_WAIT)
    _route(cluster, 1, hub, done)
    # Every service's current state, with an id below the client's: "start over".
    assert _ids(stream.take()) == [seen]


def test_a_held_watch_stream_that_closes_is_forgotten() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    _, ahead = _behind(cluster)
    hub = _hub(cluster, 1)
    stream = _Recorded(frozenset({"api"}))
    hub.open(stream, WatchSpec(frozenset({"api"}), ahead))
    hub.close(stream)
    assert hub.count == 0
    hub.caught_up(frozenset({ahead}), frozenset())
    assert stream.take() == STREAM_PREAMBLE


# ------------------------------------------------------------ a store that lost its data


def _went_back(cluster: SimulatedCluster, node: int) -> list[StoreWentBack]:
    return [e for e in cluster.effects[node] if isinstance(e, StoreWentBack)]


def test_a_wiped_store_is_noticed_listed_afresh_and_clients_re_register() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    for instance in ("a1", "a2", "a3"):
        cluster.register(0, "api", instance)
    old = cluster.nodes[1].mirror.synced_revision
    cluster.store_wiped()
    cluster.advance(2)  # the watch is retried after 1 s, at the old revision + 1
    for n in (0, 1):
        assert _went_back(cluster, n) == [StoreWentBack(old, 1)]
        assert cluster.read(n, "api").status == 404  # nothing etcd does not hold
        assert cluster.nodes[n].link.state == "ok"
    reply = cluster.heartbeat(1, "api", "a1")
    assert (reply.status, reply.body["error"]) == (404, "instance_not_found")
    assert cluster.register(1, "api", "a1").status == 200  # what the SDK does on 404
    replies = [cluster.read(n, "api") for n in (0, 1)]
    assert [i["instance_id"] for i in replies[0].body["instances"]] == ["a1"]
    assert replies[0].body == replies[1].body
    # The index restarted from the store's own revisions (it went backwards).
    assert replies[0].index == replies[1].index == cluster.etcd.revision < old
    cluster.advance(30)
    assert [len(_went_back(cluster, n)) for n in (0, 1)] == [1, 1]  # said once
    assert [cluster.nodes[n].link.resets for n in (0, 1)] == [1, 1]


def test_an_answer_with_an_older_revision_is_confirmed_before_the_view_is_dropped() -> None:
    """A call answered below the view's revision (the store went back while the watch
    still waits on a future revision) is checked with one read, then acted on."""
    cluster = SimulatedCluster(nodes=1, config=FAST)
    cluster.register(0, "api", "a1")
    cluster.hold_watch(0)
    cluster.store_wiped()
    reply = cluster.heartbeat(0, "api", "a1")  # the keepalive's answer is the first sign
    assert reply.status == 404
    assert len(_went_back(cluster, 0)) == 1
    assert cluster.read(0, "api").status == 404


# ------------------------------------------------------------ freshness


def test_reads_say_when_the_store_was_last_heard_from_and_a_paused_node_is_stale() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    cluster.register(0, "api", "a1")
    reply = cluster.read(1, "api")
    assert reply.headers["x-discovery-last-contact"] == "0"
    assert "x-discovery-stale" not in reply.headers
    cluster.advance(9)  # quiet, but the node keepalive (every 3.3 s) is contact
    reply = cluster.read(1, "api")
    assert int(reply.headers["x-discovery-last-contact"]) < 3400
    assert "x-discovery-stale" not in reply.headers
    cluster.freeze(1)  # SIGSTOP
    cluster.advance(30)
    cluster.unregister(0, "api", "a1")
    cluster.thaw(1)
    # The first read after the pause, before the node has read its watch: its old view.
    result = cluster.nodes[1].handle(_get("/v1/discovery/services/api"), cluster.clock.now)
    assert isinstance(result, HttpResponse) and result.status == 200
    headers = dict(result.headers)
    assert int(headers["x-discovery-last-contact"]) >= 30_000
    assert headers["x-discovery-stale"] == "true"
    assert [name for name, _ in result.headers].count("x-discovery-stale") == 1
    cluster.settle()
    reply = cluster.read(1, "api")
    assert reply.status == 404 and reply.headers["x-discovery-last-contact"] == "0"
    assert "x-discovery-stale" not in reply.headers


def test_a_store_outage_shows_one_stale_flag_and_a_growing_last_contact() -> None:
    cluster = SimulatedCluster(nodes=1, config=FAST)
    cluster.register(0, "api", "a1")
    cluster.store_down()
    cluster.advance(20)
    result = cluster.nodes[0].handle(_get("/v1/discovery/services/api"), cluster.clock.now)
    assert isinstance(result, HttpResponse)
    names = [name for name, _ in result.headers]
    assert names.count("x-discovery-stale") == 1
    assert int(dict(result.headers)["x-discovery-last-contact"]) >= 20_000


# ------------------------------------------------------------ compaction overflow


def test_a_watch_cancelled_for_falling_behind_a_compaction_relists_and_converges() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    cluster.register(0, "api", "a1")
    cluster.hold_watch(1)  # a reader that stopped reading
    cluster.register(0, "api", "a2")
    cluster.unregister(0, "api", "a1")
    cluster.register(0, "web", "w1")
    cluster.compact()
    cluster.etcd.cancel_lagging_watches()  # etcd drops the slow watcher
    cluster.release_watch(1)
    cluster.advance(1)
    assert cluster.nodes[1].link.listings == 2
    for service in ("api", "web"):
        here, there = cluster.read(0, service), cluster.read(1, service)
        assert here.body == there.body
        assert here.index == there.index


def test_a_caught_up_revision_wakes_its_held_queries_and_no_global_watcher() -> None:
    """A node's view reaching a revision changed nothing: global watchers sleep on."""
    events: ScopeEvents[threading.Event] = ScopeEvents(threading.Event)
    held = events.park(catch_up_scope(7))
    other = events.park(catch_up_scope(8))
    everything = events.park(None)
    events.wake_exactly(frozenset({catch_up_scope(7)}))
    assert (held.is_set(), other.is_set(), everything.is_set()) == (True, False, False)


def test_a_member_behind_is_not_taken_for_a_store_that_went_back() -> None:
    """A watch created at a revision below the view's (say, on a member that lags) is
    only a sign: the linearizable read that checks it finds the store ahead, so the
    view is kept."""
    cluster = SimulatedCluster(nodes=1, config=FAST)
    cluster.register(0, "api", "a1")
    node = cluster.nodes[0]
    watch, _ = cluster._watches[0]
    behind = WatchCreated(0, Header(cluster.etcd.cluster_id, 1, 2, 2))
    node.watch_data(watch, render_line(behind), cluster.clock.now)
    cluster.settle()
    assert _went_back(cluster, 0) == []
    assert node.link.resets == 0
    assert cluster.read(0, "api").status == 200


def test_a_write_to_a_store_that_went_back_is_answered_once_the_view_shows_it() -> None:
    """Its answer's revision is below the old view's: not taken as already seen."""
    cluster = SimulatedCluster(nodes=1, config=FAST)
    cluster.register(0, "api", "a1")
    cluster.hold_watch(0)  # the node has not noticed yet: only the write's answer tells
    cluster.store_wiped()
    assert cluster.register(0, "api", "b1").status == 200
    kinds = [type(e) for e in cluster.effects[0]]
    assert kinds.index(StoreWentBack) < len(kinds) - 1 - kinds[::-1].index(WriteDone)
    assert [i["instance_id"] for i in cluster.read(0, "api").body["instances"]] == ["b1"]


# ------------------------------------------------------------ what holds may cost


def _reached_and_expired(cluster: SimulatedCluster, node: int) -> tuple[set[int], set[int]]:
    reached: set[int] = set()
    expired: set[int] = set()
    for effect in _caught_up(cluster, node):
        reached |= effect.reached
        expired |= effect.expired
    return reached, expired


def test_holds_are_capped_and_a_renewed_one_keeps_one_place() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    _, ahead = _behind(cluster)
    node = cluster.nodes[1]
    node.cluster = replace(node.cluster, max_holds=3)
    now = cluster.clock.now
    assert all(node.hold_until(revision, now) for revision in (ahead, ahead + 10, ahead + 20))
    assert node.hold_until(ahead + 10, now)  # renewed: still three revisions held
    assert not node.hold_until(ahead + 30, now)  # a fourth: answered at once (start over)
    cluster.release_watch(1)
    cluster.settle()
    reached, _ = _reached_and_expired(cluster, 1)
    assert reached == {ahead}  # the view got there; the others wait on
    assert node.hold_until(ahead + 30, cluster.clock.now)  # a place came free


def test_holds_expire_in_deadline_order_and_a_renewal_waits_its_full_time() -> None:
    cluster = SimulatedCluster(nodes=2, config=FAST)
    _, ahead = _behind(cluster)
    node = cluster.nodes[1]
    far, farther = ahead + 100, ahead + 200
    assert node.hold_until(far, cluster.clock.now)
    cluster.advance(RESUME_WAIT / 2)
    assert node.hold_until(farther, cluster.clock.now)
    assert node.hold_until(far, cluster.clock.now)  # renewed after `farther` came
    cluster.advance(RESUME_WAIT / 2 + 0.5)
    assert _reached_and_expired(cluster, 1)[1] == set()  # neither wait is over yet
    cluster.advance(RESUME_WAIT / 2)
    assert _reached_and_expired(cluster, 1)[1] == {far, farther}


def test_revisions_let_go_do_not_pile_up() -> None:
    """Revisions held, then given up, again and again: what the node keeps stays bounded
    by what is held now, not by how many were ever held."""
    cluster = SimulatedCluster(nodes=1, config=FAST)
    node = cluster.nodes[0]
    future = node.mirror.synced_revision + 1_000_000
    for round_ in range(20):
        for number in range(50):
            assert node.hold_until(future + round_ * 100 + number, cluster.clock.now)
        cluster.advance(RESUME_WAIT + 1)
    assert not node._holds
    assert len(node._held_revisions) <= 64 + 50 * 2
