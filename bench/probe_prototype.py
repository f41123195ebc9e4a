"""Evidence for a proposed change, not part of the product: probes without httpx.

Scenario 2 shows the registry's probing is bounded by httpx/httpcore's
connection pool (`AsyncConnectionPool._assign_requests_to_connections`
rescans every connection for every queued request, and each scan calls
`has_expired` -> `get_extra_info` on each socket). This module runs the real
server with `probe_once` replaced by `plain_probe_once`: the same contract
(address resolution and the probe policy, the original Host header, no
redirects, identity encoding, the body limit, every failure reported as a
`ProbeFailed`), over anyio streams (so it runs on both asyncio and trio)
with a small per-address keep-alive pool whose operations are O(1).

    python -m bench.probe_prototype serve --frontend quart|trio --fd N
    python -m bench.probe_capacity --prototype      # scenario 2 against it

If the figures justify it, `plain_probe_once` is the candidate for
`frontends/shared/probe_request.py`.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any
from urllib.parse import urlsplit

import anyio
from anyio.abc import SocketStream

from sd_core import ProbeFailed, ProbeResult, RunProbe, judge_probe

MAX_HEAD = 16 * 1024
MAX_IDLE_PER_ADDRESS = 32
_idle: defaultdict[tuple[str, int], list[SocketStream]] = defaultdict(list)


class _ProtocolError(Exception):
    pass


def _failed(probe: RunProbe, reason: str) -> ProbeFailed:
    return ProbeFailed(probe.service_name, probe.instance_id, probe.generation, reason[:200])


async def plain_probe_once(client: Any, probe: RunProbe, max_body: int, policy: Any) -> ProbeResult:
    """Drop-in for `frontends.shared.probe_request.probe_once` (`client` is ignored)."""
    from frontends.shared.probe_request import _addresses

    try:
        parts = urlsplit(probe.url)
        host = parts.hostname or ""
        port = parts.port or 80
        addresses = await _addresses(host, port)
    except (OSError, ValueError) as error:
        return _failed(probe, f"cannot resolve host: {error}")
    allowed = [a for a in addresses if policy.refusal(a) is None]
    if not allowed:
        refusal = policy.refusal(addresses[0]) if addresses else "no address"
        return _failed(probe, f"refused: {refusal}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    request = (
        f"GET {target} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
        "user-agent: service-discovery-probe/0.1\r\naccept-encoding: identity\r\n\r\n"
    ).encode("latin-1")
    reason = "no address to connect to"
    for address in allowed[:3]:
        try:
            status, body, truncated = await _exchange(address, port, request, max_body)
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as error:
            reason = f"{type(error).__name__}: {error}".strip()
            continue
        except _ProtocolError as error:
            return _failed(probe, f"bad response: {error}")
        return judge_probe(probe, status, body, truncated=truncated)
    return _failed(probe, reason)


async def _exchange(
    address: str, port: int, request: bytes, max_body: int
) -> tuple[int, bytes, bool]:
    key = (address, port)
    idle = _idle[key]
    while idle:  # a pooled connection the peer may have closed meanwhile: retry fresh
        stream = idle.pop()
        try:
            return await _on(stream, key, request, max_body)
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream, _Stale):
            continue
    stream = await anyio.connect_tcp(address, port)
    try:
        return await _on(stream, key, request, max_body)
    except _Stale as error:
        raise anyio.EndOfStream() from error


class _Stale(Exception):
    """The connection closed before any byte of the answer."""


async def _on(
    stream: SocketStream, key: tuple[str, int], request: bytes, max_body: int
) -> tuple[int, bytes, bool]:
    reusable = False
    try:
        await stream.send(request)
        buffer = b""
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            if len(buffer) > MAX_HEAD:
                raise _ProtocolError("response head too large")
            try:
                chunk = await stream.receive()
            except anyio.EndOfStream:
                if not buffer:
                    raise _Stale() from None
                raise
            buffer += chunk
        head = buffer[:end].decode("latin-1").split("\r\n")
        rest = buffer[end + 4 :]
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise _ProtocolError(head[0][:80]) from None
        length: int | None = None
        chunked = close = False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length" and value.isdigit():
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and "close" in value:
                close = True
        if not 200 <= status < 300:
            return status, b"", False  # judged on the status alone; do not reuse
        if chunked:
            body, truncated = await _chunked(stream, rest, max_body)
        else:
            body, truncated = await _sized(stream, rest, length, max_body)
        reusable = not close and not truncated and (length is not None or chunked)
        return status, body, truncated
    finally:
        if reusable and len(_idle[key]) < MAX_IDLE_PER_ADDRESS:
            _idle[key].append(stream)
        else:
            await anyio.aclose_forcefully(stream)


async def _sized(
    stream: SocketStream, body: bytes, length: int | None, max_body: int
) -> tuple[bytes, bool]:
    while length is None or len(body) < length:
        if len(body) > max_body:
            return b"", True
        try:
            body += await stream.receive()
        except anyio.EndOfStream:
            if length is None:
                break
            raise
    if len(body) > max_body:
        return b"", True
    return body if length is None else body[:length], False


async def _chunked(stream: SocketStream, data: bytes, max_body: int) -> tuple[bytes, bool]:
    body = b""
    while True:
        while (end := data.find(b"\r\n")) < 0:
            data += await stream.receive()
        size = int(data[:end].split(b";")[0], 16)
        data = data[end + 2 :]
        while len(data) < size + 2:
            data += await stream.receive()
        if size == 0:
            return body, False
        body += data[:size]
        data = data[size + 2 :]
        if len(body) > max_body:
            return b"", True


def _trace_gc(path: str) -> None:
    """Write every collection's generation and pause (s) to `path` at exit: GC evidence."""
    import atexit
    import gc
    import time

    pauses: list[tuple[int, float]] = []
    started = 0.0

    def callback(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started))

    def write() -> None:
        with open(path, "w") as out:
            out.writelines(f"{gen} {seconds:.6f}\n" for gen, seconds in pauses)

    gc.callbacks.append(callback)
    atexit.register(write)


def main(argv: list[str] | None = None) -> int:
    """`BENCH_PLAIN_PROBES=0` keeps httpx; `BENCH_GC_LOG=path` records GC pauses."""
    import os

    import frontends.quart_app.app as quart_app
    import frontends.shared.probe_request as probe_request
    import frontends.trio_app.app as trio_app
    from frontends.cli import main as cli_main

    if os.environ.get("BENCH_GC_LOG"):
        _trace_gc(os.environ["BENCH_GC_LOG"])
    if os.environ.get("BENCH_PLAIN_PROBES", "1") != "0":
        for module in (probe_request, quart_app, trio_app):
            module.probe_once = plain_probe_once  # type: ignore[attr-defined]
    return cli_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
