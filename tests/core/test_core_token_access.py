"""`GET /v1/discovery/token`: what a token may do, asked through a read that changes nothing.

The dashboard decides from it whether to offer write actions. Before it
existed the page tried a write (`DELETE /v1/discovery/unregister/...`), which
removed any real instance of that name and counted a `read_only_write` auth
failure at every read-only sign-in.
"""

from __future__ import annotations

import pytest
from core_support import AUTH, READ_AUTH, READ_TOKEN, SECRET, Core

from sd_core.cluster.testing import SimulatedCluster

TOKEN = "/v1/discovery/token"


@pytest.mark.parametrize(
    ("auth", "access"),
    [
        (AUTH, "read-write"),
        (SECRET, "read-write"),  # a bare token, as Debian's Prometheus sends
        (f"bearer {SECRET}", "read-write"),
        (READ_AUTH, "read-only"),
        (READ_TOKEN, "read-only"),
    ],
)
def test_a_valid_token_learns_its_access(auth: str, access: str) -> None:
    core = Core()
    core.register()
    before = (core.snapshot("game-service"), core.api.registry.global_index)
    reply = core.send("GET", TOKEN, auth=auth)
    assert (reply.status, reply.body) == (200, {"access": access})
    assert reply.headers["content-type"] == "application/json"
    assert SECRET not in reply.raw.decode() and READ_TOKEN not in reply.raw.decode()
    assert (core.snapshot("game-service"), core.api.registry.global_index) == before
    assert core.api.auth_failures == {}


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Bearer {SECRET}x", "Basic x"])
def test_anything_else_is_401(auth: str | None) -> None:
    core = Core()
    reply = core.send("GET", TOKEN, auth=auth)
    assert (reply.status, reply.error) == (401, "unauthorized")
    assert reply.headers["www-authenticate"] == "Bearer"


def test_without_a_read_token_only_the_secret_is_valid() -> None:
    core = Core(read_token=None)
    assert core.send("GET", TOKEN, auth=READ_AUTH).status == 401
    assert core.send("GET", TOKEN, auth=AUTH).body == {"access": "read-write"}


@pytest.mark.parametrize("method", ["POST", "DELETE", "PUT"])
def test_it_is_a_read_only_endpoint(method: str) -> None:
    reply = Core().send(method, TOKEN, auth=AUTH)
    assert (reply.status, reply.error, reply.headers["allow"]) == (405, "method_not_allowed", "GET")


def test_a_query_string_changes_nothing() -> None:
    reply = Core().send("GET", TOKEN, auth=READ_AUTH, query="index=5&wait=1s")
    assert (reply.status, reply.body) == (200, {"access": "read-only"})


def test_a_cluster_node_answers_it_as_a_read() -> None:
    """Cluster mode sends every GET to the mapping, never to the store."""
    cluster = SimulatedCluster(nodes=2)
    cluster.advance(1)
    for node in (0, 1):
        reply = cluster.request(node, "GET", TOKEN)
        assert (reply.status, reply.body) == (200, {"access": "read-write"})
        assert cluster.request(node, "GET", TOKEN, token="wrong").status == 401
