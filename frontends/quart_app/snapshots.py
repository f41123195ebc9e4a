"""Writes the snapshot file every few seconds when something changed (asyncio)."""

from __future__ import annotations

import asyncio

from frontends.runtime.runtime import Runtime


async def snapshot_loop(runtime: Runtime) -> None:
    """Run until cancelled; the snapshot is built on the loop, written off it."""
    while True:
        await asyncio.sleep(runtime.settings.snapshot_interval)
        snapshot = runtime.take_snapshot()
        if snapshot is not None:
            await asyncio.to_thread(runtime.write_snapshot, snapshot)
