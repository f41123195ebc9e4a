"""Expiry and the index of a node that lists, against a real etcd and real nodes.

(a) etcd SIGSTOPped for longer than the registration TTL while a client heartbeats on
(answered 503), then SIGCONT: no instance is gone, none counted as expired, none
deleted from the store (etcd, resuming as leader, would revoke at once every lease
that ran out: instances have none). (b) three nodes, one SIGKILLed while services
change and started again: every service shows the same index and bytes on every node,
and a blocking query with one node's index waits on the restarted node until the next
change. Instances use ttl checks, so no probe moves anything meanwhile.
"""

from __future__ import annotations

import base64
import itertools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from conformance.client import Api, api_for, index_of, instance_body, poll_until
from tests.etcd.etcd_process import EtcdCluster, etcd_missing_reason

from .conftest import SECRET, StartNode, node_env, store_health

pytestmark = pytest.mark.skipif(
    etcd_missing_reason() is not None, reason=str(etcd_missing_reason())
)

EVENTUALLY = 30.0
TTL = {"SERVICE_REGISTRATION_TTL_SECONDS": "3"}


def _ttl_instance(service: str, instance: str, **fields: Any) -> dict[str, Any]:
    return instance_body(service, instance, check={"type": "ttl"}, **fields)


def _created(etcd: EtcdCluster, service: str, instance: str) -> int:
    """The instance key's create revision in etcd (0: not there)."""
    key = base64.b64encode(f"/service-discovery/instances/{service}/{instance}".encode())
    answer = httpx.post(f"{etcd.url}/v3/kv/range", json={"key": key.decode()}, timeout=5)
    assert answer.status_code == 200, answer.text
    kvs = answer.json().get("kvs", [])
    return int(kvs[0]["create_revision"]) if kvs else 0


def _expired(api: Api) -> float:
    """The node's count of instances removed as expired (its /metrics)."""
    text = api.http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith('sd_removals_total{reason="ttl_expired"}'):
            return float(line.split()[-1])
    raise AssertionError(f"no ttl_expired counter in /metrics: {text[:500]}")


@contextmanager
def _heartbeating(urls: list[str], ids: list[str]) -> Iterator[list[int]]:
    """Clients heartbeating every instance of `api` every 0.5 s, through the nodes in
    turn, on a thread; yields the answers' statuses as they come."""
    answers: list[int] = []
    stop = threading.Event()

    def beat() -> None:
        with httpx.Client(headers={"authorization": f"Bearer {SECRET}"}, timeout=10) as http:
            for n in itertools.count():
                if stop.wait(0.5 if n % len(ids) == 0 else 0):
                    return
                body = {"service_name": "api", "instance_id": ids[n % len(ids)]}
                url = f"{urls[n % len(urls)]}/v1/discovery/heartbeat"
                answers.append(http.post(url, json=body).status_code)

    thread = threading.Thread(target=beat)
    thread.start()
    try:
        yield answers
    finally:
        stop.set()
        thread.join(timeout=30)


def test_a_stalled_etcd_expires_no_instance_whose_client_heartbeats(
    etcd: EtcdCluster, start_node: StartNode
) -> None:
    nodes = [start_node("trio", node_env(etcd.url, **TTL))]
    nodes.append(start_node("quart", node_env(etcd.url, **TTL)))
    ids = [f"a{n}" for n in range(4)]
    with api_for(nodes[0].url, SECRET) as first, api_for(nodes[1].url, SECRET) as second:
        for n, instance in enumerate(ids):
            (first, second)[n % 2].register_ok(_ttl_instance("api", instance))
        created = {instance: _created(etcd, "api", instance) for instance in ids}
        with _heartbeating([node.url for node in nodes], ids) as answers:
            poll_until(lambda: len(answers) >= 8 or None, EVENTUALLY, "heartbeats")
            member = etcd.members[0]
            member.signal(signal.SIGSTOP)
            try:
                stalled = len(answers)
                poll_until(lambda: 503 in answers[stalled:] or None, EVENTUALLY, "a 503")
                time.sleep(6.0)  # twice the TTL: real etcd, no clock to jump
            finally:
                member.signal(signal.SIGCONT)
            resumed = len(answers)
            poll_until(
                lambda: answers[resumed:].count(200) >= 2 * len(ids) or None,
                EVENTUALLY,
                "heartbeats answered again",
            )
            time.sleep(4.0)  # past another TTL, still heartbeating
        assert 404 not in answers, answers
        assert set(answers) <= {200, 503}, answers
        for api in (first, second):
            shown = [item["instance_id"] for item in api.service("api").json()["instances"]]
            assert sorted(shown) == ids
            assert _expired(api) == 0
        assert {instance: _created(etcd, "api", instance) for instance in ids} == created


def _read_all(apis: list[Api], services: list[str]) -> dict[str, list[tuple[int, int, bytes]]]:
    """Per service, each node's (status, index, body)."""
    found: dict[str, list[tuple[int, int, bytes]]] = {}
    for service in services:
        replies = [api.service(service) for api in apis]
        found[service] = [(r.status_code, index_of(r), r.content) for r in replies]
    return found


def _blocked(api: Api, service: str, index: int, change: Callable[[], None]) -> httpx.Response:
    """A blocking query on `api` with `index`, answered after `change` was made a second
    after it was sent: had it returned at once, it could not hold the change."""
    answer: list[httpx.Response] = []

    def blocking() -> None:
        path = f"/v1/discovery/services/{service}"
        answer.append(api.http.get(path, params={"index": index, "wait": "20s"}, timeout=30))

    waiter = threading.Thread(target=blocking)
    waiter.start()
    time.sleep(1.0)  # let it park; then the change it waits for
    change()
    waiter.join(timeout=30)
    [reply] = answer
    return reply


def test_a_node_killed_and_started_again_shows_every_service_s_live_index(
    etcd: EtcdCluster, start_node: StartNode
) -> None:
    env = node_env(etcd.url)
    nodes = [start_node(frontend, env) for frontend in ("quart", "trio", "quart")]
    services = ["orders", "billing", "gone"]
    doomed = Api(nodes[2].url, SECRET)  # no clean-up through it: it will be dead
    with api_for(nodes[0].url, SECRET) as a, api_for(nodes[1].url, SECRET) as b:
        a.register_ok(_ttl_instance("orders", "o1"))
        b.register_ok(_ttl_instance("orders", "o2"))
        doomed.register_ok(_ttl_instance("billing", "b1", load_percentage=0.1))
        doomed.close()
        a.register_ok(_ttl_instance("gone", "g1"))
        nodes[2].proc.send_signal(signal.SIGKILL)
        nodes[2].proc.wait(timeout=10)
        # What it missed: a removal (orders' last change), a visible load move that
        # later heartbeats rewrite (billing), a service left without instances (gone).
        assert b.unregister("orders", "o2").status_code == 200
        a.heartbeat_ok("billing", "b1", load_percentage=0.8)
        for _ in range(3):
            b.heartbeat_ok("billing", "b1", load_percentage=0.81)
        assert a.unregister("gone", "g1").status_code == 200
        restarted = start_node("quart", env)
        with api_for(restarted.url, SECRET) as r:
            apis = [a, b, r]
            head = max(store_health(node.url)["revision"] for node in (nodes[0], nodes[1]))
            poll_until(
                lambda: store_health(restarted.url)["revision"] >= head or None,
                EVENTUALLY,
                "the restarted node caught up",
            )
            seen = _read_all(apis, services)
            for service, replies in seen.items():
                assert len({(status, index) for status, index, _ in replies}) == 1, (
                    service,
                    replies,
                )
                assert len({body for _, _, body in replies}) == 1, service
            # A client that read node A blocks on the restarted node with A's index.
            for service in ("orders", "billing"):
                index = index_of(a.service(service))
                reply = _blocked(
                    r,
                    service,
                    index,
                    lambda name=service: b.register_ok(_ttl_instance(name, "late")),
                )
                assert reply.status_code == 200
                assert index_of(reply) > index
                assert "late" in {item["instance_id"] for item in reply.json()["instances"]}
