"""`GatewayHttp.stream`, the watch's transport: an open-ended answer read as it
arrives, against a raw TCP peer on 127.0.0.1 that writes exactly the bytes given."""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import anyio
import pytest
import trio
import trio.testing
from anyio.abc import SocketStream

from frontends.outbound.gateway_http import GatewayHttp
from frontends.outbound.http1_pool import ProtocolError

CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"


async def _read_with(
    writes: Sequence[bytes], *, hang: bool = False, read_timeout: float = 5.0
) -> tuple[int, list[bytes], bytes]:
    """Serve one connection: read the request head, write `writes` one by one (each
    flushed), then hang or close; the status, the pieces read and the request sent."""
    seen = bytearray()

    async def serve(peer: SocketStream) -> None:
        async with peer:
            while b"\r\n\r\n" not in seen:
                seen.extend(await peer.receive())
            for data in writes:
                await peer.send(data)
                await anyio.sleep(0.01)
            if hang:
                await anyio.sleep(30)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    gateway = GatewayHttp(ssl.create_default_context(), timeout=2.0)
    pieces: list[bytes] = []
    status = 0
    failure: Exception | None = None
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, serve)
        try:
            async with gateway.stream(
                f"http://127.0.0.1:{port}", "/v3/watch", b"{}", {"x-a": "b"},
                read_timeout=read_timeout,
            ) as (status, body):  # fmt: skip
                async for piece in body:
                    pieces.append(piece)
        except Exception as error:  # raised below, outside the task group
            failure = error
        finally:
            tasks.cancel_scope.cancel()
            await gateway.aclose()
    if failure is not None:
        raise failure
    return status, pieces, bytes(seen)


async def test_a_chunked_answer_is_read_as_it_comes_across_chunk_and_packet_borders() -> None:
    status, pieces, request = await _read_with(
        [CHUNKED + b"5\r\nab", b"cde\r\n3;ext=1\r\nfg\n\r\n", b"0\r\n\r\n"]
    )
    assert status == 200
    assert b"".join(pieces) == b"abcdefg\n"
    assert pieces[0] == b"ab"  # handed over before the rest of its chunk came
    assert request.startswith(b"POST /v3/watch HTTP/1.1\r\n")
    assert b"\r\nx-a: b\r\n" in request and request.endswith(b"\r\n\r\n{}")


async def test_a_length_answer_and_an_answer_until_close_are_read_whole() -> None:
    head = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 9\r\n\r\n"
    status, pieces, _ = await _read_with([head + b"not", b" today"])
    assert (status, b"".join(pieces)) == (401, b"not today")
    status, pieces, _ = await _read_with([b"HTTP/1.0 200 OK\r\n\r\nall", b" of it"])
    assert (status, b"".join(pieces)) == (200, b"all of it")


async def test_a_silent_peer_times_the_read_out(autojump_clock: trio.testing.MockClock) -> None:
    with pytest.raises(TimeoutError):
        await _read_with([CHUNKED + b"2\r\n{}\r\n"], hang=True, read_timeout=20.0)


async def test_a_stream_cut_mid_chunk_or_malformed_raises() -> None:
    with pytest.raises(anyio.EndOfStream):
        await _read_with([CHUNKED + b'a\r\n{"res'])
    with pytest.raises(ProtocolError):
        await _read_with([CHUNKED + b"zz\r\n"])
