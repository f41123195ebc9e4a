"""Hostile clients of the API, and what a well-behaved client sees meanwhile.

    python -m tests.soak.harness.hostile_clients [--frontend quart|trio|both]
        [--seconds 12] [--scenario rapid_reset|slow_post|both]

Each scenario runs against a fresh registry (`python -m frontends serve
--fd N` on 127.0.0.1, `conformance.server_process`) for `--seconds`, while a
probe client sends `GET /health` and an authenticated
`GET /v1/discovery/services` every 200 ms (one keep-alive connection opened
0.5 s before the attack, 2 s timeout, reconnecting after a failure: a new
connection waits behind every attack connection in the accept queue, see
docs/reliability.md). It prints the probe client's success
rate and latency p50/p99 per scenario and frontend.

- `rapid_reset`: 10 attackers, each reconnecting in a loop and sending the
  HTTP/2 preface then 900 streams opened and reset (the CVE-2023-44487
  shape, built with `h2`, as `tests/reliability/test_reliability_http2.py`).
- `slow_post`: 1,000 anonymous `POST /v1/discovery/register` with
  `Content-Length: 60000`, each trickling its body at 1 byte/s; a
  connection the server closes is opened again (at most once a second).

Everything is loopback, bounded in count and time, and stops by itself;
every process and socket it opens is closed at the end. Run it from a
checkout of another commit (`git archive <commit> | tar -x -C DIR`, copy
this file in, run it there) to measure that commit's server.
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import h2.config
import h2.connection
import h2.errors

from conformance.health_checker import ProbeTally, probing
from conformance.server_process import kept_socket, start_server

SECRET = "bench-hostile-" + "0123456789abcdef" * 2
PROBE_INTERVAL = 0.2
PROBE_TIMEOUT = 2.0
RAPID_RESET_ATTACKERS = 10
RAPID_RESET_STREAMS = 900
SLOW_POSTS = 1000
SLOW_POST_HEAD = (
    b"POST /v1/discovery/register HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n"
)


def row(tally: ProbeTally) -> str:
    """answered | p50 ms | p99 ms, for the table."""
    total = tally.ok + tally.failed
    p50 = statistics.median(tally.times) * 1000 if tally.times else float("nan")
    return f"{tally.ok}/{total} ({100 * tally.ratio:.1f} %) | {p50:.1f} | {tally.p99() * 1000:.1f}"


def rapid_reset_payload(streams: int) -> bytes:
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    headers = [(":method", "GET"), (":path", "/health"), (":scheme", "http"), (":authority", "x")]
    for n in range(streams):
        connection.send_headers(2 * n + 1, headers, end_stream=True)
        connection.reset_stream(2 * n + 1, h2.errors.ErrorCodes.CANCEL)
    return connection.data_to_send()


def rapid_reset(port: int, stop: threading.Event) -> None:
    payload = rapid_reset_payload(RAPID_RESET_STREAMS)

    def attack() -> None:
        while not stop.is_set():
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
            ):
                sock.sendall(payload)

    threads = [threading.Thread(target=attack, daemon=True) for _ in range(RAPID_RESET_ATTACKERS)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(timeout=10)


def slow_post(port: int, stop: threading.Event) -> None:
    """`SLOW_POSTS` connections trickling a body at 1 byte/s; reopened when closed."""
    selector = selectors.DefaultSelector()
    opened_at: dict[socket.socket, float] = {}

    def open_one() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        opened_at[sock] = time.monotonic()
        selector.register(sock, selectors.EVENT_READ, "new")

    try:
        for _ in range(SLOW_POSTS):
            open_one()
        next_byte = time.monotonic()
        while not stop.is_set():
            for key, _ in selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # closed by the server: come back, at most once a second
                    selector.unregister(sock)
                    sock.close()
                    del opened_at[sock]
            now = time.monotonic()
            if now >= next_byte:
                next_byte = now + 1
                for sock in list(opened_at):
                    key = selector.get_key(sock)
                    try:
                        sock.send(SLOW_POST_HEAD if key.data == "new" else b" ")
                        selector.modify(sock, selectors.EVENT_READ, "sent")
                    except (BlockingIOError, OSError):
                        pass
                while len(opened_at) < SLOW_POSTS and time.monotonic() - now < 0.2:
                    open_one()
    finally:
        for sock in opened_at:
            sock.close()
        selector.close()


SCENARIOS: dict[str, Callable[[int, threading.Event], None]] = {
    "rapid_reset": rapid_reset,
    "slow_post": slow_post,
}


@contextlib.contextmanager
def registry(frontend: str) -> Iterator[tuple[str, int]]:
    env = {
        "SERVICE_DISCOVERY_SECRET": SECRET,
        "HEALTH_CHECK_INTERVAL_SECONDS": "86400",
        "HEALTH_CHECK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "LOG_LEVEL": "WARNING",
    }
    with kept_socket(backlog=4096) as sock:
        server = start_server(frontend, env, sock=sock)
        try:
            yield server.url, server.port
        finally:
            server.shutdown(timeout=10)  # an older server may not exit on SIGTERM: killed
            server.cleanup()


def run(frontend: str, scenario: str, seconds: float) -> ProbeTally:
    """`/health` and an authenticated read every `PROBE_INTERVAL` s during the attack."""
    auth = {"Authorization": f"Bearer {SECRET}"}
    paths = ("/health", "/v1/discovery/services")
    with (
        registry(frontend) as (url, port),
        probing(url, PROBE_INTERVAL, paths, timeout=PROBE_TIMEOUT, headers=auth) as tally,
    ):
        stop = threading.Event()
        attacker = threading.Thread(target=SCENARIOS[scenario], args=(port, stop), daemon=True)
        time.sleep(0.5)  # connected before the attack, as a load balancer's kept-alive pool
        attacker.start()
        time.sleep(seconds)
        stop.set()
        attacker.join(timeout=15)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frontend", choices=("quart", "trio", "both"), default="both")
    parser.add_argument("--scenario", choices=(*SCENARIOS, "both"), default="both")
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    frontends = ("quart", "trio") if args.frontend == "both" else (args.frontend,)
    scenarios = tuple(SCENARIOS) if args.scenario == "both" else (args.scenario,)
    print(
        "probe client: GET /health + authenticated GET /v1/discovery/services every "
        f"{PROBE_INTERVAL * 1000:.0f} ms, {PROBE_TIMEOUT:.0f} s timeout, {args.seconds:g} s a run"
    )
    print("| scenario | frontend | answered | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for scenario in scenarios:
        for frontend in frontends:
            print(f"| {scenario} | {frontend} | {row(run(frontend, scenario, args.seconds))} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
