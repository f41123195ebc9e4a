"""The image, built without Docker, starts the registry, serves, and stops cleanly.

`image_build.build` applies the Dockerfile to a temporary root (the build context
as `.dockerignore` lets it through, each `COPY`, the `pip install` in a fresh
virtual environment, the `ENV` with the volume remapped); the container's `CMD`
then runs from there with the image's environment, as `docker run -e` would set it.
A package the context or a `COPY` leaves out ends the `CMD` with
`ModuleNotFoundError`, as in a container. One build (most of its time is pip's)
serves every test of the module.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conformance.client import instance_body, poll_until
from conformance.prometheus_server import free_port
from tests.deploy.dockerfile import IgnoreRules
from tests.deploy.image_build import Image, IndexUnreachable, NoVenv, build

ROOT = Path(__file__).resolve().parents[2]
SECRET = "image-test-secret-0123456789abcdefghij"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    try:
        return build(ROOT, tmp_path_factory.mktemp("image"))
    except IndexUnreachable as error:
        pytest.skip(f"pip cannot reach a package index to install the image's packages: {error}")
    except NoVenv as error:
        pytest.skip(f"python -m venv cannot make the image's Python here: {error}")


@dataclass
class Container:
    """The image's `CMD`, running with its environment on a free loopback port."""

    image: Image
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['SERVICE_DISCOVERY_PORT']}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def container(image: Image, tmp_path: Path) -> Iterator[Container]:
    env = image.environment(
        SERVICE_DISCOVERY_HOST="127.0.0.1",
        SERVICE_DISCOVERY_PORT=str(free_port()),
        SERVICE_DISCOVERY_SECRET=SECRET,
    )
    log = tmp_path / "container.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            image.cmd, cwd=image.cwd, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    running = Container(image, env, process, log)
    try:

        def answered() -> bool | None:
            assert process.poll() is None, f"the CMD exited:\n{running.output()}"
            try:
                return httpx.get(f"{running.url}/health", timeout=2).status_code == 200 or None
            except httpx.TransportError:
                return None

        poll_until(answered, START_TIMEOUT_SECONDS, "the image's CMD to answer /health")
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_image_holds_every_package_the_server_imports(container: Container) -> None:
    """`serve` started at all: the fixture waited for `/health`."""
    health = httpx.get(f"{container.url}/health", timeout=5).json()
    assert health["status"] == "healthy", health


def test_the_healthcheck_probes_the_configured_port(container: Container) -> None:
    assert container.image.healthcheck is not None, "the image has no HEALTHCHECK"
    assert container.env["SERVICE_DISCOVERY_PORT"] != "3004"
    check = subprocess.run(
        container.image.healthcheck,
        cwd=container.image.cwd,
        env=container.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_register_read_and_sigterm_leave_the_state_on_the_volume(container: Container) -> None:
    headers = {"Authorization": f"Bearer {SECRET}"}
    with httpx.Client(base_url=container.url, headers=headers, timeout=5) as http:
        body = instance_body("image-check", "image-1", port=free_port())
        assert http.post("/v1/discovery/register", json=body).status_code == 200
        read = http.get("/v1/discovery/services/image-check")
        assert read.status_code == 200, read.text
        assert [i["instance_id"] for i in read.json()["instances"]] == ["image-1"]

    container.process.send_signal(signal.SIGTERM)
    assert container.process.wait(timeout=STOP_TIMEOUT_SECONDS) == 0, container.output()

    state_file = container.image.env["SERVICE_DISCOVERY_STATE_FILE"]
    assert any(state_file.startswith(v.rstrip("/") + "/") for v in container.image.volumes)
    snapshot = container.image.path(state_file)
    assert container.env["SERVICE_DISCOVERY_STATE_FILE"] == str(snapshot)
    assert "image-1" in json.dumps(json.loads(snapshot.read_text()))


# ------------------------------------------------------------ the .dockerignore matcher


@pytest.mark.parametrize(
    ("rules", "path", "sent"),
    [
        ("*", "README.md", False),
        ("*\n!README.md", "README.md", True),
        ("*\n!sd_core", "sd_core/registry.py", True),  # a parent directory matches
        ("*\n!sd_core", "sd_etcd/client.py", False),
        ("*\n!sd_core\n**/__pycache__", "sd_core/__pycache__/x.pyc", False),
        ("**/__pycache__", "__pycache__/x.pyc", False),  # `**/` matches no directory too
        ("**/*.pyc", "a/b/c.pyc", False),
        ("*.pyc", "a/c.pyc", True),  # `*` stays within one segment
        ("a/?.py", "a/b.py", False),
        ("a/?.py", "a/bc.py", True),
        ("/docs/", "docs/api.md", False),  # a leading / and a trailing / are cleaned away
        ("docs\n!docs/api.md", "docs/api.md", True),  # the last matching line wins
        ("!docs/api.md\ndocs", "docs/api.md", False),
        ("# a comment\n\n*", "x", False),
    ],
)
def test_dockerignore_rules_match_as_docker_matches_them(rules: str, path: str, sent: bool) -> None:
    assert (not IgnoreRules(rules).excluded(path)) is sent
