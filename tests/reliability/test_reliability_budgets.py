"""Attacks that grew the registry's memory or CPU with what a client sent, on every server kind.

Each test is one row of docs/reliability.md, "Attacks and their budgets":
it measures the server process (resident memory or CPU time, from /proc)
under the attack and fails when the cost follows the attacker's input
rather than the setting that bounds it.

- filtered reads with long `meta.*` keys (read token): the cache of filtered
  answers is bounded by bytes over every view;
- watch streams naming hundreds of made-up services (read token): names are
  checked and capped, and a keep-alive step costs per stream, not per name;
- registrations with maximal metadata (write token): metadata is capped in
  bytes.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from budget_support import MIB, cpu_seconds, rss_bytes
from reliability_support import AUTH, READ_TOKEN, base_env, kept_socket, serving_on, status_of

from conformance.common import list_endpoints
from conformance.server_process import ServerProcess

READ = {"Authorization": f"Bearer {READ_TOKEN}"}
#: The module server's filter budget: small, so its bound stands out from noise.
FILTER_CACHE_BYTES = 1 * MIB
#: Every list endpoint, for the one service the tests register.
VIEWS = list_endpoints("svc")


@pytest.fixture(scope="module")
def frontend(server_kind: str) -> str:
    """Every server kind: both hypercorn frontends, and Quart on uvicorn."""
    return server_kind


@pytest.fixture(scope="module")
def server(frontend: str) -> Iterator[ServerProcess]:
    env = base_env(SERVICE_DISCOVERY_FILTER_CACHE_BYTES=str(FILTER_CACHE_BYTES))
    with kept_socket() as sock, serving_on(frontend, env, sock) as srv:
        yield srv


def report(figure: str) -> None:
    """What a test measured, for docs/reliability.md (shown with `pytest -s`)."""
    print(f"\n{figure}")


def _register(client: httpx.Client, instance: str, metadata: dict[str, str]) -> httpx.Response:
    body = {
        "service_name": "svc",
        "instance_id": instance,
        "host": "127.0.0.1",
        "port": 9,
        "metadata": metadata,
    }
    return client.post("/v1/discovery/register", json=body, headers=AUTH)


def _filtered_reads(client: httpx.Client, first: int, count: int) -> None:
    """`count` distinct filters on every view, each a 13 KB query of 15 `meta.*` pairs."""
    for n in range(first, first + count):
        query = "&".join(f"meta.k{p}={n:06d}{'v' * 850}" for p in range(15))
        for view in VIEWS:
            response = client.get(f"{view}?{query}", headers=READ)
            assert response.status_code == 200, response.text


def test_filtered_reads_are_cached_within_the_byte_budget(server: ServerProcess) -> None:
    """1,250 filtered reads of 13 KB each: the registry keeps at most the budget.

    Counted per view (256 each), the keys alone came to about 20 MiB here.
    """
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert _register(client, "i-1", {"zone": "a"}).status_code == 200
        _filtered_reads(client, 0, 40)  # warm up: the server's own allocations settle
        before = rss_bytes(server.pid)
        _filtered_reads(client, 40, 250)
        grown = rss_bytes(server.pid) - before
        report(f"filtered reads: +{grown / MIB:.1f} MiB for 1,250 reads of 13 KB")
        too_many = "&".join(f"meta.k{p}=v" for p in range(17))
        refused = client.get(f"{VIEWS[1]}?{too_many}", headers=READ)
    assert grown < FILTER_CACHE_BYTES + 5 * MIB, f"grew {grown / MIB:.1f} MiB"
    assert refused.status_code == 422
    assert refused.json()["details"][0]["field"] == "meta"


def _watch_head(names: list[str]) -> bytes:
    query = "&".join(f"service={name}" for name in names)
    return (
        f"GET /v1/discovery/watch?{query} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {READ_TOKEN}\r\n\r\n"
    ).encode()


def _open_watch(port: int, names: list[str]) -> tuple[socket.socket, int | None]:
    """A watch naming `names`; the socket (kept open, unread past the head) and its status."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(_watch_head(names))
    received = b""
    while b"\r\n" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return sock, status_of(received)


def test_watch_names_are_checked_like_every_service_name(server: ServerProcess) -> None:
    for names in (["%00", "..%2F.."], ["ok", "a%2Fb"], ["x" * 129]):
        sock, status = _open_watch(server.port, names)
        sock.close()
        assert status == 422, names


def test_watches_naming_a_thousand_made_up_services_cost_nothing(server: ServerProcess) -> None:
    """40 streams of 1,000 distinct names each: refused (422), so memory stays put.

    Accepted, each such stream held its names, a follower set per name and
    an event per name: about 20 MiB for the 40.
    """
    with ExitStack() as stack:
        before = rss_bytes(server.pid)
        statuses = []
        for stream in range(40):
            names = [f"w{stream:02d}x{n:03x}" for n in range(1000)]
            sock, status = _open_watch(server.port, names)
            stack.callback(sock.close)
            statuses.append(status)
        grown = rss_bytes(server.pid) - before
        report(f"40 watches of 1,000 names: +{grown / MIB:.1f} MiB")
    assert set(statuses) == {422}
    assert grown < 6 * MIB, f"grew {grown / MIB:.1f} MiB"


def test_a_stream_at_the_name_cap_costs_a_few_hundred_bytes_a_name(
    server: ServerProcess,
) -> None:
    """40 open streams of 256 distinct names (the default cap): each in 10 KiB + 512 B a name."""
    streams, names_each = 40, 256
    with ExitStack() as stack:
        before = rss_bytes(server.pid)
        for stream in range(streams):
            names = [f"c{stream:02d}x{n:03x}" for n in range(names_each)]
            sock, status = _open_watch(server.port, names)
            stack.callback(sock.close)
            assert status == 200
        grown = rss_bytes(server.pid) - before
        report(f"40 streams at 256 names: +{grown / MIB:.1f} MiB")
    budget = streams * (10 * 1024 + 512 * names_each)
    assert grown < budget + 2 * MIB, f"grew {grown / MIB:.1f} MiB (budget {budget / MIB:.1f})"


def test_keepalive_ticks_cost_per_stream_not_per_followed_name(frontend: str) -> None:
    """48 idle streams of 1,000 names, keep-alive steps 800 times a second: under 25 % of a core.

    Each step used to gather the open streams from every (stream, name) pair:
    48,000 pairs a step kept most of a core busy.
    """
    env = base_env(
        SERVICE_DISCOVERY_WATCH_KEEPALIVE_SECONDS="0.02",
        SERVICE_DISCOVERY_WATCH_MAX_SERVICES="1000",
    )
    with kept_socket() as sock, serving_on(frontend, env, sock) as srv, ExitStack() as stack:
        for stream in range(48):
            names = [f"t{stream:02d}x{n:03x}" for n in range(1000)]
            conn, status = _open_watch(srv.port, names)
            stack.callback(conn.close)
            assert status == 200
        time.sleep(0.5)  # the streams' first bytes are out; the ticker runs
        start_cpu, start = cpu_seconds(srv.pid), time.monotonic()
        time.sleep(3.0)
        share = (cpu_seconds(srv.pid) - start_cpu) / (time.monotonic() - start)
        report(f"keep-alive steps: {share:.0%} of a core")
    assert share < 0.25, f"{share:.0%} of a core while idle"


def _maximal_metadata() -> dict[str, str]:
    """60 entries of about 1 KB: inside every per-entry limit and the 64 KiB body limit."""
    return {f"key-{n:02d}": "m" * 1000 for n in range(60)}


def test_registrations_with_maximal_metadata_cost_nothing(server: ServerProcess) -> None:
    """150 instances with 60 KB of metadata each, then every view read: refused (422).

    Accepted, each cost about 586 KiB once every view had its copy.
    """
    with httpx.Client(base_url=server.url, timeout=30) as client:
        before = rss_bytes(server.pid)
        statuses = {
            _register(client, f"big-{n}", _maximal_metadata()).status_code for n in range(150)
        }
        for view in VIEWS:
            assert client.get(view, headers=READ).status_code == 200
        grown = rss_bytes(server.pid) - before
        report(f"150 registrations of 60 KB metadata: +{grown / MIB:.1f} MiB")
        refusal = _register(client, "big-x", _maximal_metadata()).json()
    assert statuses == {422}
    assert refusal["details"][0]["field"] == "metadata"
    assert grown < 8 * MIB, f"grew {grown / MIB:.1f} MiB"


#: Enough that the server's own first-use growth is a small part of the figure.
CAPPED_INSTANCES = 600


def test_instances_at_the_metadata_cap_cost_a_bounded_amount(server: ServerProcess) -> None:
    """600 instances with 4 KB of metadata (the default cap), every view read: under 20 KiB each.

    RSS, allocator slack included, on a fresh server: 25-28 KiB each with a
    copy of each instance's JSON per view, 16-17 KiB with the global and
    `healthy` bodies views of the service's own bodies (`sd_core.body`),
    written in pieces, which every view's answer must still parse whole.
    (After this module's other tests, on a server that has grown already:
    20 and 12 KiB.) The core's own accounting, without allocator slack, is
    `tests/core/test_core_instance_memory.py`.
    """
    metadata = {f"key-{n:02d}": "m" * 120 for n in range(31)}
    assert sum(len(k) + len(v) for k, v in metadata.items()) <= 4096
    with httpx.Client(base_url=server.url, timeout=30) as client:
        # A round of the same first, then gone: less of the server's own first-use growth.
        for n in range(100):
            assert _register(client, f"warm-{n}", metadata).status_code == 200
        for view in VIEWS:
            assert client.get(view, headers=READ).status_code == 200
        for n in range(100):
            gone = client.delete(f"/v1/discovery/unregister/svc/warm-{n}", headers=AUTH)
            assert gone.status_code == 200
        before = rss_bytes(server.pid)
        for n in range(CAPPED_INSTANCES):
            assert _register(client, f"capped-{n}", metadata).status_code == 200
        for view in VIEWS:
            response = client.get(view, headers=READ)
            assert response.status_code == 200
            response.json()
        size = len(json.dumps(client.get(VIEWS[1], headers=READ).json()["instances"][0]))
        grown = rss_bytes(server.pid) - before
        each = grown / CAPPED_INSTANCES
        report(f"{CAPPED_INSTANCES} instances at the 4 KiB cap: +{grown / MIB:.1f} MiB")
    assert each < 20 * 1024, f"grew {each / 1024:.0f} KiB an instance ({size} B JSON)"
