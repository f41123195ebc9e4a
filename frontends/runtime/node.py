"""What a `Runtime` serves: one process's registry, or a cluster node, behind one interface.

The runtime calls the core the same way in both modes (answer a routed request,
run the timers, record a probe, drain the effects); what differs is behind a
`Node`, chosen once by `make_node` from the settings. `LocalNode` is the
one-process registry behind its `HttpApi`; the cluster one is
`outbound.cluster_member.ClusterMember` (a `ClusterNode` and its store driver).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from frontends.outbound.cluster_member import ClusterMember
from frontends.runtime.settings import Settings
from sd_core import (
    BlockingWait,
    HttpApi,
    HttpResponse,
    ProbeResult,
    Registry,
    RoutedRequest,
    __version__,
)
from sd_core.cluster.effects import ClusterEffect
from sd_core.events import Effect
from sd_core.http_api import PendingWrite
from sd_core.pages import Page

#: What a node's core may ask for: the registry's effects, and a cluster node's own.
NodeEffect = Effect | ClusterEffect
NodeResult = HttpResponse | BlockingWait | PendingWrite


class Node(Protocol):
    """The registry a runtime serves, and the calls that differ between the two modes."""

    @property
    def registry(self) -> Registry: ...
    @property
    def api(self) -> HttpApi: ...
    @property
    def keeps_state_file(self) -> bool:
        """Whether the state file applies (a cluster's state is in its store)."""
        ...

    def answer(
        self, routed: RoutedRequest, body: bytes, now: float, *, may_block: bool = True
    ) -> NodeResult: ...
    def on_timer(self, now: float) -> None: ...
    def next_deadline(self) -> float | None: ...
    def probe_result(self, result: ProbeResult, now: float) -> None: ...
    def drain_effects(self) -> Sequence[NodeEffect]: ...
    def route(self, effect: NodeEffect) -> bool:
        """Carry out an effect of the node's own (a store call); False: not one of those."""
        ...

    def hold_until(self, revision: int, now: float) -> bool:
        """Whether a stream resuming from `revision` waits for the node to reach it."""
        ...

    async def written(self, pending: PendingWrite) -> HttpResponse: ...
    async def run(self) -> None:
        """What the node runs beside the server until cancelled (nothing, for one process)."""
        ...


class Answer(Protocol):
    """`Node.answer`'s shape, for an implementation that binds the core's own method."""

    def __call__(
        self, routed: RoutedRequest, body: bytes, now: float, *, may_block: bool = True
    ) -> NodeResult: ...


class LocalNode:
    """One process: the registry and its `HttpApi`, with nothing beside them.

    The calls that run per request are the core's own methods, bound here, so a
    request goes from the runtime straight into the core (no frame of this class).
    """

    keeps_state_file = True

    def __init__(self, registry: Registry, api: HttpApi) -> None:
        self.registry = registry
        self.api = api
        self.answer: Answer = api.answer
        self.drain_effects: Callable[[], Sequence[NodeEffect]] = registry.drain_effects
        self.next_deadline: Callable[[], float | None] = registry.next_deadline
        self.on_timer: Callable[[float], None] = registry.on_timer

    def probe_result(self, result: ProbeResult, now: float) -> None:
        self.registry.record_probe(result, now)

    def route(self, effect: NodeEffect) -> bool:
        return False

    def hold_until(self, revision: int, now: float) -> bool:
        return False  # one process's index never runs ahead of itself

    async def written(self, pending: PendingWrite) -> HttpResponse:
        raise AssertionError("one process never parks a write")

    async def run(self) -> None:
        return None


def make_node(
    settings: Settings,
    *,
    frontend: str,
    clock: Callable[[], float],
    wall_clock: Callable[[], float],
    settle: Callable[[], None],
    metrics: Callable[[], tuple[bytes, str]],
    openapi: Callable[[], bytes],
    pages: dict[str, Page],
) -> Node:
    """The node the settings ask for: a cluster member with `settings.cluster`, else local."""
    if settings.cluster is not None:
        return ClusterMember(
            settings.cluster,
            settings.registry,
            frontend=frontend,
            clock=clock,
            # Read together: every node must stamp the same wall time for one instant.
            wall_offset=wall_clock() - clock(),
            settle=settle,
            secret=settings.secret,
            read_token=settings.read_token,
            metrics=metrics,
            openapi=openapi,
            pages=pages,
            # A held read is a parked blocking query or a watch stream: no more can wait.
            max_holds=settings.max_blocking_queries + settings.max_watch_streams,
        )
    now = clock()
    registry = Registry(settings.registry, now=now, wall_offset=wall_clock() - now)
    api = HttpApi(
        registry,
        secret=settings.secret,
        read_token=settings.read_token,
        frontend=frontend,
        version=__version__,
        metrics=metrics,
        openapi=openapi,
        pages=pages,
    )
    return LocalNode(registry, api)
