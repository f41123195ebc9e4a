"""The walk of one heartbeat through our code: routed once, authorised once, parsed once.

A profile hook records every call into our own packages while one heartbeat
is answered (through the ASGI app on each loop, and on a cluster node).
"Rooms" are modules; a stay is a run of calls in one module. The request
meets the core twice by design, the head (route, authorise, body limit) and
the answer (given the body): the walk must not come back into the core a
third time, and no route, authorisation or parse may run twice.
Run with `-s` to print each walk.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from frontend_kit import SECRET, Group, Kit, make_runtime, register

from frontends.runtime.watch_streams import Message
from sd_core.cluster.testing import SimulatedCluster, http_request

OURS = ("sd_core", "frontends")
#: The functions that route, authorise and parse a request: each must run once.
ONCE = ("HttpApi._route", "HttpApi._access", "_parse")


class Walk:
    """The calls into our packages, in order, as (module, qualified name)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def hook(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            module = frame.f_globals.get("__name__", "")
            if module.startswith(OURS):
                self.calls.append((module, frame.f_code.co_qualname))

    def counts(self) -> Counter[str]:
        return Counter(name for _, name in self.calls)

    def stays(self) -> list[str]:
        """The modules in the order the walk stays in them (a run of calls is one stay)."""
        rooms: list[str] = []
        for module, _ in self.calls:
            if not rooms or rooms[-1] != module:
                rooms.append(module)
        return rooms

    def entries(self, module: str) -> int:
        return self.stays().count(module)


@contextmanager
def walking() -> Iterator[Walk]:
    walk = Walk()
    previous = sys.getprofile()
    sys.setprofile(walk.hook)
    try:
        yield walk
    finally:
        sys.setprofile(previous)
    print("\n" + " -> ".join(m.split(".", 1)[1] for m in walk.stays()))


def _check_once(walk: Walk) -> None:
    counts = walk.counts()
    for name in ONCE:
        assert counts[name] == 1, (name, counts[name], walk.stays())


def test_a_heartbeat_meets_the_core_twice_on_each_loop(make_kit: Callable[[], Kit]) -> None:
    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit)
        register(runtime, "svc", "i-0")
        app = kit.make_app(runtime)
        body = b'{"service_name": "svc", "instance_id": "i-0"}'
        sent: list[Message] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> Message:
            return messages.pop(0)

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "path": "/v1/discovery/heartbeat",
            "query_string": b"",
            "headers": [
                (b"authorization", f"Bearer {SECRET}".encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        with walking() as walk:
            await app(scope, receive, send)
        assert sent[0]["status"] == 200
        _check_once(walk)
        assert walk.counts()["HttpApi.head"] == 1
        assert walk.counts()["HttpApi.answer"] == 1
        assert walk.entries("sd_core.http_api") == 2, walk.stays()
        assert walk.counts()["Registry.heartbeat"] == 1

    make_kit().run(scenario)


def test_a_cluster_heartbeat_is_routed_and_parsed_once() -> None:
    cluster = SimulatedCluster(nodes=1)
    assert cluster.register(0, "svc", "i-0").status == 200
    cluster.settle()
    heartbeat = {"service_name": "svc", "instance_id": "i-0"}
    request = http_request("POST", "/v1/discovery/heartbeat", json_body=heartbeat)
    with walking() as walk:
        response = cluster.send(0, request)
    assert response.status == 200, response.body
    _check_once(walk)
    counts = walk.counts()
    assert counts["HttpApi.head"] == 1
    assert counts["HttpApi.write_command"] == 1
    assert counts["ClusterNode._heartbeat"] == 1
    # The core's HTTP mapping is met for the head and the parse, and once more for
    # the answer's body (the node's 200, rendered once, not routed again).
    assert walk.entries("sd_core.http_api") <= 3, walk.stays()
