"""The fake-clock example of `sd_core.testing`, as a test that can be pasted into the README."""

from __future__ import annotations

import re

import sd_core.testing
from sd_core.testing import SimulatedRegistry


def test_readme_example() -> None:
    sim = SimulatedRegistry()
    for n in (1, 2, 3):
        sim.register("game", f"game-{n}", port=8000 + n)
    sim.advance(30)  # first probes pass: all healthy
    assert [i["status"] for i in sim.discover("game")] == ["healthy"] * 3

    sim.set_probe("game", "game-2", healthy=False)
    sim.advance(60)  # two failed probes: game-2 unhealthy
    assert [i["instance_id"] for i in sim.discover("game", healthy_only=True)] == [
        "game-1",
        "game-3",
    ]
    assert sim.status_of("game", "game-2") == "unhealthy"
    assert [i["instance_id"] for i in sim.discover("game")] == ["game-1", "game-2", "game-3"]


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
