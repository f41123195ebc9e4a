"""Settings read from the environment when the caller does not pass them.

Containers are configured through environment variables, so a service can
build its client with no arguments and pick up the deployment's registry URL,
secret and heartbeat interval. Explicit arguments always win.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_URL",
    "ENV_HEARTBEAT_INTERVAL",
    "ENV_SECRET",
    "ENV_URL",
    "ClientSettings",
]

logger = logging.getLogger("service_discovery")

ENV_URL = "SERVICE_DISCOVERY_URL"
ENV_SECRET = "SERVICE_DISCOVERY_SECRET"
ENV_HEARTBEAT_INTERVAL = "SERVICE_HEARTBEAT_INTERVAL"

DEFAULT_URL = "http://service-discovery:3004"
DEFAULT_HEARTBEAT_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """The resolved connection settings of one client."""

    url: str
    secret: str | None
    heartbeat_interval: float

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        secret: str | None = None,
        heartbeat_interval: float | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ClientSettings:
        """Fill whatever was not passed from ``environ`` (``os.environ`` by default).

        A malformed ``SERVICE_HEARTBEAT_INTERVAL`` is reported with a warning and
        replaced by the default rather than crashing the service at import time.
        """
        env = os.environ if environ is None else environ
        resolved_url = url if url is not None else env.get(ENV_URL) or DEFAULT_URL
        resolved_secret = secret if secret is not None else env.get(ENV_SECRET) or None
        if heartbeat_interval is None:
            heartbeat_interval = _interval_from_env(env.get(ENV_HEARTBEAT_INTERVAL))
        if heartbeat_interval <= 0:
            raise ValueError(f"heartbeat interval must be positive, got {heartbeat_interval}")
        return cls(
            url=resolved_url.rstrip("/"),
            secret=resolved_secret,
            heartbeat_interval=float(heartbeat_interval),
        )


def _interval_from_env(raw: str | None) -> float:
    if raw is None or not raw.strip():
        return DEFAULT_HEARTBEAT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0 or value != value or value == float("inf"):
        logger.warning(
            "%s=%r is not a positive number of seconds; using %s",
            ENV_HEARTBEAT_INTERVAL,
            raw,
            DEFAULT_HEARTBEAT_INTERVAL,
        )
        return DEFAULT_HEARTBEAT_INTERVAL
    return value
