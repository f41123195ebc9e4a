"""Every repository path the README and docs/ name exists.

A reader follows these names to files (`examples/...`, `frontends/runtime/...`,
`docs/api.md#...`); one that names a file that is not there sends a new user
looking for nothing. Paths are taken from `code spans` and link targets: a word
that starts with a top-level entry of the repository and contains a `/` (or is
such an entry), without its `#anchor` or `::test` part. Patterns (`*`, `<port>`,
`{name}`, `...`) are not paths and are left out.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_SPANS = re.compile(r"`([^`\n]+)`|\]\(([^)\s]+)\)")
_NOT_A_PATH = re.compile(r"[*<>{}\[\]$]|\.\.\.")


def named_paths(doc: Path) -> set[str]:
    """The repository paths `doc` names, relative to the root."""
    top = {entry.name for entry in ROOT.iterdir() if not entry.name.startswith(".git")}
    found: set[str] = set()
    for code, link in _SPANS.findall(doc.read_text(encoding="utf-8")):
        for word in (code or link).split():
            path = word.split("#")[0].split("::")[0].rstrip(".,;:)")
            if not path or _NOT_A_PATH.search(path) or "://" in path:
                continue
            if link and doc.parent != ROOT and "/" not in path and path.endswith(".md"):
                found.add(f"{doc.parent.name}/{path}")  # a link from docs/ to a sibling page
            elif path.split("/")[0] in top and ("/" in path or path in top):
                found.add(path)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(ROOT).as_posix() for d in DOCS])
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    missing = sorted(path for path in named_paths(doc) if not (ROOT / path).exists())
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def test_the_check_finds_paths_at_all() -> None:
    assert "examples/docker-compose.yml" in named_paths(ROOT / "docs" / "sdk.md")
    assert "docs/api.md" in named_paths(ROOT / "README.md")
