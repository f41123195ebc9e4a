"""The two example services find each other through a real registry, and leave cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO

import httpx
import pytest

from service_discovery import ServiceInstance

from .registry_process import ROOT, SECRET, RegistryProcess, running_registry


class ExampleProcess:
    def __init__(self, script: str, registry: RegistryProcess) -> None:
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        env = {
            **os.environ,
            "SERVICE_DISCOVERY_URL": registry.url,
            "SERVICE_DISCOVERY_SECRET": SECRET,
            "SERVICE_HEARTBEAT_INTERVAL": "0.5",
            "PORT": "0",
            "BIND_HOST": "127.0.0.1",
            "SERVICE_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            # A script's own directory heads sys.path; make the project importable
            # whether or not it is installed.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / script)],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-5000:]

    def close(self) -> None:
        self.log.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


@pytest.fixture
def registry() -> Iterator[RegistryProcess]:
    with running_registry("quart") as server:
        yield server


def healthy_instances(registry: RegistryProcess, service: str) -> list[ServiceInstance]:
    response = httpx.get(
        f"{registry.url}/v1/discovery/services/{service}/healthy",
        headers={"Authorization": f"Bearer {SECRET}"},
        timeout=5,
    )
    response.raise_for_status()
    return [ServiceInstance.model_validate(i) for i in response.json()["healthy_instances"]]


def wait_for(
    registry: RegistryProcess, service: str, examples: list[ExampleProcess]
) -> ServiceInstance:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for example in examples:
            if example.process.poll() is not None:
                pytest.fail(f"example exited early:\n{example.output()}")
        found = healthy_instances(registry, service)
        if found:
            return found[0]
        time.sleep(0.1)
    logs = "\n---\n".join(e.output() for e in examples)
    pytest.fail(f"{service} never became healthy:\n{logs}")


def test_examples_discover_each_other(registry: RegistryProcess) -> None:
    examples = [
        ExampleProcess("quart_service.py", registry),
        ExampleProcess("trio_service.py", registry),
    ]
    try:
        quart = wait_for(registry, "quart-example", examples)
        trio = wait_for(registry, "trio-example", examples)
        assert quart.metadata["framework"] == "quart"
        assert trio.metadata["framework"] == "trio"

        health = httpx.get(f"{quart.base_url}/health", timeout=5)
        assert health.status_code == 200
        assert health.json()["custom_checks"]["disk"]["status"] == "pass"
        assert httpx.get(f"{trio.base_url}/health", timeout=5).json()["service"] == "trio-example"

        from_quart = httpx.get(f"{quart.base_url}/peer", timeout=5)
        assert from_quart.status_code == 200, from_quart.text
        assert from_quart.json()["peer"]["instance"] == trio.instance_id

        deadline = time.monotonic() + 15  # the trio side learns of its peer by watching
        while True:
            from_trio = httpx.get(f"{trio.base_url}/peer", timeout=5)
            if from_trio.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert from_trio.status_code == 200, from_trio.text
        assert from_trio.json()["peer"]["instance"] == quart.instance_id
        assert "example_requests_total 1" in httpx.get(f"{quart.base_url}/metrics").text
    finally:
        codes = [e.stop() for e in examples]
        outputs = "\n---\n".join(e.output() for e in examples)
        for example in examples:
            example.close()
    assert codes == [0, 0], outputs
    # Both unregistered on SIGTERM, well before their TTL.
    assert healthy_instances(registry, "quart-example") == []
    assert healthy_instances(registry, "trio-example") == []
