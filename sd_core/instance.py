"""One registered instance: its description, health bookkeeping and render cache."""

from __future__ import annotations

from .status import Status


class Instance:
    """Mutable record owned by the registry; never handed to callers as-is.

    `__slots__` keeps 100,000 of them small. Times are the core's monotonic
    seconds; the renderer turns them into wall-clock timestamps.
    """

    __slots__ = (
        "_json",
        "_sd_json",
        "_tail",
        "failures",
        "generation",
        "health_endpoint",
        "host",
        "instance_id",
        "last_health_check",
        "last_heartbeat",
        "load",
        "load_at_rise",
        "metadata",
        "port",
        "probe_due",
        "probe_in_flight",
        "probe_rephase",
        "registered_at",
        "removed",
        "service_name",
        "status",
        "successes",
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
    ) -> None:
        self.service_name = service_name
        self.instance_id = instance_id
        self.host = host
        self.port = port
        self.health_endpoint = health_endpoint
        self.metadata = metadata
        self.load = load
        self.load_at_rise = load
        self.status = Status.UNKNOWN
        self.registered_at = now
        self.last_heartbeat = now
        self.last_health_check: float | None = None
        self.successes = 0
        self.failures = 0
        self.unhealthy_since: float | None = None
        self.generation = 0
        self.probe_due = 0.0
        self.probe_in_flight = False
        self.probe_rephase = False
        self.removed = False
        self._json: bytes | None = None
        self._sd_json: bytes | None = None
        # Encoded metadata and registered_at: unchanged until a re-registration.
        self._tail: bytes | None = None

    @property
    def bracketed_host(self) -> str:
        """The host as it goes into a URL or a `host:port` target."""
        host = self.host
        if ":" in host and not host.startswith("["):
            return f"[{host}]"
        return host

    @property
    def probe_url(self) -> str:
        return f"http://{self.bracketed_host}:{self.port}{self.health_endpoint}"

    def touch(self) -> None:
        """Forget rendered bytes after any shown field changed."""
        self._json = None
        self._sd_json = None
        self._tail = None
