"""Unary calls to etcd's JSON gateway: one POST, one answer, on `http1_pool`'s connections.

Why not httpx for these: in cluster mode every heartbeat is a lease keepalive
and every write a txn, so a node makes thousands of these calls a second, and
httpx's request machinery cost about 4 ms of node CPU per heartbeat
(docs/performance.md, "Cluster mode"). A gateway call is always the same
shape (POST, a small JSON body, a Content-Length answer), which the shared
lean pool does for a fraction of that. The watch, a long chunked stream, stays
on httpx (`etcd_client.EtcdClient.stream`).

Each call runs under one deadline (`timeout`) from taking a connection to the
last byte of the answer, and at most `max_connections` calls are in flight
(the rest wait their turn), so a burst of heartbeats cannot open thousands of
connections to etcd.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import anyio
from anyio.abc import ByteStream

from frontends.outbound.http1_pool import (
    TRANSPORT_ERRORS,
    Address,
    ConnectionPool,
    ProtocolError,
    Reader,
    body_pieces,
    read_head,
)

#: The largest answer read: a range page of `list_page` keys, with room to spare.
MAX_ANSWER_BYTES = 256 * 1024 * 1024

#: What a failed call raises: the caller treats every one as "this endpoint failed".
CALL_ERRORS = (*TRANSPORT_ERRORS, ProtocolError, TimeoutError)


class GatewayHttp:
    """Kept-alive connections to the gateway's endpoints (plain or TLS, per endpoint)."""

    def __init__(
        self,
        tls: ssl.SSLContext,
        *,
        timeout: float,
        max_connections: int = 200,
        max_idle: int = 50,
    ) -> None:
        self._tls = tls
        self._timeout = timeout
        self._slots = anyio.Semaphore(max_connections)
        self._secure: set[Address] = set()
        self._targets: dict[str, tuple[Address, str]] = {}
        # etcd keeps idle connections open; a kept one it closed is retried once.
        self._pool = ConnectionPool(
            connect=self._connect, max_idle=max_idle, max_idle_per_address=max_idle,
            idle_seconds=30.0,
        )  # fmt: skip

    async def post(
        self, endpoint: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """(status, body) of POST `path` on `endpoint`; raises one of `CALL_ERRORS`."""
        address, request = self._request(endpoint, path, body, headers)
        async with self._slots:
            with anyio.fail_after(self._timeout):
                stream, kept = await self._pool.connection(address)
                answer = await self._pool.exchange(
                    address, stream, kept, request, MAX_ANSWER_BYTES, error_bodies=True
                )
        if answer.truncated:
            raise ProtocolError(f"answer over {MAX_ANSWER_BYTES} bytes")
        return answer.status, answer.body

    @asynccontextmanager
    async def stream(
        self,
        endpoint: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        read_timeout: float,
    ) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        """POST `path` for an answer with no end in sight (the watch): its status and
        its body's bytes as they arrive, on a connection of its own, closed on leaving.
        Connecting and sending have `timeout`; each read waits at most `read_timeout`.
        Raises one of `CALL_ERRORS`."""
        address, request = self._request(endpoint, path, body, headers)
        with anyio.fail_after(self._timeout):
            connection = await self._connect(address)
        try:
            reader = _ReadsWithin(connection, read_timeout)
            with anyio.fail_after(self._timeout):
                await connection.send(request)
            head = await read_head(reader)
            yield head.status, body_pieces(reader, head)
        finally:
            await anyio.aclose_forcefully(connection)

    async def aclose(self) -> None:
        await self._pool.aclose()

    def _request(
        self, endpoint: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[Address, bytes]:
        """Where to send a POST, and its bytes."""
        address, authority = self._target(endpoint)
        if any(c in text for text in (path, *headers, *headers.values()) for c in "\r\n\x00"):
            raise ProtocolError("a line break in the request line or a header")
        lines = [f"POST {path} HTTP/1.1", f"host: {authority}", f"content-length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return address, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _target(self, endpoint: str) -> tuple[Address, str]:
        known = self._targets.get(endpoint)
        if known is None:
            parts = urlsplit(endpoint)
            secure = parts.scheme == "https"
            host = parts.hostname or "127.0.0.1"
            address = (host, parts.port or (443 if secure else 80))
            if secure:
                self._secure.add(address)
            known = self._targets[endpoint] = (address, parts.netloc)
        return known

    async def _connect(self, address: Address) -> ByteStream:
        host, port = address
        if address in self._secure:
            return await anyio.connect_tcp(host, port, ssl_context=self._tls, tls_hostname=host)
        return await anyio.connect_tcp(host, port)


class _ReadsWithin(Reader):
    """A `Reader` whose every read gives up (TimeoutError) after `seconds` of silence."""

    def __init__(self, stream: ByteStream, seconds: float) -> None:
        super().__init__(stream)
        self.seconds = seconds

    async def fill(self) -> None:
        with anyio.fail_after(self.seconds):
            await super().fill()
