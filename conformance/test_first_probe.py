"""A new instance is probed at once: visible to healthy-only readers within seconds.

On the default 30 s interval, waiting for an instance's phase left a fresh
deploy out of `/healthy` for up to half a minute. The registry now runs a new
(or re-addressed) instance's first probe at once, as Consul runs a new check,
and retries a failed first probe after 1, 2, 4 ... s, so an instance that
registers a moment before it listens is healthy within seconds too.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from conformance.client import api_for, instance_body
from conformance.common import SECRET, unique_name
from conformance.fixture_types import Launcher, MakeFake

#: The issue's bound, on loopback, from the registration's answer to `healthy`.
HEALTHY_WITHIN_SECONDS = 2.0


def test_registration_to_healthy_on_the_default_interval(launch: Launcher, fake: MakeFake) -> None:
    server = launch({})  # every probe setting at its default: a 30 s interval
    peer = fake()
    service = unique_name("first-probe")
    with api_for(server.url, SECRET) as api:
        api.register_ok(instance_body(service, "fresh", port=peer.port, health_endpoint="/ok"))
        registered = time.monotonic()
        healthy: list[str] = []
        while time.monotonic() - registered < HEALTHY_WITHIN_SECONDS + 5:
            body = api.healthy(service).json()
            healthy = [i["instance_id"] for i in body["healthy_instances"]]
            if healthy:
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - registered
    assert healthy == ["fresh"], f"still not healthy after {elapsed:.2f} s"
    assert elapsed < HEALTHY_WITHIN_SECONDS, f"healthy only after {elapsed:.2f} s"
    assert peer.hits("/ok") == 1, "more than the one first probe on a 30 s interval"


#: A generous bound, from the port listening to `healthy` (the retries make it about
#: 1.5 s here); the scheduled probe of a one-hour interval almost never comes this soon.
LISTENING_TO_HEALTHY_SECONDS = 10.0


@contextlib.contextmanager
def _port_listening_later() -> Iterator[tuple[int, threading.Event]]:
    """A loopback port that refuses connections until the event is set, then answers 200."""
    listen = threading.Event()
    stop = threading.Event()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))

        def serve() -> None:
            listen.wait()
            if stop.is_set():
                return
            sock.listen(16)
            sock.settimeout(0.1)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    conn, _ = sock.accept()
                    with conn:
                        conn.settimeout(2)
                        with contextlib.suppress(OSError):
                            conn.recv(65536)
                            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield sock.getsockname()[1], listen
        finally:
            stop.set()
            listen.set()
            thread.join(5)


def test_an_instance_that_listens_after_registering_is_healthy_within_seconds(
    launch: Launcher,
) -> None:
    server = launch({"HEALTH_CHECK_INTERVAL_SECONDS": "3600"})
    service = unique_name("late-listener")
    with _port_listening_later() as (port, listen), api_for(server.url, SECRET) as api:
        api.register_ok(instance_body(service, "late", port=port))
        time.sleep(1.5)  # the first probe, at once, was refused
        listen.set()
        listening = time.monotonic()
        healthy: list[str] = []
        while not healthy and time.monotonic() - listening < LISTENING_TO_HEALTHY_SECONDS:
            time.sleep(0.05)
            body = api.healthy(service).json()
            healthy = [i["instance_id"] for i in body["healthy_instances"]]
    assert healthy == ["late"], "not healthy long after the port listened"
