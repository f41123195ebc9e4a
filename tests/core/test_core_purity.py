"""sd_core does no I/O and reads no clock: checked on its source and on a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sd_core

CORE_DIR = Path(sd_core.__file__).parent
MODULES = sorted(CORE_DIR.glob("*.py"))
FORBIDDEN = frozenset(
    {
        "asyncio",
        "trio",
        "quart",
        "hypercorn",
        "httpx",
        "socket",
        "selectors",
        "threading",
        "time",
        "anyio",
    }
)
# Never pulled in, not even by sd_core's own dependencies (pydantic imports threading and
# socket, and the interpreter itself imports time at start-up).
NEVER_LOADED = frozenset({"asyncio", "trio", "quart", "hypercorn", "httpx", "anyio"})
CLOCK_CALLS = {
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
    "time": {"time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "process_time"},
}


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(str(node.args[0].value))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
        ):
            found.add("importlib.import_module")
    return found


def _clock_calls(tree: ast.AST) -> list[str]:
    calls = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        owner_name = (
            owner.id
            if isinstance(owner, ast.Name)
            else owner.attr
            if isinstance(owner, ast.Attribute)
            else None
        )
        if owner_name in CLOCK_CALLS and node.func.attr in CLOCK_CALLS[owner_name]:
            calls.append(f"{owner_name}.{node.func.attr}() at line {node.lineno}")
    return calls


def test_there_are_modules_to_check() -> None:
    names = {path.name for path in MODULES}
    assert {"registry.py", "http_api.py", "testing.py", "render.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_module_imports_no_io_or_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    imported = _imports(tree)
    bad = sorted(
        name
        for name in imported
        if name.split(".")[0] in FORBIDDEN or name.endswith(".import_module")
    )
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_module_reads_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    assert _clock_calls(tree) == [], path.name


@pytest.mark.parametrize(
    "source",
    [
        "import time\n",
        "import asyncio.events\n",
        "from socket import socket\n",
        "from threading import Lock\n",
        "import anyio as a\n",
        "__import__('trio')\n",
    ],
)
def test_the_import_scan_catches_forbidden_imports(source: str) -> None:
    imported = _imports(ast.parse(source))
    assert any(name.split(".")[0] in FORBIDDEN for name in imported)


@pytest.mark.parametrize(
    "source",
    [
        "datetime.now()\n",
        "datetime.datetime.now(UTC)\n",
        "datetime.utcnow()\n",
        "date.today()\n",
        "time.monotonic()\n",
        "time.time()\n",
    ],
)
def test_the_clock_scan_catches_clock_reads(source: str) -> None:
    assert _clock_calls(ast.parse(source))


def test_importing_and_running_sd_core_loads_no_io_module() -> None:
    """In a fresh interpreter, with `__import__` watched: sd_core's own modules import none
    of the forbidden ones (its dependencies may: pydantic loads threading and socket), and
    nothing anywhere loads an event loop or HTTP library, even after the core has run."""
    program = textwrap.dedent(
        f"""
        import builtins, dis, json, sys
        FORBIDDEN = {sorted(FORBIDDEN)!r}
        IMPORT_NAME = dis.opmap["IMPORT_NAME"]
        direct = []
        real_import = builtins.__import__

        def watched(name, globals=None, locals=None, fromlist=(), level=0):
            importer = (globals or {{}}).get("__name__") or ""
            if level == 0 and importer.split(".")[0] == "sd_core":
                caller = sys._getframe(1)
                # an import statement of sd_core's own (C code such as datetime.strftime
                # imports "time" on its caller's behalf: not sd_core's doing)
                statement = caller.f_code.co_code[caller.f_lasti] == IMPORT_NAME
                if statement and name.split(".")[0] in FORBIDDEN:
                    direct.append([importer, name])
            return real_import(name, globals, locals, fromlist, level)

        builtins.__import__ = watched
        import sd_core
        from sd_core.testing import SimulatedRegistry

        sim = SimulatedRegistry()
        sim.register("game", "game-1", metadata={{"v": "1"}})
        sim.advance(120)
        sim.request("GET", "/v1/discovery/services")
        sim.request("GET", "/v1/discovery/prometheus")
        sim.request("POST", "/v1/discovery/register", json_body={{"port": 0}})
        sd_core.openapi_bytes("0.0.0")
        sd_core.judge_probe(sim.probes_run[0], 200, b'{{"status": "ok"}}')
        print(json.dumps({{"direct": direct, "loaded": sorted(sys.modules)}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    report = json.loads(result.stdout)
    assert report["direct"] == [], f"sd_core imports {report['direct']}"
    never = sorted(m for m in report["loaded"] if m.split(".")[0] in NEVER_LOADED)
    assert never == [], f"{never} loaded by sd_core or its dependencies"
    assert "sd_core.registry" in report["loaded"]


def test_the_import_watch_sees_sd_core_imports() -> None:
    """The watcher above attributes an import to the module that runs it."""
    program = textwrap.dedent(
        """
        import builtins, dis, json, sys
        seen = []
        real_import = builtins.__import__

        IMPORT_NAME = dis.opmap["IMPORT_NAME"]

        def watched(name, globals=None, locals=None, fromlist=(), level=0):
            caller = sys._getframe(1)
            statement = caller.f_code.co_code[caller.f_lasti] == IMPORT_NAME
            seen.append([(globals or {}).get("__name__") or "", name, level, statement])
            return real_import(name, globals, locals, fromlist, level)

        builtins.__import__ = watched
        import sd_core.registry
        from sd_core.render import iso_timestamp
        iso_timestamp(0.0)
        print(json.dumps(seen))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    seen = json.loads(result.stdout)
    assert ["sd_core.timers", "heapq", 0, True] in seen  # via sd_core.registry
    assert ["sd_core.render", "time", 0, False] in seen  # strftime's own import
