"""Writes the snapshot file every few seconds when something changed (trio)."""

from __future__ import annotations

import trio

from frontends.runtime.runtime import Runtime


async def snapshot_loop(runtime: Runtime) -> None:
    """Run until cancelled; the snapshot is built on the loop, written off it."""
    while True:
        await trio.sleep(runtime.settings.snapshot_interval)
        snapshot = runtime.take_snapshot()
        if snapshot is not None:
            await trio.to_thread.run_sync(runtime.write_snapshot, snapshot)
