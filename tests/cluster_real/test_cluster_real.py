"""Registry nodes of both frontends, as real processes, sharing one real etcd.

What a client sees when nodes share a store (same bytes, same index, read-your-writes,
heartbeats anywhere), when a node dies (nothing acknowledged is lost, its probes move),
when etcd stalls (fast 503s, stale reads, convergence without a restart), when etcd's
leader dies, and when etcd compacts the history a node needed to resume its watch.
Waits poll the servers for a state ("eventually"), with generous bounds; no assertion
is about speed.
"""

from __future__ import annotations

import base64
import signal
import threading
import time
from typing import Any

import httpx
import pytest

from conformance.client import Api, api_for, assert_error, index_of, instance_body, poll_until
from conformance.fake_instances import FakeInstance
from tests.etcd.etcd_process import EtcdCluster, etcd_missing_reason, running_cluster

from .conftest import SECRET, StartNode, instance_ids, node_env
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.skipif(
    etcd_missing_reason() is not None, reason=str(etcd_missing_reason())
)

#: Bound on "eventually": node lease TTL (10 s) + probe interval + slack for 2 shared cores.
EVENTUALLY = 45.0


def _health(api: Api) -> dict[str, Any]:
    answer = api.http.get("/health")
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


_ids = instance_ids


def _etcd_post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{url}{path}", json=body, timeout=5)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_a_quart_and_trio_nodes_serve_one_registry(
    etcd: EtcdCluster, start_node: StartNode
) -> None:
    env = node_env(etcd.url, SERVICE_REGISTRATION_TTL_SECONDS="3")
    with FakeInstance() as fake:
        quart, trio = start_node("quart", env), start_node("trio", env)
        with api_for(quart.url, SECRET) as q, api_for(trio.url, SECRET) as t:
            q.register_ok(instance_body("api", "a1", fake.port, health_endpoint="/ok"))
            assert q.instance("api", "a1") is not None  # read-your-writes, at once

            def same_on_both() -> tuple[httpx.Response, httpx.Response] | None:
                first, other, again = q.service("api"), t.service("api"), q.service("api")
                if other.status_code != 200 or first.content != again.content:
                    return None
                if first.json()["instances"][0]["status"] != "healthy":
                    return None
                return (first, other) if index_of(first) == index_of(other) else None

            first, other = poll_until(same_on_both, EVENTUALLY, "the same answer on both nodes")
            assert first.content == other.content
            assert index_of(first) == index_of(other)
            assert first.headers["x-discovery-cluster"] == other.headers["x-discovery-cluster"]
            assert "x-discovery-stale" not in other.headers

            # Heartbeats through the other node keep it alive past several TTLs.
            for _ in range(5):
                t.heartbeat_ok("api", "a1")
                time.sleep(1.0)  # real processes, real leases: no clock to jump
            assert q.instance("api", "a1") is not None

            # Unregister on the node that did not register it: gone there at once.
            assert t.unregister("api", "a1").status_code == 200
            assert t.instance("api", "a1") is None
            poll_until(lambda: _ids(q, "api") == set() or None, EVENTUALLY, "a1 gone on quart")

            # And the other way round.
            t.register_ok(instance_body("api", "a2", fake.port, health_endpoint="/ok"))
            poll_until(lambda: _ids(q, "api") == {"a2"} or None, EVENTUALLY, "a2 on quart")
            assert q.unregister("api", "a2").status_code == 200
            assert q.instance("api", "a2") is None
            assert_error(t.heartbeat("api", "gone"), 404, "instance_not_found")


def test_b_a_killed_node_loses_nothing_and_its_probes_move(
    etcd: EtcdCluster, start_node: StartNode
) -> None:
    env = node_env(etcd.url)
    with FakeInstance() as fake:
        doomed, survivor = start_node("quart", env), start_node("trio", env)
        with api_for(doomed.url, SECRET) as d, api_for(survivor.url, SECRET) as s:
            probed = [f"p{n}" for n in range(8)]
            for n, instance in enumerate(probed):
                d.register_ok(
                    instance_body("probed", instance, fake.port, health_endpoint=f"/ok?n={n}")
                )

            acknowledged: list[str] = []
            stop = threading.Event()

            def light_load() -> None:
                with httpx.Client(
                    headers={"authorization": f"Bearer {SECRET}"}, timeout=10
                ) as http:
                    n = 0
                    while not stop.is_set():
                        url = (doomed.url, survivor.url)[n % 2]
                        body = instance_body("load", f"l{n}", fake.port, health_endpoint="/ok")
                        try:
                            if (
                                http.post(f"{url}/v1/discovery/register", json=body).status_code
                                == 200
                            ):
                                acknowledged.append(f"l{n}")
                        except httpx.TransportError:
                            pass  # the killed node
                        n += 1
                        time.sleep(0.02)

            loader = threading.Thread(target=light_load)
            loader.start()
            try:
                poll_until(lambda: len(acknowledged) >= 20 or None, EVENTUALLY, "some load")
                doomed.proc.send_signal(signal.SIGKILL)
                doomed.proc.wait(timeout=10)
                mark = len(fake.requests())
                poll_until(
                    lambda: len(acknowledged) >= 40 or None, EVENTUALLY, "load on the survivor"
                )
            finally:
                stop.set()
                loader.join(timeout=30)

            def every_instance_probed_again() -> bool | None:
                since = fake.requests()[mark:]
                return all(since.count(f"/ok?n={n}") >= 2 for n in range(8)) or None

            poll_until(
                every_instance_probed_again, EVENTUALLY, "the survivor probing every instance"
            )
            assert set(acknowledged) <= (_ids(s, "load") or set())
            assert _ids(s, "probed") == set(probed)
            assert _health(s)["store"]["state"] == "ok"


def test_c_paused_etcd_refuses_writes_fast_serves_stale_reads_and_recovers(
    etcd: EtcdCluster, start_node: StartNode
) -> None:
    node = start_node("trio", node_env(etcd.url))
    with FakeInstance() as fake, api_for(node.url, SECRET) as api:
        api.register_ok(instance_body("api", "before", fake.port, health_endpoint="/ok"))
        # Probed at once: wait for its status, so nothing but etcd's pause moves it.
        poll_until(lambda: api.status("api", "before") == "healthy" or None, EVENTUALLY, "probed")
        before = api.service("api")
        member = etcd.members[0]
        member.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            refused = api.register(instance_body("api", "during"))
            refused_after = time.monotonic() - started
            assert_error(refused, 503, "store_unavailable")
            assert refused.headers.get("retry-after", "").isdigit()
            assert_error(api.heartbeat("api", "before"), 503, "store_unavailable")
            read = api.service("api")
            assert read.status_code == 200
            assert read.headers.get("x-discovery-stale") == "true"
            assert read.json()["instances"] == before.json()["instances"]
            assert index_of(read) == index_of(before)
            health = _health(api)
            assert health["status"] == "degraded"
            assert health["store"]["state"] == "unavailable"
        finally:
            member.signal(signal.SIGCONT)
        print(f"503 after {refused_after:.2f} s")  # the figure docs/cluster.md quotes

        poll_until(lambda: _health(api)["store"]["state"] == "ok" or None, EVENTUALLY, "store ok")
        api.register_ok(instance_body("api", "after"))
        # "during" timed out on our side (503); etcd may still apply it once it runs again
        # (it had the request), as any store may after a timeout: a retry is harmless.
        assert {"before", "after"} <= (_ids(api, "api") or set()) <= {"before", "during", "after"}
        assert "x-discovery-stale" not in api.service("api").headers


def test_d_three_member_etcd_survives_losing_its_leader(start_node: StartNode) -> None:
    with running_cluster(3) as etcd:
        node = start_node("quart", node_env(",".join(etcd.client_urls)))
        with api_for(node.url, SECRET) as api:
            api.register_ok(instance_body("api", "first"))
            leader = next(
                member
                for member in etcd.members
                if (status := _etcd_post(member.client_url, "/v3/maintenance/status", {}))["leader"]
                == status["header"]["member_id"]
            )
            leader.signal(signal.SIGKILL)
            assert leader.process is not None
            leader.process.wait(timeout=10)

            def write_succeeds() -> bool | None:
                try:
                    return api.register(instance_body("api", "second")).status_code == 200 or None
                except httpx.TransportError:
                    return None

            poll_until(write_succeeds, EVENTUALLY, "a write after the leader died", interval=0.2)
            poll_until(lambda: _health(api)["store"]["state"] == "ok" or None, EVENTUALLY, "ok")
            assert _ids(api, "api") == {"first", "second"}


def test_e_compaction_during_a_broken_watch_relists_the_same_state(
    etcd: EtcdCluster, start_node: StartNode
) -> None:
    host, port = etcd.url.removeprefix("http://").split(":")
    with TcpProxy(host, int(port)) as proxy:
        behind = start_node("quart", node_env(proxy.url))
        direct = start_node("trio", node_env(etcd.url))
        with api_for(behind.url, SECRET) as b, api_for(direct.url, SECRET) as d:
            d.register_ok(instance_body("api", "x1"))
            d.register_ok(instance_body("gone", "g1"))
            poll_until(lambda: _ids(b, "gone") == {"g1"} or None, EVENTUALLY, "the view synced")
            synced = _health(b)["store"]["revision"]

            proxy.cut()
            poll_until(lambda: _health(b)["store"]["state"] != "ok" or None, EVENTUALLY, "cut")
            d.register_ok(instance_body("api", "x2"))
            d.register_ok(instance_body("other", "o1"))
            assert d.unregister("gone", "g1").status_code == 200
            assert d.unregister("api", "x1").status_code == 200
            head = _etcd_post(etcd.url, "/v3/kv/range", {"key": "AA=="})["header"]["revision"]
            _etcd_post(etcd.url, "/v3/kv/compaction", {"revision": head})
            assert synced < int(head)  # resuming the watch is impossible: only a re-list
            proxy.restore()

            def converged() -> bool | None:
                if _health(b)["store"]["state"] != "ok":
                    return None
                if not all(_ids(b, s) == _ids(d, s) for s in ("api", "gone", "other")):
                    return None
                # Probes move statuses meanwhile: equal bytes and index once both agree.
                mine, theirs = b.service("other"), d.service("other")
                return (
                    mine.content == theirs.content and index_of(mine) == index_of(theirs)
                ) or None

            poll_until(converged, EVENTUALLY, "the re-listed view equal to the other node's")
            assert _ids(b, "api") == {"x2"}


def test_f_the_node_lease_has_the_configured_ttl(etcd: EtcdCluster, start_node: StartNode) -> None:
    """`SERVICE_DISCOVERY_NODE_TTL_SECONDS` is the TTL etcd grants the node's lease."""
    for frontend, ttl in (("trio", "4"), ("quart", "")):
        env = node_env(etcd.url, SERVICE_DISCOVERY_NODE_ID=f"ttl-{frontend}")
        if ttl:
            env["SERVICE_DISCOVERY_NODE_TTL_SECONDS"] = ttl
        start_node(frontend, env)
        key = base64.b64encode(f"/service-discovery/nodes/ttl-{frontend}".encode()).decode()
        found = _etcd_post(etcd.url, "/v3/kv/range", {"key": key})
        assert len(found.get("kvs", [])) == 1, found
        lease = found["kvs"][0]["lease"]
        alive = _etcd_post(etcd.url, "/v3/lease/timetolive", {"ID": lease})
        assert int(alive["grantedTTL"]) == (int(ttl) if ttl else 10)
