"""`watch` as an operator runs it: a real process, one line per change, a clean end on a signal.

The watcher is `python -m frontends watch` (so the dispatch from `frontends`
is exercised too); changes are made with the CLI in process. Lines are read
by a thread into a queue, so a missing line fails the test instead of hanging.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import Ran

from tests.sdk.registry_process import SECRET, RegistryProcess

Cli = Callable[..., Ran]
Register = Callable[[str, str], None]
ROOT = Path(__file__).resolve().parents[2]


class Watcher:
    """A `watch` subprocess whose stdout lines arrive in a queue."""

    def __init__(self, registry: RegistryProcess, *args: str) -> None:
        env = {
            **os.environ,
            "SERVICE_DISCOVERY_URL": registry.url,
            "SERVICE_DISCOVERY_SECRET": SECRET,
            "PYTHONUNBUFFERED": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "frontends", "watch", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        self.reader = threading.Thread(
            target=lambda: [self.lines.put(line.rstrip("\n")) for line in stdout], daemon=True
        )
        self.reader.start()

    def line(self, timeout: float = 30.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no line from watch within {timeout} s; exit code {self.process.poll()}")

    def assert_ends_cleanly_on(self, signum: signal.Signals) -> None:
        """The signal a person or a supervisor sends ends the watch with exit 0, no traceback."""
        self.process.send_signal(signum)
        assert self.process.wait(30) == 0
        assert self.process.stderr is not None
        assert "Traceback" not in self.process.stderr.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.reader.join(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def start_watch(registry: RegistryProcess) -> Iterator[Callable[..., Watcher]]:
    """`start_watch(*args)` starts a watcher that is closed when the test ends."""
    with contextlib.ExitStack() as started:

        def start(*args: str) -> Watcher:
            return started.enter_context(contextlib.closing(Watcher(registry, *args)))

        yield start


def unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns() % 10_000_000}"


@pytest.fixture
def register(cli: Cli, refused_port: int) -> Register:
    """`register(service, instance)` through the CLI, at 127.0.0.1 on a port that refuses
    probes (so a status change, if any, is always to unhealthy)."""

    def run(service: str, instance: str) -> None:
        ran = cli("register", service, instance, "--host", "127.0.0.1", "--port", str(refused_port))
        assert ran.code == 0, ran.err

    return run


def test_watch_prints_each_change_and_ends_cleanly_on_sigterm(
    cli: Cli, register: Register, start_watch: Callable[..., Watcher], refused_port: int
) -> None:
    name = unique("watched")
    register(name, "w1")
    watcher = start_watch(name, "--json")

    first = json.loads(watcher.line())
    assert (first["event"], first["instance_id"]) == ("present", "w1")
    assert first["instance"]["port"] == refused_port

    register(name, "w2")
    added = json.loads(watcher.line())
    assert (added["event"], added["instance_id"], added["service_name"]) == ("added", "w2", name)

    assert cli("unregister", name, "w1").code == 0
    # Probes of the refusing port may turn w1 and w2 unhealthy in between.
    seen = [json.loads(watcher.line())]
    while seen[-1]["event"] != "removed":
        seen.append(json.loads(watcher.line()))
    assert (seen[-1]["instance_id"], seen[-1]["instance"]) == ("w1", None)
    for change in seen[:-1]:
        assert change["event"] == "status"
        assert change["changes"]["status"] == ["unknown", "unhealthy"]

    watcher.assert_ends_cleanly_on(signal.SIGTERM)


def test_watch_in_a_table_ends_cleanly_on_ctrl_c(
    register: Register, start_watch: Callable[..., Watcher], refused_port: int
) -> None:
    name = unique("watched")
    register(name, "t1")
    watcher = start_watch(name)
    # "12:03:04 name/t1 present 127.0.0.1:PORT unknown" (the time is local)
    assert watcher.line().split()[1:4] == [f"{name}/t1", "present", f"127.0.0.1:{refused_port}"]
    register(name, "t2")
    words = watcher.line().split()
    assert words[1:4] == [f"{name}/t2", "added", f"127.0.0.1:{refused_port}"]
    assert "\x1b[" not in " ".join(words)  # a pipe gets no colour

    watcher.assert_ends_cleanly_on(signal.SIGINT)


def test_watch_waits_for_a_service_that_does_not_exist_yet(
    register: Register, start_watch: Callable[..., Watcher]
) -> None:
    name = unique("not-yet")
    watcher = start_watch(name, "--json")
    register(name, "n1")
    # "present" if the watcher's first read came after the registration, else "added".
    first = json.loads(watcher.line())
    assert (first["event"] in ("present", "added"), first["instance_id"]) == (True, "n1")
    assert watcher.process.poll() is None


def next_line_of(watcher: Watcher, event: str, *, as_json: bool) -> Any:
    """The next line whose event is `event`, skipping probe results (the refusing port
    may turn an instance unhealthy at any moment)."""
    while True:
        line = watcher.line()
        parsed = json.loads(line) if as_json else line.split()
        if (parsed["event"] if as_json else parsed[2]) == event:
            return parsed
        assert (parsed["event"] if as_json else parsed[2]) == "status", line


def test_watch_prints_a_line_for_a_drain_and_for_its_end(
    cli: Cli, register: Register, start_watch: Callable[..., Watcher]
) -> None:
    name = unique("drained")
    register(name, "m1")
    as_json = start_watch(name, "--json")
    plain = start_watch(name)
    assert json.loads(as_json.line())["event"] == "present"
    assert plain.line().split()[2] == "present"

    assert cli("drain", name, "m1", "--reason", "deploy").code == 0
    drained = next_line_of(as_json, "maintenance", as_json=True)
    assert drained["instance_id"] == "m1"
    before, after = drained["changes"]["maintenance"]
    assert (before, after["reason"]) == (None, "deploy")
    assert drained["instance"]["maintenance"]["reason"] == "deploy"
    # "12:03:04 name/m1 maintenance on: deploy"
    assert next_line_of(plain, "maintenance", as_json=False)[1:] == [
        f"{name}/m1",
        "maintenance",
        "on:",
        "deploy",
    ]

    assert cli("drain", name, "m1", "--clear").code == 0
    cleared = next_line_of(as_json, "maintenance", as_json=True)
    assert cleared["changes"]["maintenance"][1] is None
    assert cleared["instance"]["maintenance"] is None
    assert next_line_of(plain, "maintenance", as_json=False)[1:] == [
        f"{name}/m1",
        "maintenance",
        "off",
    ]
