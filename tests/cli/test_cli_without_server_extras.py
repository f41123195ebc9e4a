"""The operator commands run where only the SDK's dependencies are installed.

A subprocess makes the server extras unimportable (``sys.modules[name] =
None``), then runs the console script's `main`: `services` works and never
imports `frontends`; `serve` says in one line what to install. `serve` loads
the installed entry point, so this reads the metadata of the project's install.
"""

from __future__ import annotations

import os
import subprocess

from tests.project_python import run_python
from tests.sdk.registry_process import SECRET, RegistryProcess

WITHOUT_EXTRAS = """
import sys
for name in ("quart", "hypercorn", "trio", "prometheus_client"):
    sys.modules[name] = None
from service_discovery.cli import main
code = main(sys.argv[1:])
if sys.argv[1] != "serve":
    assert not any(m.split(".")[0] == "frontends" for m in sys.modules), "frontends imported"
raise SystemExit(code)
"""


def run_without_extras(registry: RegistryProcess, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SERVICE_DISCOVERY_URL": registry.url, "SERVICE_DISCOVERY_SECRET": SECRET}
    return run_python("-c", WITHOUT_EXTRAS, *argv, env=env)


def test_services_runs_without_the_server_extras(registry: RegistryProcess) -> None:
    finished = run_without_extras(registry, "services", "--json")
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.lstrip().startswith("[")


def test_serve_without_the_server_extras_names_what_to_install(registry: RegistryProcess) -> None:
    finished = run_without_extras(registry, "serve", "--host", "127.0.0.1", "--port", "1")
    assert finished.returncode == 2
    assert finished.stdout == ""
    assert "Traceback" not in finished.stderr
    last = finished.stderr.splitlines()[-1]
    assert last.startswith("service-discovery: serve needs the server extras (quart is missing)")
    assert "pip install 'service-discovery[server]'" in last
