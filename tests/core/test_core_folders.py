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
from tests.import_scan import folder_circle, folder_graph

PACKAGES = {
    package.__name__: Path(str(package.__file__)).parent
    for package in (sd_core, sd_etcd, service_discovery)
}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_circle_among_the_folders_of(package: str) -> None:
    graph = folder_graph(PACKAGES[package])
    assert folder_circle(graph) == [], " -> ".join(folder_circle(graph))


def test_the_core_has_its_floors() -> None:
    graph = folder_graph(PACKAGES["sd_core"])
    assert {"cluster", "dns"} <= set(graph)
    assert "." in graph["cluster"] and "." in graph["dns"]


def test_a_relative_import_up_a_folder_is_seen(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("from .sub import thing\n")
    (root / "sub" / "__init__.py").write_text("from ..base import Base\n")
    (root / "base.py").write_text("Base = 1\n")
    assert folder_circle(folder_graph(root)) == [".", "sub", "."]
