"""Writes the snapshot file every few seconds when something changed (trio)."""

from __future__ import annotations

import trio

from ..shared.runtime import Runtime


class Snapshotter:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def run(self) -> None:
        """Run until cancelled; the file write happens off the loop."""
        runtime = self._runtime
        while True:
            await trio.sleep(runtime.settings.snapshot_interval)
            snapshot = runtime.take_snapshot()
            if snapshot is not None:
                await trio.to_thread.run_sync(runtime.write_snapshot, snapshot)

    def final(self) -> None:
        """At shutdown: one last snapshot, written before the process exits."""
        snapshot = self._runtime.take_snapshot(force=True)
        if snapshot is not None:
            self._runtime.write_snapshot(snapshot)
