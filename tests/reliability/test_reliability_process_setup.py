"""Every server kind prepares its process the same way before serving.

`prepare_process` (`frontends/runtime/process_setup.py`) raises the open-file limit,
warns about a weak secret, throttles accept-error logs and sets the garbage
collector; each server's `serve` must call it, whatever HTTP server runs the
app (hypercorn on asyncio or trio, uvicorn). Its log lines show it ran.
"""

from __future__ import annotations

import pytest
from reliability_support import base_env, kept_socket, serving_on

from conformance.common import SINGLE_PROCESS_KINDS


@pytest.mark.parametrize("kind", SINGLE_PROCESS_KINDS)
def test_the_process_is_prepared_before_serving(kind: str) -> None:
    env = base_env(SERVICE_DISCOVERY_SECRET="short-secret")
    with kept_socket() as sock, serving_on(kind, env, sock) as server:
        log = server.stderr()
    assert "event=open_file_limit" in log, log[-2000:]
    assert "event=weak_secret" in log, log[-2000:]
    assert "event=garbage_collector thresholds=25000,5,100" in log, log[-2000:]
