"""sd_etcd does no I/O and reads no clock: the same scan as sd_core's, on sd_etcd."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sd_etcd

PACKAGE_DIR = Path(sd_etcd.__file__).parent
MODULES = sorted(PACKAGE_DIR.glob("*.py"))
FORBIDDEN = frozenset(
    {"asyncio", "trio", "anyio", "httpx", "h11", "socket", "selectors", "threading", "time",
     "subprocess", "urllib", "http", "ssl", "datetime", "random"}
)  # fmt: skip


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            found.add("__import__")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            found.add("importlib.import_module")
    return found


def test_there_are_modules_to_check() -> None:
    assert {"memory.py", "watch.py", "requests.py", "responses.py"} <= {p.name for p in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_module_imports_no_io_clock_or_randomness(path: Path) -> None:
    imported = _imports(ast.parse(path.read_text(), filename=str(path)))
    bad = sorted(
        name
        for name in imported
        if name.split(".")[0] in FORBIDDEN or name in ("__import__", "importlib.import_module")
    )
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("source", ["import time\n", "from asyncio import sleep\n",
                                    "import httpx as h\n", "__import__('trio')\n"])  # fmt: skip
def test_the_scan_catches_forbidden_imports(source: str) -> None:
    assert _imports(ast.parse(source)) & (FORBIDDEN | {"__import__"})


def test_using_sd_etcd_loads_no_event_loop_or_http_library() -> None:
    program = textwrap.dedent(
        """
        import json, sys
        from sd_etcd import MemoryEtcd, put_request, parse_put, watch_request, WatchStream
        etcd = MemoryEtcd()
        watch = etcd.open_watch(watch_request("/p/", prefix=True), now=0.0)
        parse_put(*etcd.handle(put_request("/p/a", "1"), now=1.0))
        WatchStream().feed(watch.read())
        print(json.dumps(sorted(sys.modules)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = {name.split(".")[0] for name in __import__("json").loads(result.stdout)}
    assert not loaded & {"asyncio", "trio", "anyio", "httpx", "h11", "socket", "threading"}
