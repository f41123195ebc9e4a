"""The node's link to the store: calls in flight, the listing, the watch, and whether
the view can be trusted (`state`).

Sans-I/O like the rest: a call is a `StoreCall` effect with a token and two
continuations kept here until the driver answers; the watch is one `OpenWatch` at a
time, its bytes framed by `sd_etcd.WatchFramer`. Time is only ever passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import NamedTuple

from sd_etcd import (
    EtcdError,
    EtcdUnavailable,
    GatewayRequest,
    KeyValue,
    ProgressNotify,
    WatchCanceled,
    WatchCreated,
    WatchEvents,
    WatchFramer,
    WatchMessage,
    parse_range,
    prefix_range_end,
    range_request,
    watch_request,
)
from sd_etcd.values import Header

from .effects import CloseWatch, ClusterEffect, OpenWatch, StoreCall, StoreWentBack
from .mirror import StoreMirror

Answered = Callable[[int, bytes, float], None]
Failed = Callable[[float], None]

CONNECTING = "connecting"
OK = "ok"
UNAVAILABLE = "unavailable"


class _Pending(NamedTuple):
    answered: Answered
    failed: Failed
    synced: int  # the view's revision when the call was sent: its answer cannot be older


@dataclass(eq=False)
class StoreLink:
    """Calls, listing and watch for one node; `changed` is told when `state` moves."""

    mirror: StoreMirror
    emit: Callable[[ClusterEffect], None]
    _: KW_ONLY
    page: int
    retry_interval: float
    changed: Callable[[], None]
    resync_at: float | None = None
    cluster_id: int = 0
    #: Listings of the whole prefix completed: 1 after the start, one more per
    #: compaction that outran the watch (shown on /health, so a re-list can be seen).
    listings: int = field(default=0, init=False)
    #: When the store was last heard from (an answer to a call, or watch bytes, progress
    #: notifications included); None before the first. Reads show how long ago.
    last_contact: float | None = field(default=None, init=False)
    #: Times the store was found to have gone back (lost its data) and was listed afresh.
    resets: int = field(default=0, init=False)
    _older: bool = field(default=False, init=False)  # a revision older than the view, seen
    _confirming: bool = field(default=False, init=False)
    _answering: int = field(default=0, init=False)  # the answered call's `synced`
    _calls: dict[int, _Pending] = field(default_factory=dict, init=False)
    _tokens: int = field(default=0, init=False)
    _watch: int = field(default=0, init=False)  # the current watch's number (0: none open)
    _stream: WatchFramer = field(default_factory=WatchFramer, init=False)
    _watch_ok: bool = field(default=False, init=False)
    _listed: bool = field(default=False, init=False)
    _calls_failing: bool = field(default=False, init=False)

    # ------------------------------------------------------------ state

    @property
    def state(self) -> str:
        """ok: the view follows the store; connecting: not yet listed; else unavailable."""
        if not self._listed:
            return CONNECTING
        return OK if self._watch_ok and not self._calls_failing else UNAVAILABLE

    def _set(self, *, watch_ok: bool | None = None, calls_failing: bool | None = None) -> None:
        before = self.state
        if watch_ok is not None:
            self._watch_ok = watch_ok
        if calls_failing is not None:
            self._calls_failing = calls_failing
        if self.state != before:
            self.changed()

    @property
    def doubtful(self) -> bool:
        """An answer was older than the view, and the check of whether the store went back
        has not come back yet: the view's revision means nothing until it has."""
        return self._older or self._confirming

    def saw(self, header: Header) -> None:
        """Any answer from the store: it is reachable, and names its cluster. A revision
        below one the view had reached when the call was sent means the store went back."""
        if 0 < header.revision < self._answering:
            self._older = True
        if header.cluster_id and header.cluster_id != self.cluster_id:
            self.cluster_id = header.cluster_id
            self.changed()
        self._set(calls_failing=False)

    # ------------------------------------------------------------ calls

    def call(self, request: GatewayRequest, answered: Answered, failed: Failed) -> None:
        self._tokens += 1
        self._calls[self._tokens] = _Pending(answered, failed, self.mirror.synced_revision)
        self.emit(StoreCall(self._tokens, request))

    def answered(self, token: int, status: int, body: bytes, now: float) -> None:
        if status == 200:
            self.last_contact = now
        pending = self._calls.pop(token, None)
        if pending is not None:
            self._answering = pending.synced
            try:
                pending.answered(status, body, now)
            finally:
                self._answering = 0
            if self._older:
                self._older = False
                self._suspect()

    def failed(self, token: int, now: float) -> None:
        pending = self._calls.pop(token, None)
        if pending is not None:
            self.store_error(EtcdUnavailable("no answer from the store"))
            pending.failed(now)

    def store_error(self, error: EtcdError) -> None:
        if isinstance(error, EtcdUnavailable):
            self._set(calls_failing=True)

    # ------------------------------------------------------------ listing

    def _suspect(self) -> None:
        """An answer carried a revision below the view's. One linearizable read decides
        (its revision is at least every revision written before it was sent, whichever
        member answers): still below, the store went back; else a member was behind."""
        if self._confirming:
            return
        self._confirming = True
        synced = self.mirror.synced_revision

        def answered(status: int, body: bytes, now: float) -> None:
            self._confirming = False
            try:
                revision = parse_range(status, body).header.revision
            except EtcdError as error:
                self.store_error(error)
                return
            if revision < synced:
                self._went_back(revision, now)

        def failed(now: float) -> None:
            self._confirming = False

        request = range_request(self.mirror.layout.prefix, prefix=True, limit=1, keys_only=True)
        self.call(request, answered, failed)

    def _went_back(self, revision: int, now: float) -> None:
        """The store's revision is below what the view had reached: it lost its data.
        Forget the view (instances vanish, indexes restart), list afresh, and say so
        once (`StoreWentBack`, logged as an error)."""
        self.emit(StoreWentBack(self.mirror.synced_revision, revision))
        self.resets += 1
        self.mirror.forget(now)
        self.relist(now)

    def relist(self, now: float) -> None:
        """List the whole prefix at one pinned revision, page by page, then watch."""
        self.resync_at = None
        self._close_watch()
        self._list_page(self.mirror.layout.prefix, 0, [])

    def _list_page(self, start: bytes, revision: int, kvs: list[KeyValue]) -> None:
        end = prefix_range_end(self.mirror.layout.prefix)
        request = range_request(start, range_end=end, revision=revision, limit=self.page)

        def answered(status: int, body: bytes, now: float) -> None:
            try:
                result = parse_range(status, body)
            except EtcdError as error:  # compacted under us, or unavailable: start over
                self.store_error(error)
                self._retry(now)
                return
            self.saw(result.header)
            kvs.extend(result.kvs)
            pinned = revision or result.header.revision
            if result.more and result.kvs:
                self._list_page(result.kvs[-1].key + b"\0", pinned, kvs)
                return
            self.mirror.load(kvs, pinned, now)
            self.listings += 1
            self._listed = True
            self._open_watch()

        self.call(request, answered, self._retry)

    # ------------------------------------------------------------ watch

    def _open_watch(self) -> None:
        self._close_watch()
        self._watch += 1
        self._stream = WatchFramer()
        request = watch_request(
            self.mirror.layout.prefix,
            prefix=True,
            start_revision=self.mirror.synced_revision + 1,
            progress_notify=True,
        )
        self.emit(OpenWatch(self._watch, request))

    def _close_watch(self) -> None:
        if self._watch:
            self.emit(CloseWatch(self._watch))
            self._watch = 0
        self._set(watch_ok=False)

    def _retry(self, now: float) -> None:
        """The watch or the listing broke: stale until a retry succeeds."""
        self._close_watch()
        if self.resync_at is None:
            self.resync_at = now + self.retry_interval

    def resync(self, now: float) -> None:
        """The retry timer: resume the watch after the last revision seen, or list."""
        self.resync_at = None
        if self._listed:
            self._open_watch()
        else:
            self.relist(now)

    def watch_data(self, watch: int, data: bytes, now: float) -> bool:
        """Bytes of watch `watch`; True when the view moved."""
        if watch != self._watch:
            return False
        self.last_contact = now
        try:
            messages = self._stream.feed(data)
        except EtcdError:
            self._retry(now)
            return False
        return self._messages(messages, now)

    def watch_ended(self, watch: int, now: float) -> bool:
        if watch != self._watch:
            return False
        messages = self._stream.end()
        moved = self._messages(messages, now)
        if watch == self._watch:
            self._watch = 0
            self._retry(now)
        return moved

    def _messages(self, messages: list[WatchMessage], now: float) -> bool:
        moved = False
        for message in messages:
            if isinstance(message, WatchEvents):
                self.mirror.apply_events(message.events, message.header.revision, now)
                moved = True
            elif isinstance(message, ProgressNotify):
                if message.revision < self.mirror.synced_revision:
                    self._suspect()
                    continue
                self.mirror.progress(message.revision)
                moved = True
            elif isinstance(message, WatchCreated):
                # Created at the store's current revision, which is never below what
                # the view saw before: if it is, the store lost its data.
                if 0 < message.header.revision < self.mirror.synced_revision:
                    self._suspect()
                self.saw(message.header)
                self._set(watch_ok=True)
            elif isinstance(message, WatchCanceled):
                if message.compact_revision is not None:
                    self.relist(now)  # history is gone: list again, diff, watch on
                else:
                    self._retry(now)
                return moved
            else:  # WatchError, WatchClosed: the stream is over
                self._retry(now)
                return moved
        return moved
