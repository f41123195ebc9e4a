"""`install()`: every replacement this project makes inside hypercorn and h11 (and
asyncio's `start_server`, which hypercorn's asyncio worker calls), applied in one
place, after checking that the installed releases are the tested ones.

What each replacement does, and the upstream report it works around, is in its
own module's docstring: `http1_only` (HTTP/2 switch), `request_heads` (bounded
heads, a 431 in the API's shape), `streams` (a stream hears its client leave),
`patches` (closed connections released, trio's keep-alive timer),
`write_deadline` (a slow reader's deadline), `listeners` (where accepted
connections go). The entry points (`asyncio_server`, `trio_server`) call this
once before serving; `bench/bare_apps.py` calls it without a listener.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from frontends.servers.direct.asyncio_streams import FirstProtocol
from frontends.servers.direct.trio_streams import Connection
from frontends.servers.hypercorn.http1_only import refuse_http2_switch
from frontends.servers.hypercorn.listeners import accept_in_small_batches, hand_trio_connections_to
from frontends.servers.hypercorn.patches import (
    release_closed_connections,
    restart_idle_timers_at_once,
    spare_connections_with_waiting_requests,
)
from frontends.servers.hypercorn.request_heads import bound_hypercorn_heads
from frontends.servers.hypercorn.streams import streams_hear_clients_leave
from frontends.servers.hypercorn.write_deadline import bound_asyncio_writes, bound_trio_writes
from frontends.servers.tested import QUART, ReleaseRange, VersionLookup, require_tested

#: The releases the patches were tested on: pyproject.toml pins the same.
TESTED = (ReleaseRange("hypercorn", "0.18", "0.19"), ReleaseRange("h11", "0.16", "0.17"))


@dataclass(frozen=True)
class AsyncioWorker:
    """hypercorn's asyncio worker: accepts `backlog` deep, in small batches, and gives
    each connection to `first_protocol` first (the direct watch streams)."""

    backlog: int
    first_protocol: FirstProtocol
    #: It serves the Quart app, whose release is checked too.
    tested: tuple[ReleaseRange, ...] = (QUART,)

    def install(self) -> None:
        accept_in_small_batches(self.backlog, self.first_protocol)
        bound_asyncio_writes()


@dataclass(frozen=True)
class TrioWorker:
    """hypercorn's trio worker: gives each connection to `connection` first."""

    connection: Connection
    tested: tuple[ReleaseRange, ...] = ()

    def install(self) -> None:
        hand_trio_connections_to(self.connection)
        bound_trio_writes()


def install(
    worker: AsyncioWorker | TrioWorker | None,
    *,
    environ: Mapping[str, str] = os.environ,
    version: VersionLookup = importlib.metadata.version,
) -> None:
    """Check the installed hypercorn and h11, and Quart on asyncio (`UntestedServer` if one
    is untested and
    `SERVICE_DISCOVERY_ALLOW_UNTESTED_SERVER` is not 1), then apply every patch, and the
    given worker's own (none for a bare app)."""
    tested = TESTED + (worker.tested if worker is not None else ())
    require_tested(tested, environ=environ, version=version)
    for patch in PATCHES:
        patch()
    if worker is not None:
        worker.install()


#: The patches every hypercorn server needs, whichever worker it runs.
PATCHES: tuple[Callable[[], None], ...] = (
    refuse_http2_switch,
    bound_hypercorn_heads,
    streams_hear_clients_leave,
    release_closed_connections,
    restart_idle_timers_at_once,
    spare_connections_with_waiting_requests,
)
