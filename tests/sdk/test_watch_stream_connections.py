"""Watch streams open on connections of their own, not on the request pool's.

Why it matters (`RegistryHTTP.stream_http`): an open stream holds its
connection for as long as it lasts, so streams taken from the pool would
take its connections from the requests; and the registry serves a stream
sent on a new connection below hypercorn, at a fraction of the memory
(docs/frontends.md). A loopback HTTP server here records which connection
carried which request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from service_discovery.config import ClientSettings
from service_discovery.registry_http import RegistryHTTP
from service_discovery.watch import http_connect

EVENT = b'event: service\ndata: {"index":1,"service_name":"a","instances":[]}\nid: 1\n\n'


class RecordingServer:
    """Answers `/health` with a small JSON body (kept alive) and the watch with one event."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, bytes]] = []  # (connection number, request line)
        self.connections = 0
        self.port = 0

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        number = self.connections
        buffer = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0]
                self.requests.append((number, line))
                if b"/v1/discovery/watch" in line:
                    await stream.send_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                        b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(EVENT), EVENT)
                    )
                    await trio.sleep_forever()
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: 2\r\n\r\n{}"
                )


@pytest.fixture
async def recording_server() -> AsyncIterator[RecordingServer]:
    server = RecordingServer()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


async def _first_line_of_a_stream(registry: RegistryHTTP) -> str:
    async for line in http_connect(registry, ["a"])(None):
        return line
    raise AssertionError("the stream sent nothing")


async def test_a_stream_opens_a_new_connection_after_requests(
    recording_server: RecordingServer,
) -> None:
    url = f"http://127.0.0.1:{recording_server.port}"
    registry = RegistryHTTP(ClientSettings.resolve(url, "t", environ={}))
    try:
        for _ in range(3):
            await registry.request("GET", "/health")
        with trio.fail_after(10):
            assert await _first_line_of_a_stream(registry) == "event: service"
            assert await _first_line_of_a_stream(registry) == "event: service"
    finally:
        await registry.aclose()
    numbers = [number for number, _ in recording_server.requests]
    assert numbers[:3] == [1, 1, 1], "the requests did not share a kept-alive connection"
    assert numbers[3:] == [2, 3], "a stream went on a connection that was not its own"


async def test_a_client_given_by_the_caller_is_used_for_streams_too() -> None:
    given = httpx.AsyncClient()
    registry = RegistryHTTP(ClientSettings.resolve("http://127.0.0.1:1", None), http_client=given)
    assert registry.stream_http is given
    await given.aclose()
