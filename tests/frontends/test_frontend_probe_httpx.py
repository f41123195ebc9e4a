"""The httpx prober's `probe_once`, on both loops.

httpx's `MockTransport` stands in for the network, so each case sees exactly
which request the probe sent (address, Host header, path) and what came of it.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio

from frontends.outbound.probing import timed_out
from frontends.outbound.probing.httpx_client import make_probe_client, probe_once
from frontends.outbound.probing.resolver import HostResolver
from sd_core import ProbeFailed, ProbePassed, ProbeResult, RunProbe
from sd_core.probe_address_policy import ProbePolicy, parse_networks

RUNNERS: dict[str, Callable[[Callable[[], Awaitable[Any]]], Any]] = {
    "asyncio": lambda main: asyncio.run(main()),  # type: ignore[arg-type]
    "trio": trio.run,
}
both_loops = pytest.mark.parametrize("run", list(RUNNERS.values()), ids=list(RUNNERS))
Handler = Callable[[httpx.Request], httpx.Response]


def probe_of(url: str) -> RunProbe:
    return RunProbe("svc", "i-1", url, generation=3)


def check(
    run: Callable[[Callable[[], Awaitable[Any]]], Any],
    url: str,
    handler: Handler,
    *,
    policy: ProbePolicy | None = None,
    max_body: int = 1024,
    resolver: HostResolver | None = None,
) -> tuple[ProbeResult, list[httpx.Request]]:
    """Probe `url` through `handler`; returns the result and the requests sent."""
    seen: list[httpx.Request] = []
    outcome: list[ProbeResult] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    async def main() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(recording))
        async with client:
            outcome.append(
                await probe_once(
                    client,
                    probe_of(url),
                    max_body,
                    policy or ProbePolicy(),
                    resolver or HostResolver(),
                )
            )

    run(main)
    [result] = outcome
    assert (result.service_name, result.instance_id, result.generation) == ("svc", "i-1", 3)
    return result, seen


def answer(status: int, body: bytes = b"") -> Handler:
    """A streamed answer, as a real connection gives it (`content=` would be pre-read)."""
    return lambda request: httpx.Response(status, stream=httpx.ByteStream(body))


@both_loops
@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"", ProbePassed("svc", "i-1", 3)),
        (200, b"plain text", ProbePassed("svc", "i-1", 3)),
        (204, b'{"status": "UP"}', ProbePassed("svc", "i-1", 3)),
        (200, b'{"status": "ok", "load_percentage": 0.7}', ProbePassed("svc", "i-1", 3, 0.7)),
        (200, b'{"status": "down"}', ProbeFailed("svc", "i-1", 3, "reported status 'down'")),
        (503, b'{"status": "ok"}', ProbeFailed("svc", "i-1", 3, "HTTP 503")),
        (302, b"", ProbeFailed("svc", "i-1", 3, "HTTP 302")),
        (200, b"x" * 1025, ProbeFailed("svc", "i-1", 3, "body over the size limit")),
    ],
)
def test_an_answer_is_judged_by_the_contract(
    run: Callable[[Callable[[], Awaitable[Any]]], Any],
    status: int,
    body: bytes,
    expected: ProbeResult,
) -> None:
    result, seen = check(run, "http://127.0.0.1:8080/health", answer(status, body))
    assert result == expected
    assert len(seen) == 1


@both_loops
@pytest.mark.parametrize(
    ("url", "host_header"),
    [
        ("http://127.0.0.1:8080/health?deep=1", "127.0.0.1:8080"),
        ("http://[::1]:9000/status", "[::1]:9000"),
    ],
)
def test_the_request_goes_to_the_address_with_the_original_host_header(
    run: Callable[[Callable[[], Awaitable[Any]]], Any], url: str, host_header: str
) -> None:
    result, [request] = check(run, url, answer(200))
    assert isinstance(result, ProbePassed)
    assert request.method == "GET"
    assert str(request.url) == url
    assert request.headers["host"] == host_header


@both_loops
@pytest.mark.parametrize(
    ("url", "policy"),
    [
        ("http://169.254.169.254/latest/meta-data", None),
        ("http://[fe80::1]:8080/health", None),
        ("http://127.0.0.1:8080/health", ProbePolicy(parse_networks("10.0.0.0/8"))),
    ],
)
def test_a_refused_address_is_never_contacted(
    run: Callable[[Callable[[], Awaitable[Any]]], Any], url: str, policy: ProbePolicy | None
) -> None:
    result, seen = check(run, url, answer(200), policy=policy)
    assert isinstance(result, ProbeFailed)
    assert result.reason.startswith("refused: ")
    assert seen == []


@both_loops
def test_connection_failures_try_up_to_three_allowed_addresses(
    run: Callable[[Callable[[], Awaitable[Any]]], Any],
) -> None:
    resolved = ["169.254.169.254", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]

    def addresses(host: str, port: int) -> list[str]:
        assert (host, port) == ("svc.internal", 8080)
        return resolved

    resolver = HostResolver(lookup=addresses)

    def refuse_all(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result, seen = check(run, "http://svc.internal:8080/health", refuse_all, resolver=resolver)
    assert [r.url.host for r in seen] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert all(r.headers["host"] == "svc.internal:8080" for r in seen)
    assert isinstance(result, ProbeFailed)
    assert result.reason == "ConnectError: connection refused"

    def third_works(request: httpx.Request) -> httpx.Response:
        if request.url.host != "10.0.0.3":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, stream=httpx.ByteStream(b""))

    result, seen = check(run, "http://svc.internal:8080/health", third_works, resolver=resolver)
    assert isinstance(result, ProbePassed)
    assert len(seen) == 3


@both_loops
def test_other_transport_errors_fail_at_once(
    run: Callable[[Callable[[], Awaitable[Any]]], Any],
) -> None:
    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    result, seen = check(run, "http://127.0.0.1:8080/health", reset)
    assert result == ProbeFailed("svc", "i-1", 3, "ReadError: connection reset")
    assert len(seen) == 1


def test_the_probe_client_follows_no_redirects_and_ignores_proxies() -> None:
    client = make_probe_client(timeout=2.5, concurrency=7)
    assert client.follow_redirects is False
    assert client.timeout == httpx.Timeout(2.5)
    assert client.headers["accept-encoding"] == "identity"
    assert client._trust_env is False
    asyncio.run(client.aclose())


def test_a_timeout_reason_names_the_seconds() -> None:
    failed = timed_out(probe_of("http://127.0.0.1/"), 2.5)
    assert failed == ProbeFailed("svc", "i-1", 3, "timeout after 2.5s")


def test_a_body_over_the_limit_leaves_no_unclosed_generator_on_trio() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, _ = check(trio.run, "http://127.0.0.1:8080/health", answer(200, b"x" * 4096))
        gc.collect()
    assert result == ProbeFailed("svc", "i-1", 3, "body over the size limit")
    # httpx's own stream layers still leave generators to the collector when a
    # body is abandoned (encode/httpx#3686); the iterator we open must not.
    leaks = [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning) and "aiter_raw" in str(w.message)
    ]
    assert leaks == []
