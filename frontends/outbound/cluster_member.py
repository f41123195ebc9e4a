"""Cluster mode for a `Runtime`: its `ClusterNode`, the store driver, the parked writes.

`ClusterMember` is the runtime's `Node` in cluster mode (see `runtime.node`): the
runtime calls it as it calls the one-process `LocalNode`, and this module holds what
cluster mode needs beside the core: a node built from the settings, a `StoreDriver` whose
reports go back into the node (each followed by the runtime's `settle`, as after every
core call), and the writes parked on `PendingWrite` until their `WriteDone`. Parking
uses `anyio.Event`, which works on both loops, so neither frontend changes for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from random import SystemRandom

import anyio

from frontends.outbound.cluster_settings import ClusterSettings
from frontends.outbound.etcd_client import EtcdClient
from frontends.outbound.log_lines import logfmt
from frontends.outbound.store_driver import StoreDriver
from sd_core import (
    BlockingWait,
    HttpApi,
    HttpResponse,
    ProbeResult,
    Registry,
    RegistryConfig,
    RoutedRequest,
    __version__,
)
from sd_core.cluster import (
    CONNECTING,
    OK,
    CloseWatch,
    ClusterConfig,
    ClusterEffect,
    ClusterNode,
    OpenWatch,
    StoreCall,
    StoreWentBack,
    WriteDone,
)
from sd_core.events import Effect
from sd_core.http_api import PendingWrite
from sd_core.pages import Page

log = logging.getLogger("sd.registry")
#: How long shutdown waits for the node lease's revoke before giving up on it.
LEAVE_TIMEOUT_SECONDS = 2.0


class ClusterMember:
    """One node's cluster side; `settle` is the runtime's (drain and route effects)."""

    keeps_state_file = False  # the store holds the state

    def __init__(
        self,
        cluster: ClusterSettings,
        config: RegistryConfig,
        *,
        frontend: str,
        clock: Callable[[], float],
        wall_offset: float,
        settle: Callable[[], None],
        secret: str,
        read_token: str | None,
        metrics: Callable[[], tuple[bytes, str]],
        openapi: Callable[[], bytes],
        pages: dict[str, Page],
        max_holds: int,
    ) -> None:
        self.settings = cluster
        self._clock = clock
        self._settle = settle
        self.node = ClusterNode(
            ClusterConfig(
                cluster.node_id,
                url=cluster.url,
                frontend=frontend,
                prefix=cluster.prefix,
                node_ttl=cluster.node_ttl,
                keepalive_interval=cluster.node_ttl / 3,
                resume_wait=cluster.resume_wait,
                max_holds=max_holds,
                stale_after=cluster.stale_after,
            ),
            config,
            now=clock(),
            wall_offset=wall_offset,
            random_bits=SystemRandom().getrandbits,
            secret=secret,
            read_token=read_token,
            version=__version__,
            metrics=metrics,
            openapi=openapi,
            pages=pages,
        )
        self.store = StoreDriver(EtcdClient(cluster), self, call_timeout=cluster.call_timeout)
        self._parked: dict[int, anyio.Event] = {}
        self._answers: dict[int, HttpResponse] = {}
        self._state = self.node.link.state

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Join the cluster and run the store driver until cancelled; then leave."""
        log.info(
            logfmt(
                "cluster_joining",
                node=self.settings.node_id,
                endpoints=",".join(self.settings.endpoints),
                prefix=self.settings.prefix,
            )
        )
        self.node.start(self._clock())
        self._settle()
        try:
            await self.store.run()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(LEAVE_TIMEOUT_SECONDS):
                await self._leave()

    async def _leave(self) -> None:
        """Revoke the node lease, so the other nodes take this node's probes at once."""
        self.node.stop(self._clock())
        for effect in self.node.drain_effects():
            if isinstance(effect, StoreCall):
                await self.store.call_once(effect)
        await self.store.client.aclose()
        log.info(logfmt("cluster_left", node=self.settings.node_id))

    # ------------------------------------------------------------ the core

    @property
    def registry(self) -> Registry:
        return self.node.registry

    @property
    def api(self) -> HttpApi:
        return self.node.api

    def answer(
        self, routed: RoutedRequest, body: bytes, now: float, *, may_block: bool = True
    ) -> HttpResponse | BlockingWait | PendingWrite:
        return self.node.answer(routed, body, now, may_block=may_block)

    def on_timer(self, now: float) -> None:
        self.node.on_timer(now)

    def next_deadline(self) -> float | None:
        return self.node.next_deadline()

    def probe_result(self, result: ProbeResult, now: float) -> None:
        self.node.probe_result(result, now)

    def hold_until(self, revision: int, now: float) -> bool:
        return self.node.hold_until(revision, now)

    def drain_effects(self) -> Sequence[Effect | ClusterEffect]:
        """The node's effects; the store state is logged here, also without effects
        (a watch's creation makes it ok)."""
        effects = self.node.drain_effects()
        self.state_changed()
        return effects

    # ------------------------------------------------------------ effects

    def route(self, effect: Effect | ClusterEffect) -> bool:
        """Carry out a cluster effect (store calls, watches, parked writes' answers)."""
        if isinstance(effect, StoreWentBack):
            log.error(
                logfmt(
                    "store_went_back",
                    synced_revision=effect.synced_revision,
                    store_revision=effect.store_revision,
                    action="view forgotten, listing the store afresh; clients re-register on 404",
                    cause="etcd lost its data (an empty data dir or an old backup)",
                )
            )
        elif isinstance(effect, WriteDone):
            parked = self._parked.pop(effect.token, None)
            if parked is not None:  # else the client went away meanwhile
                self._answers[effect.token] = effect.response
                parked.set()
        elif isinstance(effect, StoreCall | OpenWatch | CloseWatch):
            self.store.submit(effect)
        else:
            return False
        return True

    def state_changed(self) -> None:
        """Log the store state when it moves (connecting, ok, unavailable).

        Leaving `connecting` is logged only on reaching `ok`: between the first listing
        and the watch's creation the link says `unavailable` for a moment, which is no
        outage (a store that cannot be reached is logged by the driver, `store_problem`).
        """
        state = self.node.link.state
        if state == self._state:
            return
        before, self._state = self._state, state
        if state == OK:
            log.info(logfmt("store_state", state=state, endpoint=self.store.client.endpoint))
        elif before != CONNECTING:
            log.warning(logfmt("store_state", state=state, endpoint=self.store.client.endpoint))

    async def written(self, pending: PendingWrite) -> HttpResponse:
        """Wait for the parked write's answer (the node always sends one: the store's,
        a 503 after our call timeout, or its own after `write_wait`)."""
        # Registered before any other task runs: the answer comes from a later settle.
        event = self._parked[pending.token] = anyio.Event()
        try:
            await event.wait()
            return self._answers.pop(pending.token)
        finally:
            self._parked.pop(pending.token, None)
            self._answers.pop(pending.token, None)

    # ------------------------------------------------------------ store reports

    def answered(self, token: int, status: int, body: bytes) -> None:
        self.node.store_answered(token, status, body, self._clock())
        self._settle()

    def failed(self, token: int) -> None:
        self.node.store_failed(token, self._clock())
        self._settle()

    def watch_data(self, watch: int, data: bytes) -> None:
        self.node.watch_data(watch, data, self._clock())
        self._settle()

    def watch_ended(self, watch: int) -> None:
        self.node.watch_ended(watch, self._clock())
        self._settle()

    def problem(self, reason: str | None) -> None:
        """Why the store cannot be used (the driver logged it): shown on /health."""
        self.node.store_problem = reason
