"""The client does not import the server: no module of `service_discovery` imports `frontends`.

The server package depends on the SDK, never the other way round, so that the
SDK's install stays small and the two cannot form an import circle. The console
script reaches ``serve`` through the entry point the server registers
(``service_discovery.commands``), not by importing it. Checked on the source,
where an import inside a function counts as much as one at the top, and in a
fresh interpreter that imports every SDK module.
"""

from __future__ import annotations

import ast
import json
import os
import textwrap
from pathlib import Path

import pytest

import service_discovery
from tests.import_scan import file_imports, imports
from tests.project_python import run_python

SERVER_PACKAGE = "frontends"
SDK_MODULES = sorted(Path(str(service_discovery.__file__)).parent.rglob("*.py"))


def _server_imports(found: set[str]) -> list[str]:
    return sorted(name for name in found if name.split(".")[0] == SERVER_PACKAGE)


def test_there_are_sdk_modules_to_check() -> None:
    assert {"cli.py", "client.py", "registry_http.py"} <= {path.name for path in SDK_MODULES}


@pytest.mark.parametrize("path", SDK_MODULES, ids=lambda path: path.name)
def test_no_sdk_module_imports_the_server_package(path: Path) -> None:
    assert _server_imports(file_imports(path)) == [], path.name


@pytest.mark.parametrize(
    "source",
    [
        "import frontends.cli\n",
        "from frontends import cli\n",
        "def serve():\n    from frontends.cli import main\n    return main\n",
        "try:\n    import frontends\nexcept ImportError:\n    pass\n",
        "importlib.import_module('frontends.cli')\n",
        "__import__('frontends')\n",
    ],
)
def test_the_scan_sees_each_way_of_importing_the_server(source: str) -> None:
    assert _server_imports(imports(ast.parse(source)))


def test_importing_every_sdk_module_loads_nothing_of_the_server() -> None:
    program = textwrap.dedent(
        """
        import importlib, json, pkgutil, sys
        import service_discovery
        for module in pkgutil.walk_packages(service_discovery.__path__, "service_discovery."):
            importlib.import_module(module.name)
        print(json.dumps(sorted(sys.modules)))
        """
    )
    finished = run_python("-c", program, env=os.environ)
    assert finished.returncode == 0, finished.stderr
    loaded: list[str] = json.loads(finished.stdout)
    assert "service_discovery.cli" in loaded
    assert _server_imports(set(loaded)) == []
