"""One registered instance: its description, health bookkeeping and render cache.

The record owns its cache of rendered bytes: `render` fills the three
`rendered_*` slots, and only `forget_rendered` empties them, so the rule "a
shown field changed, so its bytes go" is written once, here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .checks import CheckType
from .maintenance import Maintenance
from .models import RegisterRequest
from .status import Status

__all__ = [
    "InstanceSnapshot",
]


#: How a rendered tail starts: the metadata object follows (see `render.instance_json`).
_METADATA_FIELD = ',"metadata":'
_DECODER = json.JSONDecoder()


def unit_load(load: float) -> float:
    """A load as the registry keeps it: a float in 0..1 (NaN counts as 0)."""
    value = float(load)
    return min(1.0, max(0.0, value)) if value == value else 0.0


@dataclass(frozen=True, slots=True)
class InstanceSnapshot:
    """A copy of an instance's fields at one moment, for tests and tooling.

    Frozen and detached from the registry: holding one changes nothing, and
    it does not follow later changes.
    """

    service_name: str
    instance_id: str
    host: str
    port: int
    health_endpoint: str
    metadata: Mapping[str, str]
    load: float
    status: Status
    registered_at: float
    last_heartbeat: float
    last_health_check: float | None
    unhealthy_since: float | None
    generation: int
    probe_due: float
    check: CheckType = CheckType.HTTP
    maintenance: Maintenance | None = None
    tags: tuple[str, ...] = ()


class Instance:
    """Mutable record owned by the registry; never handed to callers as-is.

    `__slots__` keeps 100,000 of them small. Times are the core's monotonic
    seconds; the renderer turns them into wall-clock timestamps.
    """

    __slots__ = (
        "_metadata",
        "check",
        "failures",
        "generation",
        "health_endpoint",
        "host",
        "instance_id",
        "last_health_check",
        "last_heartbeat",
        "lease_from",
        "load",
        "load_at_rise",
        "maintenance",
        "port",
        "probe_due",
        "probe_in_flight",
        "probe_rephase",
        "probe_retry",
        "registered_at",
        "removed",
        "rendered_json",
        "rendered_tail",
        "rendered_target",
        "retry_delay",
        "retry_due",
        "service_name",
        "status",
        "successes",
        "tags",
        "unhealthy_since",
    )

    def __init__(
        self,
        service_name: str,
        instance_id: str,
        host: str,
        port: int,
        health_endpoint: str,
        metadata: dict[str, str],
        load: float,
        now: float,
        check: CheckType = CheckType.HTTP,
        tags: tuple[str, ...] = (),
    ) -> None:
        self.service_name = service_name
        self.instance_id = instance_id
        self.host = host
        self.port = port
        self.health_endpoint = health_endpoint
        self._metadata: dict[str, str] | None = metadata
        self.tags = tags
        self.load = load
        self.load_at_rise = load
        self.check = check
        self.maintenance: Maintenance | None = None
        self.status = Status.UNKNOWN
        self.registered_at = now
        self.last_heartbeat = now
        # When its TTL started running: its last heartbeat, except after a restore,
        # which gives a full TTL from the restart while showing the real heartbeat.
        self.lease_from = now
        self.last_health_check: float | None = None
        self.successes = 0
        self.failures = 0
        self.unhealthy_since: float | None = None
        self.generation = 0
        self.probe_due = 0.0
        self.probe_in_flight = False
        self.probe_rephase = False
        # First-probe retries (see `Timers.retry_first`): the next delay (0: none, it
        # passed a probe), the retry's due time (-1: none) and whether the probe in
        # flight is such a retry (its failure does not count toward the threshold).
        self.retry_delay = 0.0
        self.retry_due = -1.0
        self.probe_retry = False
        self.removed = False
        # Rendered bytes (see the module docstring): the instance's JSON
        # object, its Prometheus target group, and the encoded metadata and
        # registered_at that only a re-registration changes. Large ones are
        # views into a cached body rather than copies (`render.share_fragments`).
        self.rendered_json: bytes | memoryview | None = None
        self.rendered_target: bytes | memoryview | None = None
        self.rendered_tail: bytes | memoryview | None = None

    @classmethod
    def registered(cls, request: RegisterRequest, now: float, generation: int) -> Instance:
        """A new instance as `request` describes it, registered at `now`."""
        load = request.load_percentage
        instance = cls(
            request.service_name,
            request.instance_id,
            request.host,
            request.port,
            request.health_endpoint,
            dict(request.metadata),
            0.0 if load is None else unit_load(load),
            now,
            CheckType(request.check.type),
            request.tags,
        )
        instance.generation = generation
        return instance

    @property
    def metadata(self) -> dict[str, str]:
        """Its metadata (a fresh dict when it is read back from the rendered JSON).

        Large metadata is kept once, as text: once the rendered tail holds it, the
        parsed dict goes (`keep_metadata_as_text`), and a reader parses the tail.
        Readers are renderers and filters, whose results are cached per change.
        """
        metadata = self._metadata
        if metadata is not None:
            return metadata
        tail = self.rendered_tail
        assert tail is not None, "metadata dropped without a rendered tail"
        text = bytes(tail).decode()
        parsed: dict[str, str] = _DECODER.raw_decode(text, len(_METADATA_FIELD))[0]
        return parsed

    @metadata.setter
    def metadata(self, metadata: dict[str, str]) -> None:
        self._metadata = metadata

    def keep_metadata_as_text(self) -> None:
        """Drop the parsed metadata: the rendered tail (which starts with it) holds it.

        Called by the renderer for a tail large enough to be shared with the bodies;
        at the metadata cap that dict was more than the instance's whole JSON.
        """
        tail = self.rendered_tail
        if tail is not None and bytes(tail[: len(_METADATA_FIELD)]) == _METADATA_FIELD.encode():
            self._metadata = None

    def load_moved(self, delta: float) -> bool:
        """Whether the load moved by `delta` or more since the index last rose for it."""
        moved = abs(self.load - self.load_at_rise)
        return moved > 0 and moved >= delta - 1e-12

    @property
    def bracketed_host(self) -> str:
        """The host as it goes into a URL or a `host:port` target."""
        host = self.host
        if ":" in host and not host.startswith("["):
            return f"[{host}]"
        return host

    @property
    def probe_url(self) -> str:
        """What its probes reach: the health endpoint, or `tcp://host:port` for a TCP check."""
        if self.check is CheckType.TCP:
            return f"tcp://{self.bracketed_host}:{self.port}"
        return f"http://{self.bracketed_host}:{self.port}{self.health_endpoint}"

    def forget_rendered(self, *, targets: bool, registration: bool = False) -> None:
        """Forget rendered bytes after a shown field changed.

        Every change moves the JSON object (if only `last_heartbeat`);
        `targets`: status, load or address moved, which the Prometheus target
        group shows; `registration`: a re-registration, which may change
        everything, metadata and tags included.
        """
        self.rendered_json = None
        if targets or registration:
            self.rendered_target = None
        if registration:
            if self._metadata is None:  # the tail is where the metadata lives
                self._metadata = self.metadata
            self.rendered_tail = None

    def snapshot(self) -> InstanceSnapshot:
        return InstanceSnapshot(
            self.service_name,
            self.instance_id,
            self.host,
            self.port,
            self.health_endpoint,
            MappingProxyType(dict(self.metadata)),
            self.load,
            self.status,
            self.registered_at,
            self.last_heartbeat,
            self.last_health_check,
            self.unhealthy_since,
            self.generation,
            self.probe_due,
            self.check,
            self.maintenance,
            self.tags,
        )
