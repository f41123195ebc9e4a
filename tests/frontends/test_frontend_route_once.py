"""Each request is routed and authorised once, in one process and on a cluster node.

A frontend hands the core a request's head (`HttpApi.head`: route, access, body
limit) and then its body (`HttpApi.answer`); nothing between them routes or
checks the token again. Counted here by wrapping the mapping's router and its
token check while requests go through each app, as a server would send them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from frontend_kit import SECRET, Group, Kit, http_client, make_runtime, register, register_body

from frontends.outbound.cluster_member import ClusterMember
from frontends.runtime.node import LocalNode
from frontends.runtime.runtime import Runtime

JSON = "application/json"
HEARTBEAT = b'{"service_name": "svc", "instance_id": "i-0"}'
CLUSTER_ENV = {"SERVICE_DISCOVERY_ETCD_ENDPOINTS": "http://127.0.0.1:9"}


def _count_calls(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the mapping's routing (`_route`) and token checks (`_access`) from now on."""
    api = runtime.api
    counts = {"_route": 0, "_access": 0}
    for name in counts:
        original = getattr(api, name)

        def counted(*args: object, _name: str = name, _original: object = original) -> object:
            counts[_name] += 1
            assert callable(_original)
            return _original(*args)

        monkeypatch.setattr(api, name, counted)
    return counts


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/discovery/heartbeat", HEARTBEAT),
        ("/v1/discovery/register", register_body("svc", "i-1")),
    ],
)
def test_a_write_is_routed_and_authorised_once(
    make_kit: Callable[[], Kit], monkeypatch: pytest.MonkeyPatch, path: str, body: bytes
) -> None:
    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit)
        register(runtime, "svc", "i-0")
        counts = _count_calls(runtime, monkeypatch)
        async with http_client(kit.make_app(runtime)) as client:
            headers = {"authorization": f"Bearer {SECRET}", "content-type": JSON}
            response = await client.post(path, content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert counts == {"_route": 1, "_access": 1}

    make_kit().run(scenario)


def test_a_refused_write_is_routed_and_authorised_once(
    make_kit: Callable[[], Kit], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit)
        counts = _count_calls(runtime, monkeypatch)
        async with http_client(kit.make_app(runtime)) as client:
            headers = {"authorization": "Bearer wrong", "content-type": JSON}
            response = await client.post(
                "/v1/discovery/heartbeat", content=HEARTBEAT, headers=headers
            )
        assert response.status_code == 401
        assert counts == {"_route": 1, "_access": 1}
        assert runtime.api.auth_failures == {"invalid": 1}

    make_kit().run(scenario)


def test_a_cluster_write_reuses_the_route_and_parse(
    make_kit: Callable[[], Kit], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a cluster node a write becomes store calls from the routed request: one route.

    The node never reached its store here, so the write is refused as unavailable,
    after it was parsed (a bad body is still its 422).
    """

    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit, **CLUSTER_ENV)
        assert isinstance(runtime.node, ClusterMember)
        counts = _count_calls(runtime, monkeypatch)
        async with http_client(kit.make_app(runtime)) as client:
            headers = {"authorization": f"Bearer {SECRET}", "content-type": JSON}
            response = await client.post(
                "/v1/discovery/heartbeat", content=HEARTBEAT, headers=headers
            )
            assert response.status_code == 503, response.text
            bad = await client.post("/v1/discovery/heartbeat", content=b"{}", headers=headers)
            assert bad.status_code == 422, bad.text
        assert counts == {"_route": 2, "_access": 2}  # two requests, once each

    make_kit().run(scenario)


def test_the_node_is_chosen_once_from_the_settings(make_kit: Callable[[], Kit]) -> None:
    async def scenario(kit: Kit, group: Group) -> None:
        local = make_runtime(kit)
        cluster = make_runtime(kit, **CLUSTER_ENV)
        assert isinstance(local.node, LocalNode)
        assert isinstance(cluster.node, ClusterMember)
        assert cluster.registry is cluster.node.node.registry
        assert cluster.state_file is None  # the store holds a cluster's state

    make_kit().run(scenario)


def test_no_runtime_is_typed_any() -> None:
    """The runtime's import cycle is broken by a Protocol, not hidden behind `Any`."""
    root = Path(__file__).resolve().parents[2] / "frontends"
    hidden = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bruntime: Any\b", line)
    ]
    assert hidden == []


def test_a_bug_in_the_head_step_answers_500(
    make_kit: Callable[[], Kit], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Routing is guarded as the answer is: a bug there is a 500 in the API's shape."""

    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit)

        def explode(*args: object) -> None:
            raise RuntimeError("the router broke")

        monkeypatch.setattr(runtime.api, "head", explode)
        async with http_client(kit.make_app(runtime)) as client:
            headers = {"authorization": f"Bearer {SECRET}", "content-type": JSON}
            response = await client.post(
                "/v1/discovery/heartbeat", content=HEARTBEAT, headers=headers
            )
        assert response.status_code == 500
        assert response.json()["error"] == "internal_error"

    make_kit().run(scenario)
