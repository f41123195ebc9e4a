"""Process lifecycle: start-up, configuration errors, SIGTERM, token hygiene.

Every test here starts its own short-lived server, because each one is about
how a process begins or ends. Process managers stop services with SIGTERM
and treat a non-zero exit as a crash; a bad setting must fail fast with one
readable line, not a traceback that buries the variable's name.
"""

from __future__ import annotations

import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

import httpx
import pytest

from conformance.client import (
    api_for,
    assert_error,
    index_of,
    instance_body,
    make_client,
    poll_until,
)
from conformance.common import QUIET_INTERVAL, READ_TOKEN, SECRET
from conformance.fixture_types import Launcher
from conformance.server_process import ServerProcess

#: A process manager's patience: exit 0 within this long after SIGTERM.
SIGTERM_GRACE_SECONDS = 5.0


def _body(service: str = "life", instance: str = "i") -> dict[str, object]:
    return instance_body(service, instance, port=4000)


def test_fresh_registry_starts_at_index_1_and_sigterm_exits_0(launch: Launcher) -> None:
    server = launch({"HEALTH_CHECK_INTERVAL_SECONDS": QUIET_INTERVAL})
    with api_for(server.url, SECRET) as api:
        assert api.global_index() == 1, "indexes start at 1 when the registry starts"
        api.register_ok(_body())
        assert api.global_index() > 1
    started = time.monotonic()
    server.terminate()
    code = server.wait_exit(SIGTERM_GRACE_SECONDS)
    assert code is not None, f"still running {SIGTERM_GRACE_SECONDS} s after SIGTERM"
    assert code == 0, server.describe()
    assert time.monotonic() - started < SIGTERM_GRACE_SECONDS


def _held_get(url: str, index: int) -> tuple[httpx.Response, float]:
    with make_client(url, SECRET, timeout=90) as client:
        response = client.get(
            "/v1/discovery/services/life", params={"index": str(index), "wait": "60s"}
        )
        return response, time.monotonic()


def test_sigterm_answers_a_held_query_and_exits_0(launch: Launcher) -> None:
    server = launch({"HEALTH_CHECK_INTERVAL_SECONDS": QUIET_INTERVAL})
    with api_for(server.url, SECRET) as api:
        api.register_ok(_body())
        index = api.service_index("life")
        api.registered.clear()  # the server will be gone; nothing to clean up
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="held-at-shutdown") as pool:
        future = pool.submit(_held_get, server.url, index)
        wait_futures([future], timeout=0.5)
        assert not future.done(), "the query was not held"
        signalled = time.monotonic()
        server.terminate()
        response, answered = future.result(timeout=SIGTERM_GRACE_SECONDS + 5)
    assert answered - signalled < SIGTERM_GRACE_SECONDS, "held query not released at shutdown"
    assert response.status_code == 200, response.text
    assert index_of(response) == index
    assert [i["instance_id"] for i in response.json()["instances"]] == ["i"]
    code = server.wait_exit(SIGTERM_GRACE_SECONDS)
    assert code is not None, f"still running {SIGTERM_GRACE_SECONDS} s after SIGTERM"
    assert code == 0, server.describe()


def test_without_a_secret_a_development_token_is_printed_once(launch: Launcher) -> None:
    server = launch({"HEALTH_CHECK_INTERVAL_SECONDS": QUIET_INTERVAL}, with_tokens=False)
    poll_until(
        lambda: True if "development" in server.stderr().lower() else None,
        5.0,
        "a development-token notice on stderr",
    )
    stderr = server.stderr()
    notice = [line for line in stderr.splitlines() if "development" in line.lower()]
    assert notice, stderr
    with make_client(server.url) as client:
        assert_error(client.get("/v1/discovery/services"), 401, "unauthorized")
        working = []
        for candidate in set(re.findall(r"[A-Za-z0-9_\-.~+/=]{16,}", stderr)):
            client.headers["Authorization"] = f"Bearer {candidate}"
            if client.get("/v1/discovery/services").status_code == 200:
                working.append(candidate)
    assert len(working) == 1, f"expected one printed token that works, found {working}:\n{stderr}"
    assert stderr.count(working[0]) == 1, "the token must be printed once"
    assert working[0] not in server.stdout()
    with api_for(server.url, working[0]) as api:
        api.register_ok(_body())


def test_tokens_are_never_logged(launch: Launcher) -> None:
    server = launch({"HEALTH_CHECK_INTERVAL_SECONDS": QUIET_INTERVAL, "LOG_LEVEL": "DEBUG"})
    wrong = "conf-wrong-" + secrets.token_hex(16)
    with api_for(server.url, SECRET) as api:
        api.register_ok(_body())
        api.heartbeat_ok("life", "i")
        assert api.service("life").status_code == 200
        assert api.http.get("/v1/discovery/services/life", params={"index": "x"}).status_code == 422
        with api_for(server.url, READ_TOKEN) as reader:
            assert reader.prometheus().status_code == 200
            assert reader.register(_body()).status_code == 403
        with api_for(server.url, wrong) as intruder:
            assert intruder.services().status_code == 401
    server.stop()
    output = server.stderr() + server.stdout()
    for name, token in (("secret", SECRET), ("read token", READ_TOKEN), ("wrong token", wrong)):
        assert token not in output, f"the {name} appears in the server's output"


BAD_CONFIG = {
    "negative-interval": (
        {"HEALTH_CHECK_INTERVAL_SECONDS": "-1"},
        ["HEALTH_CHECK_INTERVAL_SECONDS"],
    ),
    "non-numeric-interval": (
        {"HEALTH_CHECK_INTERVAL_SECONDS": "abc"},
        ["HEALTH_CHECK_INTERVAL_SECONDS"],
    ),
    "timeout-over-interval": (
        {"HEALTH_CHECK_INTERVAL_SECONDS": "5", "HEALTH_CHECK_TIMEOUT_SECONDS": "10"},
        ["HEALTH_CHECK_TIMEOUT_SECONDS", "HEALTH_CHECK_INTERVAL_SECONDS"],
    ),
}


def _assert_refused(server: ServerProcess, names: list[str]) -> None:
    code = server.wait_exit(15.0)
    if code is None:
        server.kill()
        raise AssertionError(f"the server started despite bad configuration\n{server.describe()}")
    stderr = server.stderr()
    assert code != 0, f"exit code 0 for bad configuration\n{server.describe()}"
    assert "Traceback" not in stderr, f"a traceback instead of one line:\n{stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert any(name in lines[0] for name in names), f"{lines[0]!r} names none of {names}"


@pytest.mark.parametrize(("env", "names"), BAD_CONFIG.values(), ids=BAD_CONFIG)
def test_bad_configuration_exits_non_zero_with_one_line(
    launch: Launcher, env: dict[str, str], names: list[str]
) -> None:
    _assert_refused(launch(env, wait_ready=False), names)


def test_more_than_one_worker_is_refused(launch: Launcher) -> None:
    """Registry state lives in one process; two workers would be two registries."""
    _assert_refused(launch(extra_args=["--workers", "2"], wait_ready=False), ["workers"])
