"""Which asyncio event loop runs the registry: asyncio's own or uvloop.

Both asyncio servers (hypercorn's asyncio worker and uvicorn) pick their loop
here, so the choice lives once and outside either server's folder."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def run_on(loop: str, main: Coroutine[Any, Any, None]) -> None:
    """Run `main` to the end on `loop`: `asyncio`, `uvloop`, or `auto` (uvloop when installed).

    Both asyncio servers (hypercorn's and uvicorn) pick their loop here.
    """
    use_uvloop = loop == "uvloop" or (loop == "auto" and uvloop_available())
    if use_uvloop:
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    else:
        asyncio.run(main)
