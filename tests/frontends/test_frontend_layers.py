"""The floors of `frontends/`, checked on the source of every module.

- `runtime/` and `outbound/` import no event loop, no HTTP server and no
  framework (`outbound/` may use anyio, which runs on either loop);
- the loop folders (`quart_app/`, `trio_app/`) reach a server only through its
  public entry, and import no server package themselves;
- `sd_core` and `sd_etcd` import nothing of `frontends`;
- no two folders of `frontends/` import each other, directly or around a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import frontends
import sd_core
import sd_etcd
from tests.import_scan import file_imports, folder_circle, folder_graph, imports

FRONTENDS = Path(str(frontends.__file__)).parent
LOOPS = frozenset({"asyncio", "trio", "uvloop"})
SERVERS = frozenset({"hypercorn", "uvicorn", "h11", "httptools"})
FRAMEWORKS = frozenset({"quart", "werkzeug"})
#: What each loop-free folder may not import, by top-level package.
LOOP_FREE = {
    "runtime": LOOPS | SERVERS | FRAMEWORKS | {"anyio"},
    "outbound": LOOPS | SERVERS | FRAMEWORKS,
}
#: Upper floors a loop-free folder may not reach into.
UPPER = ("frontends.servers", "frontends.quart_app", "frontends.trio_app")
#: The one module of each server that a loop folder may name (install() and serve).
SERVER_ENTRIES = frozenset(
    {
        "frontends.servers.hypercorn.asyncio_server",
        "frontends.servers.hypercorn.trio_server",
        "frontends.servers.uvicorn.server",
    }
)


def _sources(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _forbidden(imported: set[str], packages: frozenset[str], upper: tuple[str, ...]) -> list[str]:
    return sorted(
        name for name in imported if name.split(".")[0] in packages or name.startswith(upper)
    )


def _server_internals(imported: set[str]) -> list[str]:
    return sorted(
        name
        for name in imported
        if name.split(".")[0] in SERVERS
        or (
            name.startswith("frontends.servers")
            and not any(name == e or name.startswith(e + ".") for e in SERVER_ENTRIES)
        )
    )


LOOP_FREE_MODULES = [
    pytest.param(path, forbidden, id=str(path.relative_to(FRONTENDS)))
    for folder, forbidden in LOOP_FREE.items()
    for path in _sources(FRONTENDS / folder)
]
LOOP_MODULES = [
    pytest.param(path, id=str(path.relative_to(FRONTENDS)))
    for folder in ("quart_app", "trio_app")
    for path in _sources(FRONTENDS / folder)
]
CORE_MODULES = [
    pytest.param(
        path, id=f"{package.__name__}/{path.relative_to(Path(str(package.__file__)).parent)}"
    )
    for package in (sd_core, sd_etcd)
    for path in _sources(Path(str(package.__file__)).parent)
]


def test_every_folder_has_modules() -> None:
    assert len(LOOP_FREE_MODULES) > 20 and len(LOOP_MODULES) > 10 and len(CORE_MODULES) > 20


@pytest.mark.parametrize(("path", "forbidden"), LOOP_FREE_MODULES)
def test_loop_free_folders_import_no_loop_server_or_framework(
    path: Path, forbidden: frozenset[str]
) -> None:
    bad = _forbidden(file_imports(path), forbidden, UPPER)
    assert bad == [], f"{path.relative_to(FRONTENDS)} imports {bad}"


@pytest.mark.parametrize("path", LOOP_MODULES)
def test_loop_folders_import_no_server_internals(path: Path) -> None:
    bad = _server_internals(file_imports(path))
    assert bad == [], f"{path.relative_to(FRONTENDS)} imports {bad}"


@pytest.mark.parametrize("path", CORE_MODULES)
def test_the_core_imports_no_frontend(path: Path) -> None:
    bad = sorted(name for name in file_imports(path) if name.split(".")[0] == "frontends")
    assert bad == [], f"{path.name} imports {bad}"


def test_no_circle_among_the_folders() -> None:
    graph = folder_graph(FRONTENDS)
    assert {"runtime", "outbound", "servers", "quart_app", "trio_app"} <= set(graph)
    assert folder_circle(graph) == [], " -> ".join(folder_circle(graph))


@pytest.mark.parametrize(
    ("graph", "circle"),
    [
        ({"runtime": {"outbound"}, "outbound": {"runtime"}}, ["outbound", "runtime", "outbound"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_the_scan_finds_a_circle(graph: dict[str, set[str]], circle: list[str]) -> None:
    assert folder_circle(graph) == circle


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio\n",
        "from trio import sleep\n",
        "import hypercorn.config\n",
        "from quart import Quart\n",
        "from frontends.servers.hypercorn import patches\n",
        "from frontends.quart_app.app import create_app\n",
    ],
)
def test_the_scan_catches_a_loop_free_module_reaching_up(source: str) -> None:
    assert _forbidden(imports(ast.parse(source)), LOOP_FREE["runtime"], UPPER)


@pytest.mark.parametrize(
    "source",
    [
        "from frontends.servers.hypercorn.patches import install\n",
        "import frontends.servers.direct.first_bytes\n",
        "from hypercorn.config import Config\n",
    ],
)
def test_the_scan_catches_a_loop_folder_reaching_into_a_server(source: str) -> None:
    assert _server_internals(imports(ast.parse(source)))


def test_the_scan_lets_a_loop_folder_name_a_server_entry() -> None:
    source = "from frontends.servers.uvicorn.server import serve\n"
    assert _server_internals(imports(ast.parse(source))) == []


#: Third-party packages whose objects only `servers/` may replace at run time.
PATCHABLE = SERVERS | FRAMEWORKS | LOOPS


def _from_patchable(node: ast.ImportFrom) -> bool:
    return node.level == 0 and (node.module or "").split(".")[0] in PATCHABLE


def _replacements(tree: ast.AST) -> list[str]:
    """Assignments to an attribute of something imported from `PATCHABLE` (and `setattr`
    calls on one): runtime replacements of a third-party object."""
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(
                (alias.asname or alias.name).split(".")[0]
                for alias in node.names
                if alias.name.split(".")[0] in PATCHABLE
            )
        elif isinstance(node, ast.ImportFrom) and _from_patchable(node):
            imported.update(alias.asname or alias.name for alias in node.names)
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = [t for t in node.targets if isinstance(t, ast.Attribute)]
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target] if isinstance(node.target, ast.Attribute) else []
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setattr":
            targets = node.args[:1]
        for target in targets:
            root = target
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in imported:
                found.append(f"line {node.lineno}")
    return found


OUTSIDE_SERVERS = [
    pytest.param(path, id=str(path.relative_to(FRONTENDS)))
    for path in _sources(FRONTENDS)
    if path.relative_to(FRONTENDS).parts[0] != "servers"
]


@pytest.mark.parametrize("path", OUTSIDE_SERVERS)
def test_only_servers_replace_third_party_objects(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    assert _replacements(tree) == [], f"{path.relative_to(FRONTENDS)} patches a server's object"


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio\nasyncio.start_server = None\n",
        "import hypercorn.trio.run\nhypercorn.trio.run.TCPServer = None\n",
        "from hypercorn.protocol.h11 import H11Protocol\nH11Protocol.handle = None\n",
        "from uvicorn import Server as S\nsetattr(S, 'serve', None)\n",
    ],
)
def test_the_scan_catches_a_replacement(source: str) -> None:
    assert _replacements(ast.parse(source))


def test_the_scan_finds_the_replacements_in_servers() -> None:
    """The scan sees the real ones: each of these modules replaces something."""
    for name in ("hypercorn/listeners.py", "hypercorn/patches.py", "hypercorn/http1_only.py"):
        path = FRONTENDS / "servers" / name
        assert _replacements(ast.parse(path.read_text())), name
