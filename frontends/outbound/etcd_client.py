"""HTTP to etcd's JSON gateway: one client for both loops (anyio underneath).

Unary calls (txns, keepalives, ranges, authentication) and the watch, one long chunked
answer read as it arrives, go through the lean `gateway_http`. It knows
transport only: which endpoint to use (the next one after a connection error
or a timeout), TLS, and etcd's password auth (`/v3/auth/authenticate` gives a token sent
as `Authorization`; an "invalid auth token" answer gets a fresh token and one retry).
What a call means is the `ClusterNode`'s business; when to give up on it is the
store driver's. Raises `StoreUnreachable` when no endpoint answered.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from frontends.outbound.cluster_settings import ClusterSettings
from frontends.outbound.gateway_http import CALL_ERRORS, GatewayHttp
from sd_etcd import GatewayRequest

_JSON = {"content-type": "application/json"}
#: etcd's gateway answers an expired or unknown auth token with gRPC code 16
#: (Unauthenticated), which it maps to HTTP 401.
_UNAUTHENTICATED = 401


class StoreUnreachable(Exception):
    """No endpoint could be reached (every one refused, failed or timed out)."""


def _describe(error: BaseException, hint: str = "") -> str:
    """An exception with its causes, for a log line: anyio's own messages
    are often empty or repeated, the SSL or socket error they wrap says what went wrong."""
    names: list[str] = []
    message = ""
    seen: BaseException | None = error
    while seen is not None and len(names) < 6:
        if not names or names[-1] != type(seen).__name__:
            names.append(type(seen).__name__)
        message = str(seen) or message
        seen = seen.__cause__ or seen.__context__
    described = " <- ".join(names) + (f": {message}" if message else "")
    return described + hint


def _said(status: int, body: bytes) -> str:
    """An error answer in a log line: its status and the start of etcd's message."""
    return f"HTTP {status}: {body[:200].decode(errors='replace')}"


async def _start_of(pieces: AsyncIterator[bytes], most: int = 200) -> bytes:
    """The first `most` bytes of an error answer's body (what a log line shows)."""
    start = b""
    async for piece in pieces:
        start += piece
        if len(start) >= most:
            break
    return start[:most]


def tls_context(settings: ClusterSettings) -> ssl.SSLContext:
    """The TLS context for https:// endpoints (system CAs unless a CA file is given)."""
    context = ssl.create_default_context(
        cafile=str(settings.ca_file) if settings.ca_file is not None else None
    )
    if settings.cert_file is not None and settings.key_file is not None:
        context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    return context


class EtcdClient:
    """Connections to the gateway's endpoints, with failover and auth."""

    def __init__(self, settings: ClusterSettings) -> None:
        self._settings = settings
        self._endpoints = settings.endpoints
        self._current = 0
        self._token: str | None = None
        self._hint = ""
        if settings.cert_file is None and any(e.startswith("https:") for e in self._endpoints):
            # What an etcd with --client-cert-auth does to a client without one.
            self._hint = (
                " (no client certificate is set: an etcd that requires one closes the"
                " connection; see SERVICE_DISCOVERY_ETCD_CERT_FILE and _KEY_FILE)"
            )
        self._calls = GatewayHttp(tls_context(settings), timeout=settings.call_timeout)

    @property
    def endpoint(self) -> str:
        return self._endpoints[self._current]

    def failover(self) -> None:
        """Use the next endpoint from now on (the current one failed or stalled)."""
        self._current = (self._current + 1) % len(self._endpoints)

    def _describe(self, error: BaseException) -> str:
        """`error` and its causes, with the missing-certificate hint when it may apply
        (not to a refused connection or a server certificate that failed to verify)."""
        seen: BaseException | None = error
        while seen is not None:
            if isinstance(seen, ssl.SSLCertVerificationError | ConnectionRefusedError):
                return _describe(error)
            seen = seen.__cause__ or seen.__context__
        return _describe(error, self._hint)

    async def aclose(self) -> None:
        await self._calls.aclose()

    def _headers(self, request: GatewayRequest) -> dict[str, str]:
        headers = dict(_JSON)
        headers.update(request.headers)
        if self._token is not None:
            headers["authorization"] = self._token
        return headers

    async def _authenticate(self) -> None:
        if self._settings.username is None:
            return
        body = json.dumps({"name": self._settings.username, "password": self._settings.password})
        status, answer = await self._calls.post(
            self.endpoint, "/v3/auth/authenticate", body.encode(), _JSON
        )
        if status != 200:
            raise StoreUnreachable(f"authentication refused: {_said(status, answer)}")
        self._token = str(json.loads(answer)["token"])

    async def call(self, request: GatewayRequest) -> tuple[int, bytes]:
        """POST once to the first endpoint that answers: (status, body)."""
        last: Exception | None = None
        for _ in range(len(self._endpoints)):
            try:
                if self._token is None:
                    await self._authenticate()
                status, body = await self._post(request)
                if status == _UNAUTHENTICATED and self._settings.username:
                    self._token = None
                    await self._authenticate()
                    status, body = await self._post(request)
                return status, body
            except (*CALL_ERRORS, StoreUnreachable, ValueError, KeyError) as error:
                last = error
                self._token = None
                self.failover()
        raise StoreUnreachable(self._describe(last) if last is not None else "no endpoint")

    async def _post(self, request: GatewayRequest) -> tuple[int, bytes]:
        return await self._calls.post(
            self.endpoint, request.path, request.body, self._headers(request)
        )

    @asynccontextmanager
    async def stream(self, request: GatewayRequest) -> AsyncIterator[AsyncIterator[bytes]]:
        """The watch's body as it arrives; a read silent for `watch_timeout` raises.

        A non-200 answer or a connection failure raises (the watch is then over); the
        caller closes the stream by leaving the block.

        With auth, every watch starts with a fresh token. etcd checks the token only
        when a watch is created, and answers an expired one (`--auth-token-ttl`, 5
        minutes by default, counted from the token's last use) not with a 401 but with
        the watch created and cancelled ("permission denied") in a 200 stream, and lease
        keepalives never check it: reusing the token the calls hold would retry that
        for ever on a quiet node (seen against etcd 3.4). One authentication per watch
        opened (at start, after each break) is cheap."""
        if self._settings.username is not None:
            self._token = None
            try:
                await self._authenticate()
            except (*CALL_ERRORS, ValueError, KeyError) as error:
                self.failover()
                raise StoreUnreachable(self._describe(error)) from error
        try:
            async with self._calls.stream(
                self.endpoint,
                request.path,
                request.body,
                self._headers(request),
                read_timeout=self._settings.watch_timeout,
            ) as (status, pieces):
                if status != 200:
                    if status == _UNAUTHENTICATED:
                        self._token = None
                    said = _said(status, await _start_of(pieces))
                    raise StoreUnreachable(f"watch answered {said}")
                yield pieces
        except CALL_ERRORS as error:
            self.failover()
            raise StoreUnreachable(self._describe(error)) from error
