"""The DNS sockets of both frontends: started and stopped with the app's lifespan, on
127.0.0.1 port 0, queried with dnspython's own client over UDP and TCP."""

from __future__ import annotations

import asyncio
import socket
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
import trio
import uvloop

from frontends.quart_app import app as quart_app
from frontends.runtime.runtime import Runtime
from frontends.runtime.settings import load_settings
from frontends.trio_app import app as trio_app
from tests.frontends.frontend_kit import BASE_ENV, register

#: quart on asyncio's own loop and on uvloop (whose transports are not asyncio's classes).
KINDS = ("quart", "quart-uvloop", "trio")
DNS_ENV = {"SERVICE_DISCOVERY_DNS_PORT": "0", "SERVICE_DISCOVERY_HOST": "127.0.0.1"}
CLIENT_TIMEOUT = 10.0  # a generous bound on a hang, never an expected wait
Body = Callable[[int], None]


def serving(
    kind: str, body: Body, instances: int = 2, **env: str
) -> tuple[list[dict[str, Any]], Runtime]:
    """Run the app's lifespan with DNS on, `instances` ttl-checked (so healthy) instances of
    `web` registered, `body(dns_port)` in a thread, then shut down. Returns what the
    lifespan sent, and the runtime."""
    settings = load_settings({**BASE_ENV, **DNS_ENV, **env})
    sent: list[dict[str, Any]] = []
    runtimes: list[Runtime] = []

    def setup(runtime: Runtime) -> None:
        runtimes.append(runtime)
        for n in range(instances):
            register(runtime, "web", f"w{n}", port=8000 + n, check={"type": "ttl"})

    if kind.startswith("quart"):

        async def on_asyncio() -> None:
            runtime = Runtime(settings, quart_app.PARTS, clock=time.monotonic)
            setup(runtime)
            inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
            started = asyncio.Event()

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)
                started.set()

            app = quart_app.create_app(runtime)
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            lifespan = asyncio.create_task(app(scope, inbox.get, send))
            await inbox.put({"type": "lifespan.startup"})
            await started.wait()
            if sent[0]["type"] == "lifespan.startup.complete":
                assert runtime.dns is not None
                await asyncio.to_thread(body, runtime.dns.port)
            await inbox.put({"type": "lifespan.shutdown"})
            await lifespan

        factory = uvloop.new_event_loop if kind == "quart-uvloop" else None
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(on_asyncio())
    else:

        async def on_trio() -> None:
            runtime = Runtime(settings, trio_app.PARTS, clock=trio.current_time)
            setup(runtime)
            send_in, receive_in = trio.open_memory_channel[dict[str, str]](2)
            started = trio.Event()

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)
                started.set()

            app = trio_app.create_app(runtime)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(app, {"type": "lifespan"}, receive_in.receive, send)
                await send_in.send({"type": "lifespan.startup"})
                await started.wait()
                if sent[0]["type"] == "lifespan.startup.complete":
                    assert runtime.dns is not None
                    await trio.to_thread.run_sync(body, runtime.dns.port)
                    await send_in.send({"type": "lifespan.shutdown"})

        trio.run(on_trio)
    return sent, runtimes[0]


def query(name: str = "web.service.discovery.", rdtype: str = "A") -> dns.message.Message:
    return dns.message.make_query(name, rdtype)


def udp(port: int, message: dns.message.Message) -> dns.message.Message:
    return dns.query.udp(message, "127.0.0.1", port=port, timeout=CLIENT_TIMEOUT)


def tcp(port: int, message: dns.message.Message) -> dns.message.Message:
    return dns.query.tcp(message, "127.0.0.1", port=port, timeout=CLIENT_TIMEOUT)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)


def framed(message: dns.message.Message) -> bytes:
    wire = message.to_wire()
    return len(wire).to_bytes(2, "big") + wire


def closed_unanswered(client: socket.socket, data: bytes) -> bool:
    """Send `data`; True when the server closes the connection without a byte back."""
    try:
        client.sendall(data)
        return client.recv(10) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


@pytest.mark.parametrize("kind", KINDS)
def test_udp_and_tcp_answer_and_the_sockets_close_with_the_lifespan(kind: str) -> None:
    ports: list[int] = []

    def body(port: int) -> None:
        ports.append(port)
        for ask in (udp, tcp):
            answer = ask(port, query())
            assert answer.rcode() == dns.rcode.NOERROR
            assert [r.to_text() for r in answer.answer[0]] == ["127.0.0.1"]
            assert ask(port, query("nope.service.discovery.")).rcode() == dns.rcode.NXDOMAIN
        srv = udp(port, query("_web._tcp.service.discovery.", "SRV"))
        assert sorted(r.port for r in srv.answer[0]) == [8000, 8001]

    sent, runtime = serving(kind, body)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    with pytest.raises(ConnectionRefusedError):
        connect(ports[0])
    metrics = runtime.metrics.render()[0].decode()
    assert 'sd_dns_queries_total{transport="udp"} 3.0' in metrics
    assert 'sd_dns_queries_total{transport="tcp"} 2.0' in metrics


@pytest.mark.parametrize("kind", KINDS)
def test_udp_truncates_past_512_bytes_and_tcp_answers_whole(kind: str) -> None:
    def body(port: int) -> None:
        short = udp(port, query("_web._tcp.service.discovery.", "SRV"))
        assert short.flags & dns.flags.TC
        whole = tcp(port, query("_web._tcp.service.discovery.", "SRV"))
        assert not whole.flags & dns.flags.TC and len(whole.answer[0]) == 60

    serving(kind, body, instances=60)


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_and_responses_over_udp_do_not_stop_the_answers(kind: str) -> None:
    def body(port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(CLIENT_TIMEOUT)
            client.connect(("127.0.0.1", port))
            response = dns.message.make_response(query())
            junk_query = b"\x12\x34\x01\x00" + b"\xff" * 40  # QR clear, 65535 questions
            for junk in (b"", b"\x00", junk_query, response.to_wire(), b"\x00" * 5000):
                client.send(junk)
            good = query()
            client.send(good.to_wire())
            replies = []
            while not replies or replies[-1].id != good.id:
                replies.append(dns.message.from_wire(client.recv(65535)))
            # Only the two parseable-header junk packets got an error; the response nothing.
            assert [r.rcode() for r in replies[:-1]] == [dns.rcode.FORMERR] * 2
            assert replies[-1].rcode() == dns.rcode.NOERROR

    serving(kind, body)


@pytest.mark.parametrize("kind", KINDS)
def test_an_oversized_tcp_length_closes_the_connection(kind: str) -> None:
    def body(port: int) -> None:
        with connect(port) as client:
            client.sendall(b"\xff\xff" + b"\x00" * 100)
            assert client.recv(10) == b""
        with connect(port) as client:  # several queries on one connection still work
            client.sendall(framed(query()) + framed(query("nope.service.discovery.")))
            data = b""
            while data.count(b"service") < 2 or len(data) < 2:
                chunk = client.recv(4096)
                assert chunk
                data += chunk
        assert tcp(port, query()).rcode() == dns.rcode.NOERROR

    # An idle limit past the client's timeout: only the length can close the connection.
    serving(
        kind,
        body,
        SERVICE_DISCOVERY_DNS_MAX_TCP_QUERY_BYTES="512",
        SERVICE_DISCOVERY_DNS_TCP_IDLE_SECONDS="60",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_tcp_connections_are_capped_and_idle_ones_closed(kind: str) -> None:
    def body(port: int) -> None:
        held = [connect(port), connect(port)]
        for client in held:  # both admitted: each answers
            client.sendall(framed(query()))
            assert len(client.recv(4096)) > 2
        with connect(port) as third:  # over the cap: closed at once, the query unanswered
            assert closed_unanswered(third, framed(query()))
        for client in held:  # idle past SERVICE_DISCOVERY_DNS_TCP_IDLE_SECONDS: closed
            assert client.recv(10) == b""
            client.close()
        while True:  # the slots come back once both are counted out
            with connect(port) as again:
                again.sendall(framed(query()))
                if again.recv(4096):
                    break

    serving(
        kind,
        body,
        SERVICE_DISCOVERY_DNS_MAX_TCP_CONNECTIONS="2",
        SERVICE_DISCOVERY_DNS_TCP_IDLE_SECONDS="0.5",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_a_taken_port_fails_the_startup(kind: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = str(taken.getsockname()[1])
        sent, _ = serving(kind, lambda port: None, SERVICE_DISCOVERY_DNS_PORT=port)
    assert sent[0]["type"] == "lifespan.startup.failed"


@pytest.mark.parametrize("kind", KINDS)
def test_many_queries_in_one_write_are_all_answered_in_order(kind: str) -> None:
    """Answered a batch per turn of the loop (`TCP_BATCH`), none lost between batches."""

    def body(port: int) -> None:
        queries = [query() for _ in range(100)]
        with connect(port) as client:
            client.sendall(b"".join(framed(q) for q in queries))
            data = b""
            ids = []
            while len(ids) < len(queries):
                chunk = client.recv(65536)
                assert chunk, f"closed after {len(ids)} answers"
                data += chunk
                while len(data) >= 2 and len(data) >= 2 + int.from_bytes(data[:2], "big"):
                    size = int.from_bytes(data[:2], "big")
                    ids.append(dns.message.from_wire(data[2 : 2 + size]).id)
                    data = data[2 + size :]
            assert ids == [q.id for q in queries]

    serving(kind, body)


@pytest.mark.parametrize("kind", KINDS)
def test_a_tcp_client_that_does_not_read_its_answers_costs_a_bounded_amount(kind: str) -> None:
    """1,500 queries for a large SRV answer in one write, never read: the server answers
    until the client's buffers are full, then waits for it to read (or idle out), rather
    than queueing every answer (some 30 MB here) in memory."""
    grown: list[int] = []

    def body(port: int) -> None:
        request = framed(query("_web._tcp.service.discovery.", "SRV"))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.settimeout(CLIENT_TIMEOUT)
            client.connect(("127.0.0.1", port))
            tracemalloc.start()
            try:
                client.sendall(request * 1500)
                for _ in range(40):  # what the server holds as it answers, sampled
                    time.sleep(0.05)
                    grown.append(tracemalloc.get_traced_memory()[0])
            finally:
                tracemalloc.stop()

    serving(kind, body, instances=300)
    assert max(grown) < 8 * 2**20, f"{max(grown) / 2**20:.1f} MiB held for one client"
