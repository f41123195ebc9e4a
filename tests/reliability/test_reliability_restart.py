"""Restarts: a SIGKILLed registry comes back with its fleet; a corrupt state file is survivable.

`test_restart_without_loss` runs the registry with a state file and a 0.5 s
snapshot interval on a listening socket this process keeps, so the restarted
server inherits the very same socket (same URL; connections made while no
process serves it wait in the backlog, as behind a supervisor):

1. 100 instances are registered over HTTP; a load thread then heartbeats
   half of them and keeps re-registering one with new metadata (so a
   snapshot is due every interval) for the whole test, restart included;
2. once the snapshot covers the 100, and right after a fresh write, four SDK
   clients (`ServiceDiscoveryClient.register_service` + `start_heartbeat_loop`,
   0.5 s interval, on an asyncio loop in a thread) register "late" instances,
   and the server is SIGKILLed before the next snapshot can include them;
3. a new server starts on the same socket with the same state file: every
   instance of the snapshot is there at once (`unknown`, its heartbeat lease
   restarted, `registered_at` kept, the watch index above the saved one), and
   the late SDK instances are back within one heartbeat interval (+ slack) of
   the restart, through the SDK's own 404 -> register again.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from reliability_support import (
    AUTH,
    SECRET,
    assert_still_serving,
    base_env,
    kept_socket,
    wait_for,
)

from conformance.client import tls_context
from conformance.server_process import ServerProcess, start_server
from service_discovery import ServiceDiscoveryClient, ServiceRegistrationRequest

T = TypeVar("T")

HEARTBEAT_INTERVAL = 0.5
#: Allowed on top of one heartbeat interval for the late instances to be back.
RECOVERY_SLACK = 1.5
SNAPSHOT_INTERVAL = "0.5"

QUIET = [("rs-quiet", f"q-{n:02d}") for n in range(50)]  # registered once, then silent
BUSY = [("rs-busy", f"b-{n:02d}") for n in range(49)]  # heartbeated by the load thread
CHURN = ("rs-churn", "c-0")  # re-registered with new metadata: the index keeps moving
BASE = [*QUIET, *BUSY, CHURN]
LATE = [("rs-late", f"sdk-{n}") for n in range(4)]


def _body(service: str, instance: str, **extra: Any) -> dict[str, Any]:
    # Port 9 (discard): nothing listens, so a probe fails at once and stays local.
    return {
        "service_name": service,
        "instance_id": instance,
        "host": "127.0.0.1",
        "port": 9,
        **extra,
    }


def _parse(timestamp: str) -> float:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _snapshot_keys(path: Path) -> set[tuple[str, str]] | None:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return {(i["service_name"], i["instance_id"]) for i in document["instances"]}


def _identity(path: Path) -> tuple[int, int]:
    """Each snapshot is a new file renamed into place: a new inode (and mtime)."""
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def _listed(client: httpx.Client) -> dict[tuple[str, str], dict[str, Any]]:
    response = client.get("/v1/discovery/services")
    assert response.status_code == 200, response.text
    return {
        (i["service_name"], i["instance_id"]): i
        for instances in response.json()["services"].values()
        for i in instances
    }


class LoadThread(threading.Thread):
    """Heartbeats and re-registrations, non-stop, through the crash and the restart."""

    def __init__(self, url: str) -> None:
        super().__init__(name="registry-load", daemon=True)
        self.url = url
        self.halt = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.transport_errors = 0

    def run(self) -> None:
        with httpx.Client(
            base_url=self.url, headers=AUTH, timeout=3, verify=tls_context()
        ) as client:
            round_ = 0
            while not self.halt.is_set():
                round_ += 1
                try:
                    churn = _body(*CHURN, metadata={"round": str(round_)})
                    self.statuses[
                        client.post("/v1/discovery/register", json=churn).status_code
                    ] += 1
                    for service, instance in BUSY:
                        body = {"service_name": service, "instance_id": instance}
                        self.statuses[
                            client.post("/v1/discovery/heartbeat", json=body).status_code
                        ] += 1
                except httpx.TransportError:
                    self.transport_errors += 1
                    self.halt.wait(0.05)

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
        assert not self.is_alive(), "load thread did not stop"


class SdkFleet:
    """SDK clients heartbeating from an asyncio loop running in a thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sdk-fleet", daemon=True)
        self.clients: list[ServiceDiscoveryClient] = []
        self.instances: list[tuple[str, str]] = []
        self.thread.start()

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def prepare(self, instances: list[tuple[str, str]]) -> None:
        """Build the clients ahead of time (each builds an HTTP client: not free)."""

        async def go() -> None:
            self.clients = [
                ServiceDiscoveryClient(self.url, SECRET, timeout=5.0) for _ in instances
            ]

        self.instances = instances
        self._run(go())

    def register(self) -> None:
        """Register every prepared client at once, then start its heartbeat loop."""

        async def go() -> None:
            requests = [ServiceRegistrationRequest(**_body(s, i)) for s, i in self.instances]
            pairs = zip(self.clients, requests, strict=True)
            await asyncio.gather(*(client.register_service(r) for client, r in pairs))
            for client in self.clients:
                await client.start_heartbeat_loop(interval_seconds=HEARTBEAT_INTERVAL)

        self._run(go())

    def heartbeating(self) -> bool:
        return all(client.heartbeat_running for client in self.clients)

    def close(self) -> None:
        async def go() -> None:
            for client in self.clients:
                await client.aclose()

        try:
            self._run(go())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def test_restart_without_loss(frontend: str, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    env = base_env(
        SERVICE_DISCOVERY_STATE_FILE=str(state),
        SERVICE_DISCOVERY_SNAPSHOT_INTERVAL_SECONDS=SNAPSHOT_INTERVAL,
        SERVICE_REGISTRATION_TTL_SECONDS="60",
        HEALTH_CHECK_FAILURE_THRESHOLD="3",  # one failed probe after the restore: still unknown
        SELF_PRESERVATION_THRESHOLD="0",
    )
    servers: list[ServerProcess] = []
    fleet: SdkFleet | None = None
    load: LoadThread | None = None
    with kept_socket() as sock:
        try:
            first = ServerProcess(frontend, env, sock=sock)
            servers.append(first)
            first.wait_ready()
            with httpx.Client(base_url=first.url, headers=AUTH, verify=tls_context()) as client:
                for service, instance in BASE:
                    response = client.post("/v1/discovery/register", json=_body(service, instance))
                    assert response.status_code == 200, response.text
                before = _listed(client)
            load = LoadThread(first.url)
            load.start()
            base = set(BASE)
            wait_for(
                lambda: (keys := _snapshot_keys(state)) is not None and base <= keys,
                10,
                "the snapshot to cover the first 100 instances",
            )
            fleet = SdkFleet(first.url)
            fleet.prepare(LATE)
            # Right after a write, the next one is a whole interval away.
            written = _identity(state)
            wait_for(
                lambda: _identity(state) != written,
                5,
                "a fresh snapshot write",
                interval=0.002,
            )
            fleet.register()
            first.proc.kill()
            first.proc.wait(10)

            saved = json.loads(state.read_bytes())
            saved_keys = {(i["service_name"], i["instance_id"]) for i in saved["instances"]}
            heartbeats = {
                (i["service_name"], i["instance_id"]): i["last_heartbeat"]
                for i in saved["instances"]
            }
            assert base <= saved_keys
            assert not saved_keys & set(LATE), "harness: the late instances reached the snapshot"

            spawned = time.time()
            second = ServerProcess(frontend, env, sock=sock)
            servers.append(second)
            second.wait_ready()
            ready = time.monotonic()

            with httpx.Client(base_url=second.url, headers=AUTH, verify=tls_context()) as client:
                after = _listed(client)
                missing = saved_keys - set(after)
                assert not missing, f"lost in the restart: {sorted(missing)}"
                for key in saved_keys:
                    restored = after[key]
                    assert restored["status"] == "unknown", restored
                    # The heartbeat the snapshot saw or a later one (the load goes on
                    # through the restart), never the restart itself: a quiet instance
                    # shows the one before it. Its lease restarted (tests/core: full TTL).
                    shown = _parse(restored["last_heartbeat"])
                    assert shown > heartbeats[key] - 0.001, restored
                    if key in QUIET:
                        assert abs(shown - heartbeats[key]) < 0.001 < spawned - shown, restored
                    if key in before:
                        kept = _parse(before[key]["registered_at"])
                        assert abs(_parse(restored["registered_at"]) - kept) < 0.001, restored
                index = int(client.get("/v1/discovery/services").headers["x-discovery-index"])
                assert index > saved["global_index"], "the watch index went backwards"

                def late_back() -> bool:
                    return set(LATE) <= set(_listed(client))

                deadline = ready + HEARTBEAT_INTERVAL + RECOVERY_SLACK
                wait_for(
                    late_back,
                    max(0.0, deadline - time.monotonic()),
                    f"the SDK instances to register again within {HEARTBEAT_INTERVAL} s "
                    f"(+{RECOVERY_SLACK} s) of the restart",
                )
                assert fleet.heartbeating()
            assert_still_serving(second)
            load.stop()
            assert load.statuses, "the load thread never got an answer"
            assert all(code < 500 for code in load.statuses), load.statuses
            fleet.close()
            fleet = None
            second.stop()  # SIGTERM: exit 0
        finally:
            try:
                if fleet is not None:
                    fleet.close()
                if load is not None and load.is_alive():
                    load.stop()
            finally:
                for server in servers:
                    server.cleanup()  # kills whatever still runs


# ------------------------------------------------------------- corruption

CORRUPT = {
    "binary": bytes(range(256)) * 8,
    "deeply-nested": b"[" * 200_000,
}


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_corrupt_state_file_is_moved_aside(
    frontend: str, tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    state = tmp_path / "state.json"
    content = CORRUPT[kind]
    state.write_bytes(content)
    env = base_env(
        SERVICE_DISCOVERY_STATE_FILE=str(state), SERVICE_DISCOVERY_SNAPSHOT_INTERVAL_SECONDS="0.2"
    )
    server = start_server(frontend, env)  # raises if it does not come up
    try:
        with httpx.Client(base_url=server.url, headers=AUTH, verify=tls_context()) as client:
            assert client.get("/v1/discovery/services").json() == {"services": {}}
            aside = list(tmp_path.glob("state.json.corrupt-*"))
            assert len(aside) == 1, sorted(p.name for p in tmp_path.iterdir())
            assert aside[0].read_bytes() == content
            errors = [line for line in server.stderr().splitlines() if "level=ERROR" in line]
            assert len(errors) == 1 and "event=snapshot_corrupt" in errors[0], errors
            assert "Traceback" not in server.stderr()
            # The registry works and keeps snapshotting.
            response = client.post("/v1/discovery/register", json=_body("rs-new", "n-1"))
            assert response.status_code == 200, response.text
            wait_for(
                lambda: (keys := _snapshot_keys(state)) is not None and ("rs-new", "n-1") in keys,
                5,
                "a new snapshot after the corrupt one",
            )
        assert_still_serving(server)
        server.stop()
    finally:
        server.cleanup()


def test_a_registry_restarted_with_the_defaults_loses_no_instance(
    frontend: str, tmp_path: Path
) -> None:
    """No state-file setting at all: the per-user default keeps the fleet across a restart."""
    env = base_env(XDG_STATE_HOME=str(tmp_path))
    with kept_socket() as sock:
        port = sock.getsockname()[1]
        first = start_server(frontend, env, sock=sock)
        try:
            with httpx.Client(base_url=first.url, headers=AUTH, timeout=10) as client:
                for service, instance in BASE[:10]:
                    response = client.post("/v1/discovery/register", json=_body(service, instance))
                    assert response.status_code == 200, response.text
            first.stop()  # SIGTERM: the final snapshot goes to the default file
        finally:
            first.cleanup()
        state_file = tmp_path / "service-discovery" / f"registry-{port}.json"
        assert state_file.is_file(), sorted(tmp_path.rglob("*"))

        second = start_server(frontend, env, sock=sock)
        try:
            with httpx.Client(base_url=second.url, headers=AUTH, timeout=10) as client:
                listed = client.get("/v1/discovery/services").json()["services"]
            back = {(s, i["instance_id"]) for s, instances in listed.items() for i in instances}
            assert back == set(BASE[:10])
            second.stop()
        finally:
            second.cleanup()
