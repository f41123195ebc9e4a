"""sd_core and sd_etcd do no I/O and read no clock: checked on their source and on a fresh
interpreter. One scan serves both; each package has its own list of what it may not import."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import sd_core
import sd_etcd
from tests.import_scan import DYNAMIC_IMPORTS, file_imports, imports

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
# sd_etcd is stricter still: no date/time module at all, and no randomness.
ETCD_FORBIDDEN = frozenset(
    {"asyncio", "trio", "anyio", "httpx", "h11", "socket", "selectors", "threading", "time",
     "subprocess", "urllib", "http", "ssl", "datetime", "random"}
)  # fmt: skip
# Never pulled in, not even by sd_core's own dependencies (pydantic imports threading and
# socket, and the interpreter itself imports time at start-up).
NEVER_LOADED = frozenset({"asyncio", "trio", "quart", "hypercorn", "httpx", "anyio"})
CLOCK_CALLS = {
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
    "time": {"time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "process_time"},
}


def _modules(package: ModuleType) -> list[Path]:
    """Every module of `package`, its subpackages' (`cluster`, `dns`) included."""
    return sorted(Path(str(package.__file__)).parent.rglob("*.py"))


# (module path, what it may not import) for every module of each Sans-I/O package.
MODULES = [
    pytest.param(
        path,
        forbidden,
        id=f"{package.__name__}/{path.relative_to(Path(str(package.__file__)).parent)}",
    )
    for package, forbidden in ((sd_core, FORBIDDEN), (sd_etcd, ETCD_FORBIDDEN))
    for path in _modules(package)
]


def _run_python(program: str) -> Any:
    """Run `program` in a fresh interpreter and decode the JSON it prints."""
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(result.stdout)


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
    names = {path.name for path in _modules(sd_core)}
    assert {"registry.py", "http_api.py", "testing.py", "render.py"} <= names
    names = {path.name for path in _modules(sd_etcd)}
    assert {"memory.py", "watch.py", "requests.py", "responses.py"} <= names


@pytest.mark.parametrize(("path", "forbidden"), MODULES)
def test_module_imports_no_io_or_clock(path: Path, forbidden: frozenset[str]) -> None:
    imported = file_imports(path)
    bad = sorted(
        name for name in imported if name.split(".")[0] in forbidden or name in DYNAMIC_IMPORTS
    )
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize(("path", "forbidden"), MODULES)
def test_module_reads_no_clock(path: Path, forbidden: frozenset[str]) -> None:
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
        "from asyncio import sleep\n",
        "import httpx as h\n",
    ],
)
def test_the_import_scan_catches_forbidden_imports(source: str) -> None:
    imported = imports(ast.parse(source))
    assert any(name.split(".")[0] in FORBIDDEN for name in imported)
    assert any(name.split(".")[0] in ETCD_FORBIDDEN for name in imported)


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
    report = _run_python(program)
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
    seen = _run_python(program)
    assert ["sd_core.timers", "heapq", 0, True] in seen  # via sd_core.registry
    assert ["sd_core.render", "time", 0, False] in seen  # strftime's own import


def test_using_sd_etcd_loads_no_event_loop_or_http_library() -> None:
    program = textwrap.dedent(
        """
        import json, sys
        from sd_etcd import MemoryEtcd, put_request, parse_put, watch_request, WatchFramer
        etcd = MemoryEtcd()
        watch = etcd.open_watch(watch_request("/p/", prefix=True), now=0.0)
        parse_put(*etcd.handle(put_request("/p/a", "1"), now=1.0))
        WatchFramer().feed(watch.read())
        print(json.dumps(sorted(sys.modules)))
        """
    )
    loaded = {name.split(".")[0] for name in _run_python(program)}
    assert not loaded & {"asyncio", "trio", "anyio", "httpx", "h11", "socket", "threading"}
