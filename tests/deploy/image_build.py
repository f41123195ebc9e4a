"""What `docker build .` would put in the image, built in a directory without Docker.

The Dockerfile's instructions are applied in order to a temporary root: `COPY` from
the build context that `.dockerignore` lets through, `WORKDIR`, `ENV`, and `RUN pip
install ...` in a fresh virtual environment (standing for the base image's Python,
with nothing of this repository installed). `VOLUME` paths are remapped into the
root, in the environment too. What the image then runs (`CMD`, `HEALTHCHECK`) runs
from the root with that environment, so a module the context or a `COPY` leaves out
fails here as it would in a container.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.dockerfile import (
    IgnoreRules,
    command,
    context_files,
    copy_into,
    env_pairs,
    exec_form,
    healthcheck_command,
    instructions,
)

#: Host variables a `RUN pip install` may need to reach an index (the image build
#: would have its own network; here it borrows the host's settings, and HOME for
#: pip's user configuration and cache).
_PIP_PASSTHROUGH = (
    *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"),
    *("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "HOME"),
)
#: `RUN` lines that set up the container's user; the build here keeps the caller's.
_USER_SETUP = ("useradd ", "adduser ", "groupadd ")


class IndexUnreachable(Exception):
    """`pip install` failed, and pip cannot fetch a package from any index at all."""


class NoVenv(Exception):
    """`python -m venv` failed (Debian's Python without python3-venv, for one)."""


@dataclass
class Image:
    """The built image: its file system, Python, settings and commands."""

    root: Path
    python: Path  # the virtual environment standing for the base image's Python
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] | None = None

    def path(self, inside: str) -> Path:
        """Where a path of the image lies in the root."""
        return self.root / inside.lstrip("/")

    def environment(self, **overrides: str) -> dict[str, str]:
        """The container's environment: the image's `ENV` with volume paths remapped,
        the base image's PATH, then `docker run -e` overrides."""
        env = {
            "PATH": f"{self.python / 'bin'}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root),
        }
        for name, value in self.env.items():
            for volume in self.volumes:
                if value == volume or value.startswith(volume.rstrip("/") + "/"):
                    value = str(self.path(value))
            env[name] = value
        env.update(overrides)
        return env

    @property
    def cwd(self) -> Path:
        return self.path(self.workdir)


def build(context: Path, into: Path) -> Image:
    """Apply `context`'s Dockerfile to a new root under `into`; raises on anything the
    build would fail on, or on an instruction this builder does not know."""
    rules = IgnoreRules((context / ".dockerignore").read_text())
    sent = context_files(context, rules)
    image = Image(root=into / "root", python=into / "python")
    image.root.mkdir(parents=True)
    venv = subprocess.run(
        [sys.executable, "-m", "venv", str(image.python)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if venv.returncode != 0:
        raise NoVenv(venv.stdout[-1000:] + venv.stderr[-1000:])
    for step in instructions((context / "Dockerfile").read_text()):
        keyword, arguments = step.keyword, step.arguments
        if keyword == "FROM":
            if not arguments.startswith("python:3"):
                raise ValueError(f"FROM {arguments}: the build here stands in for python:3 only")
        elif keyword == "ENV":
            image.env.update(env_pairs(arguments))
        elif keyword == "WORKDIR":
            image.workdir = posixpath.join(image.workdir, arguments)
            image.cwd.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            copy_into(
                arguments, context=context, sent=sent, image_root=image.root, workdir=image.workdir
            )
        elif keyword == "RUN":
            _run(image, arguments)
        elif keyword == "VOLUME":
            image.volumes += exec_form(arguments) or arguments.split()
            for volume in image.volumes:
                image.path(volume).mkdir(parents=True, exist_ok=True)
        elif keyword == "CMD":
            image.cmd = command(arguments)
        elif keyword == "HEALTHCHECK":
            image.healthcheck = healthcheck_command(arguments)
        elif keyword not in ("USER", "EXPOSE", "LABEL"):
            raise ValueError(f"{keyword} {arguments}: not known to the build here")
    return image


def _run(image: Image, arguments: str) -> None:
    """`RUN pip install ...` into the image's Python; user setup is skipped."""
    if arguments.startswith(_USER_SETUP):
        return
    if not arguments.startswith("pip install "):
        raise ValueError(f"RUN {arguments}: only pip install and user setup are known here")
    host = {name: os.environ[name] for name in _PIP_PASSTHROUGH if name in os.environ}
    host.update((k, v) for k, v in os.environ.items() if k.startswith("PIP_"))
    env = {**image.environment(), **host}
    env.update((k, v) for k, v in image.env.items() if k.startswith("PIP_"))
    # The image turns pip's cache off (no use in a layer); here the cache only saves
    # downloads on a second run and changes nothing that is installed.
    env.pop("PIP_NO_CACHE_DIR", None)
    done = subprocess.run(
        command(arguments), cwd=image.cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode == 0:
        return
    probe = subprocess.run(
        [str(image.python / "bin" / "pip"), "download", "--no-deps", "-d", "probe", "quart"],
        cwd=image.root.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if probe.returncode != 0:
        raise IndexUnreachable(probe.stdout[-1000:] + probe.stderr[-1000:])
    raise AssertionError(f"RUN {arguments} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
