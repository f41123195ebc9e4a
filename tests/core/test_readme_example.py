"""The fake-clock example of `sd_core.testing`, as a test that can be pasted into the README."""

from __future__ import annotations

import re
from pathlib import Path

import sd_core.testing
from sd_core.testing import SimulatedRegistry


def test_readme_example() -> None:
    """The code under "Test with a fake clock" in README.md, executed as written."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Test with a fake clock", 1)[1]
    source = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "SimulatedRegistry" in source and re.search(r"^assert ", source, re.MULTILINE)
    namespace: dict[str, object] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    sim = namespace["sim"]
    assert isinstance(sim, SimulatedRegistry)
    # What the example claims, checked once more from outside it.
    assert sim.status_of("game", "game-1") == "healthy"
    assert sim.status_of("game", "game-2") is None  # expired with game-3
    assert sim.clock.now == 181


def test_the_docstring_example_itself_runs() -> None:
    """The `::` block in sd_core/testing.py's docstring, executed as written."""
    doc = sd_core.testing.__doc__
    assert doc is not None
    block = doc.split("::", 1)[1]
    lines = [line for line in block.splitlines() if line.strip()]
    indent = min(len(line) - len(line.lstrip()) for line in lines)
    source = "\n".join(line[indent:] for line in lines)
    assert re.search(r"^assert ", source, re.MULTILINE), "the example should assert something"
    namespace = dict(vars(sd_core.testing))  # the example runs as if inside the module
    exec(compile(source, "sd_core/testing.py docstring", "exec"), namespace)
