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
from urllib.parse import urlsplit

from .errors import ConfigurationError

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
    """The resolved connection settings of one client.

    ``urls`` holds one registry URL or several (from a comma-separated
    setting), in the order they are tried; ``url`` is the first.
    """

    urls: tuple[str, ...]
    secret: str | None
    heartbeat_interval: float

    @property
    def url(self) -> str:
        return self.urls[0]

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
            urls=parse_registry_urls(resolved_url),
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


def parse_registry_urls(raw: str) -> tuple[str, ...]:
    """``"http://a:3004, http://b:3004"`` -> each URL checked, without a trailing slash.

    A URL that can never work is refused here, with what to send instead,
    rather than accepted and then failing on every call: ``127.0.0.1:3004``
    (no scheme; httpx would read ``127.0.0.1`` as the scheme), ``ftp://x``, a
    URL without a host, or one with a query or fragment.
    """
    urls = tuple(part.strip() for part in raw.split(","))
    if not any(urls):
        raise ConfigurationError(
            "the registry URL is empty: set service_discovery_url or "
            f"{ENV_URL}, e.g. 'http://service-discovery:3004'"
        )
    for url in urls:
        _check_url(url, raw)
    return tuple(url.rstrip("/") for url in urls)


def _check_url(url: str, raw: str) -> None:
    where = f" (in {raw!r})" if url != raw.strip() else ""
    if not url:
        raise ConfigurationError(f"empty registry URL{where}: remove the extra comma")
    if "://" not in url:
        raise ConfigurationError(
            f"registry URL {url!r}{where} has no scheme: send 'http://{url}' (or https://)"
        )
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise ConfigurationError(
            f"registry URL {url!r}{where} has scheme {parts.scheme!r}; the registry "
            "speaks HTTP: send 'http://host:port' or 'https://host:port'"
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1:
        raise ConfigurationError(
            f"registry URL {url!r}{where} has no valid host[:port]: send 'http://host:port'"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"registry URL {url!r}{where} must not have a query or fragment: "
            "send the registry's base URL, e.g. 'http://host:port'"
        )
