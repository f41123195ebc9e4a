"""Shutdown under clients that never read: the grace period is a deadline, not a wish.

A client that pipelines 500 `GET /openapi.json` and never reads fills the
socket buffers both ways; hypercorn 0.18 then waits on that write for ever
(its trio worker even under a shielded cancel scope), and neither frontend
exited within 30 s of SIGTERM with a 5 s grace. Now the snapshot is written
as soon as draining starts and the process exits, code 0, at the grace
deadline whatever is still open.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
from pathlib import Path

from reliability_support import (
    base_env,
    kept_socket,
    labelled_metric,
    register_instance,
    serving_on,
    wait_for,
)

#: Seconds of grace the server gets; short, so that the test is.
GRACE = 2.0

#: Clients pipelining requests they never read, and how many requests each.
NON_READERS = 3
PIPELINED = 500


def test_exit_at_the_grace_deadline_with_clients_that_never_read(
    frontend: str, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    env = base_env(
        SHUTDOWN_GRACE_SECONDS=str(GRACE),
        SERVICE_DISCOVERY_STATE_FILE=str(state),
        SERVICE_DISCOVERY_SNAPSHOT_INTERVAL_SECONDS="3600",  # only the shutdown writes it
    )
    pipelined = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * PIPELINED
    clients: list[socket.socket] = []
    with kept_socket() as sock, serving_on(frontend, env, sock) as server:
        try:
            register_instance(server.url, "keep", "k-1")
            for _ in range(NON_READERS):
                conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                conn.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    conn.send(pipelined)  # as much as the kernel takes; never read
                clients.append(conn)

            def openapi_answers() -> float:
                return labelled_metric(
                    server.url, "sd_http_requests_total", route="/openapi.json", status="200"
                )

            # Stuck: each connection's answers fill its buffers and stop coming.
            wait_for(lambda: openapi_answers() >= NON_READERS, 10, "the pipelines to be answered")
            assert not state.exists()
            start = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            code = server.proc.wait(timeout=30)
            elapsed = time.monotonic() - start
        finally:
            for conn in clients:
                conn.close()
        assert code == 0, server.describe()
        # The hard exit is armed for the grace deadline; the bound is
        # grace plus one second.
        assert elapsed < GRACE + 1.0, f"exited {elapsed:.1f} s after SIGTERM"
        snapshot = json.loads(state.read_text())
        assert "k-1" in json.dumps(snapshot), snapshot
        log = server.stderr()
        assert "event=draining" in log, log[-2000:]
        print(f"{frontend}: exit 0 {elapsed:.2f} s after SIGTERM; log tail:\n{log[-600:]}")
