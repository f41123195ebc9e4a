"""What a module imports, read from its source: the layering tests of several folders share it.

Reading the source sees every import, including those inside functions that a
run might never reach; a dynamic import is recorded by its function's name and,
when its argument is a literal, by the module it names too.
"""

from __future__ import annotations

import ast
from pathlib import Path

#: How a dynamic import shows in :func:`imports`, besides the module it names.
DYNAMIC_IMPORTS = ("__import__", "importlib.import_module")


def imports(tree: ast.AST) -> set[str]:
    """The absolute imports in `tree`: each module, and each ``module.name`` taken from it."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and (called := _called(node)):
            found.add(called)
            if node.args and isinstance(node.args[0], ast.Constant):
                found.add(str(node.args[0].value))
    return found


def file_imports(path: Path) -> set[str]:
    """:func:`imports` of one source file."""
    return imports(ast.parse(path.read_text(), filename=str(path)))


def _called(call: ast.Call) -> str:
    """Which of :data:`DYNAMIC_IMPORTS` `call` is, or ``""``."""
    if getattr(call.func, "id", "") == "__import__":
        return "__import__"
    if getattr(call.func, "attr", "") == "import_module":
        return "importlib.import_module"
    return ""


def module_imports(path: Path, root: Path) -> set[str]:
    """:func:`file_imports` of a module under package folder `root`, with its relative
    imports (``from ..views import Views``) resolved to absolute names too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = [root.name, *path.relative_to(root).parent.parts]
    found = imports(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = ".".join(package[: len(package) - node.level + 1])
            module = f"{base}.{node.module}" if node.module else base
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def folder_graph(root: Path) -> dict[str, set[str]]:
    """Each folder of the package at `root` (`.` for its top-level modules) and the other
    folders of it that its modules import, relative imports included."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).parts
        folder = relative[0] if len(relative) > 1 else "."
        targets = {
            parts[1] if len(parts) > 1 and (root / parts[1]).is_dir() else "."
            for parts in (name.split(".") for name in module_imports(path, root))
            if parts[0] == root.name
        }
        graph.setdefault(folder, set()).update(targets - {folder})
    return graph


def folder_circle(graph: dict[str, set[str]]) -> list[str]:
    """A circle of folders in `graph` (first and last the same), or [] when there is none."""
    done: set[str] = set()

    def walk(folder: str, trail: list[str]) -> list[str]:
        if folder in trail:
            return [*trail[trail.index(folder) :], folder]
        if folder in done:
            return []
        for target in sorted(graph.get(folder, ())):
            if found := walk(target, [*trail, folder]):
                return found
        done.add(folder)
        return []

    for folder in sorted(graph):
        if found := walk(folder, []):
            return found
    return []
