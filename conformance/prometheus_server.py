"""Run a real Prometheus against the registry's HTTP SD endpoints.

The SD format is only proven by the consumer it exists for. This module finds
(or installs, from Debian's ``prometheus`` package) the binary, writes a temp
config and storage directory, starts it on a free loopback port, and reads
its HTTP API. Prometheus accepts a JSON config (JSON is YAML), so no YAML
library is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from conformance.client import tls_context

INSTALL_TIMEOUT_SECONDS = 600


def _run(args: list[str]) -> tuple[bool, str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, repr(exc)
    return done.returncode == 0, (done.stdout + done.stderr)[-2000:]


def find_or_install(command: str, package: str) -> tuple[str | None, str]:
    """The path of `command`, installing Debian's `package` if it is missing.

    Returns ``(path, "")`` or ``(None, reason)``; the caller skips with the reason.
    """
    found = shutil.which(command)
    if found:
        return found, ""
    if shutil.which("apt-get") is None:
        return None, f"{command} is not on PATH and apt-get is not available"
    ok, log = _run(["apt-get", "install", "-y", package])
    if not ok:
        updated, update_log = _run(["apt-get", "update"])
        if not updated:
            return None, f"apt-get update failed: {update_log}"
        ok, log = _run(["apt-get", "install", "-y", package])
    found = shutil.which(command)
    if not ok or not found:
        return None, f"apt-get install -y {package} failed: {log}"
    return found, ""


def find_or_install_prometheus() -> tuple[str | None, str]:
    """The prometheus binary's path (see `find_or_install`)."""
    return find_or_install("prometheus", "prometheus")


def free_port() -> int:
    """A loopback port free right now (Prometheus cannot inherit a socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class PrometheusServer:
    """One Prometheus process with its own temp config and storage.

    A subclass runs another program that reads the same config format and
    serves the same HTTP API (`conformance.victoria_metrics`): it only names
    itself and says how its command line spells the config, storage and
    listen address. `flags` are appended to the command line.
    """

    name = "prometheus"

    def __init__(self, binary: str, config: dict[str, Any], flags: Sequence[str] = ()) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix=f"conformance-{self.name}-")
        root = Path(self._dir.name)
        config_path = root / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        (root / "data").mkdir()
        self.log_path = root / f"{self.name}.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*self.command(binary, config_path, root / "data"), *flags],
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(base_url=self.url, timeout=5.0, verify=tls_context())

    def command(self, binary: str, config_path: Path, data: Path) -> list[str]:
        """The command line that reads `config_path`, stores in `data` and listens on `port`."""
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=info",
        ]

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-6000:]

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.log()}")
            try:
                if self.http.get("/-/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready within {timeout} s:\n{self.log()}")

    @contextmanager
    def ready(self) -> Iterator[PrometheusServer]:
        """This server once it answers, stopped on the way out (also when it never got
        ready): what a fixture yields."""
        try:
            self.wait_ready()
            yield self
        finally:
            self.stop()

    def targets(self) -> dict[str, Any]:
        response = self.http.get("/api/v1/targets")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        assert body.get("status") == "success", body
        data: dict[str, Any] = body["data"]
        return data

    def metric_sum(self, name: str, label_filter: str = "") -> float | None:
        """Sum of the samples of ``name`` in Prometheus's own /metrics.

        Only samples whose label text contains ``label_filter`` count; None
        when there is no such sample at all (a renamed metric must not pass
        as zero failures).
        """
        total: float | None = None
        for line in self.http.get("/metrics").text.splitlines():
            if not (line.startswith(name + " ") or line.startswith(name + "{")):
                continue
            if label_filter not in line:
                continue
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        try:
            self.http.close()
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            self._dir.cleanup()
