"""No circle among the folders of the packages below `frontends/`.

A subfolder is a floor: `sd_core/cluster` and `sd_core/dns` build on the core's
root and the root never reaches up into them. Relative imports count (the
core uses them throughout), and so do imports inside functions, since a lazy
import still ties two folders together.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import sd_core
import sd_etcd
import service_discovery
from tests.import_scan import folder_circle, module_imports

PACKAGES = {
    package.__name__: Path(str(package.__file__)).parent
    for package in (sd_core, sd_etcd, service_discovery)
}


def _folder_graph(root: Path) -> dict[str, set[str]]:
    """Each folder of the package at `root` (`.` for its top level) and the folders it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).parts
        folder = relative[0] if len(relative) > 1 else "."
        targets = set()
        for name in module_imports(path, root):
            parts = name.split(".")
            if parts[0] == root.name:
                inner = len(parts) > 2 and (root / parts[1]).is_dir()
                targets.add(parts[1] if inner else ".")
        graph.setdefault(folder, set()).update(targets - {folder})
    return graph


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_circle_among_the_folders_of(package: str) -> None:
    graph = _folder_graph(PACKAGES[package])
    assert folder_circle(graph) == [], " -> ".join(folder_circle(graph))


def test_the_core_has_its_floors() -> None:
    graph = _folder_graph(PACKAGES["sd_core"])
    assert {"cluster", "dns"} <= set(graph)
    assert "." in graph["cluster"] and "." in graph["dns"]


def test_a_relative_import_up_a_folder_is_seen(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("from .sub import thing\n")
    (root / "sub" / "__init__.py").write_text("from ..base import Base\n")
    (root / "base.py").write_text("Base = 1\n")
    assert folder_circle(_folder_graph(root)) == [".", "sub", "."]
