"""Bodies held as views of other cached bodies (`sd_core.body.Pieces`), as each app sends them.

The global `/services` and `/prometheus` bodies and a service's `healthy`
body point into the service's own cached bodies; an app writes them in a
few chunks under one `content-length`. What a client reads must be the very
bytes the body stands for, on both apps.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from frontend_kit import SECRET, Group, Kit, http_client, make_runtime, register

from frontends.runtime.watch_streams import Message, send_response
from sd_core import HttpResponse
from sd_core.body import CHUNK_BYTES, WRITE_MAX, Pieces, as_bytes

#: Reported healthy at registration: the `healthy` body is not empty.
CHECK = {"type": "ttl"}
READS = ("/v1/discovery/services", "/v1/discovery/prometheus", "/v1/discovery/services/svc/healthy")


def test_a_body_of_views_reads_as_the_bytes_it_stands_for(make_kit: Callable[[], Kit]) -> None:
    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit)
        for n in range(40):  # large enough for views: each instance's JSON is over 1 KB
            register(runtime, "svc", f"i-{n:02d}", metadata={"blob": "b" * 1000}, check=CHECK)
        views = runtime.registry.views
        expected = (views.all_services(), views.all_targets(), views.healthy_instances("svc"))
        assert all(isinstance(body, Pieces) for body in expected)
        async with http_client(kit.make_app(runtime)) as client:
            for path, body in zip(READS, expected, strict=True):
                response = await client.get(path, headers={"Authorization": f"Bearer {SECRET}"})
                assert response.status_code == 200, response.text
                assert response.content == as_bytes(body), path
                assert response.headers["content-length"] == str(len(body))

    make_kit().run(scenario)


@pytest.mark.parametrize("size", [10, 64 * 1024, 600 * 1024, 2 * 1024 * 1024 + 1])
async def test_pieces_are_sent_in_chunks_then_the_end(size: int) -> None:
    part = b"x" * size
    body = Pieces((b"[", memoryview(part), b",", memoryview(part), b"]"))
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await send_response(send, HttpResponse(200, body, (), "/r"))
    start, *pieces = sent
    assert (b"content-length", str(2 * size + 3).encode()) in start["headers"]
    assert b"".join(m["body"] for m in pieces) == bytes(body)
    assert [m["more_body"] for m in pieces] == [True] * (len(pieces) - 1) + [False]
    writes_of_a_part = -(-size // WRITE_MAX)
    # Small parts are joined; a large one is written alone, in views of at most WRITE_MAX.
    assert len(pieces) == (2 if size < CHUNK_BYTES else 4 + 2 * writes_of_a_part)
    if size >= CHUNK_BYTES:
        assert pieces[1]["body"].obj is part  # a view of the part: not copied
        assert max(len(m["body"]) for m in pieces) <= WRITE_MAX
