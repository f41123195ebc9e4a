"""Registry nodes of both frontends against a real etcd with auth on: a user whose role
may read and write the registry's prefix, and tokens that expire after 2 s unused
(`--auth-token-ttl 2`).

etcd checks a token only when a watch is created, and answers an expired one with the
watch cancelled ("permission denied"), not a 401; the lease keepalives a quiet node
sends do not check it at all. So a node whose watch breaks after its token expired must
open the new watch with a fresh token, or it stays stale for good. A wrong password is
a node that keeps running and says why on /health and in its log.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from conformance.client import api_for, instance_body, poll_until
from sd_core.cluster import DEFAULT_PREFIX
from tests.etcd.etcd_auth import enable_auth
from tests.etcd.etcd_process import EtcdCluster, etcd_missing_reason, running_cluster

from .conftest import SECRET, StartNode, assert_refused_node_says_why, node_env, store_health
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.skipif(
    etcd_missing_reason() is not None, reason=str(etcd_missing_reason())
)

EVENTUALLY = 45.0
TOKEN_TTL_SECONDS = 2
USER, PASSWORD = "registry", "registry-pw"


@pytest.fixture
def auth_etcd() -> Iterator[EtcdCluster]:
    with running_cluster(1, extra_args=["--auth-token-ttl", str(TOKEN_TTL_SECONDS)]) as etcd:
        enable_auth(etcd.url, "root-pw", user=USER, password=PASSWORD, prefix=DEFAULT_PREFIX)
        yield etcd


def auth_env(endpoints: str, password: str = PASSWORD) -> dict[str, str]:
    return node_env(
        endpoints,
        SERVICE_DISCOVERY_ETCD_USERNAME=USER,
        SERVICE_DISCOVERY_ETCD_PASSWORD=password,
    )


@pytest.mark.parametrize(("behind", "other"), [("quart", "trio"), ("trio", "quart")])
def test_a_watch_reopened_after_the_token_expired_follows_the_store(
    auth_etcd: EtcdCluster, start_node: StartNode, behind: str, other: str
) -> None:
    host, port = auth_etcd.url.removeprefix("http://").split(":")
    with TcpProxy(host, int(port)) as proxy:
        node = start_node(behind, auth_env(proxy.url))
        writer = start_node(other, auth_env(auth_etcd.url))
        with api_for(node.url, SECRET) as n, api_for(writer.url, SECRET) as w:
            w.register_ok(instance_body("api", "first"))
            poll_until(lambda: n.instance("api", "first"), EVENTUALLY, "first, by the watch")
            n.heartbeat_ok("api", "first")  # a write through the node under test, too
            # etcd's token TTL runs on its own wall clock: nothing to jump, so wait it out
            # (the node makes no authenticated call meanwhile, only lease keepalives).
            time.sleep(TOKEN_TTL_SECONDS + 1)
            # A short cut: a keepalive failing meanwhile would drop the token and hide
            # the bug (the next watch would authenticate anyway).
            proxy.cut()
            poll_until(lambda: store_health(node.url)["state"] != "ok" or None, EVENTUALLY, "cut")
            proxy.restore()
            w.register_ok(instance_body("api", "second"))
            poll_until(
                lambda: n.instance("api", "second"),
                EVENTUALLY,
                "second, by the watch opened again after the token expired",
            )
            poll_until(lambda: store_health(node.url)["state"] == "ok" or None, EVENTUALLY, "ok")
            n.heartbeat_ok("api", "second")  # and its calls re-authenticate


@pytest.mark.parametrize("frontend", ["quart", "trio"])
def test_a_wrong_password_keeps_the_node_up_and_says_why(
    auth_etcd: EtcdCluster, frontend: str
) -> None:
    assert_refused_node_says_why(
        frontend,
        auth_env(auth_etcd.url, password="not-the-password"),
        "authentication refused: HTTP 400",
        "invalid user ID or password",
    )
