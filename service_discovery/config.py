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
    "DEFAULT_ATTEMPT_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "ENV_ATTEMPT_TIMEOUT",
    "ENV_CONNECT_TIMEOUT",
    "ENV_HEARTBEAT_INTERVAL",
    "ENV_SECRET",
    "ENV_URL",
    "ClientSettings",
]

logger = logging.getLogger("service_discovery")

ENV_URL = "SERVICE_DISCOVERY_URL"
ENV_SECRET = "SERVICE_DISCOVERY_SECRET"
ENV_HEARTBEAT_INTERVAL = "SERVICE_HEARTBEAT_INTERVAL"
ENV_ATTEMPT_TIMEOUT = "SERVICE_DISCOVERY_ATTEMPT_TIMEOUT"
ENV_CONNECT_TIMEOUT = "SERVICE_DISCOVERY_CONNECT_TIMEOUT"

DEFAULT_URL = "http://service-discovery:3004"
DEFAULT_HEARTBEAT_INTERVAL = 60.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_ATTEMPT_TIMEOUT = 2.0
DEFAULT_CONNECT_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """The resolved connection settings of one client.

    ``urls`` holds one registry URL or several (from a comma-separated
    setting), in the order they are tried; ``url`` is the first.

    Three timeouts, in seconds, because a node that hangs (stopped, or
    cut off without a reset) must not hold a call for as long as a slow
    answer may take. While another URL remains to be tried, a request gives
    a node ``connect_timeout`` to accept the connection and
    ``attempt_timeout`` for each read and write, then moves on; the last
    URL tried (the only one, with a single URL) gets ``timeout``. Blocking
    queries and watch streams read for as long as they are held, whatever
    these say.
    """

    urls: tuple[str, ...]
    secret: str | None
    heartbeat_interval: float
    timeout: float = DEFAULT_TIMEOUT
    attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

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
        *,
        timeout: float = DEFAULT_TIMEOUT,
        attempt_timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> ClientSettings:
        """Fill whatever was not passed from ``environ`` (``os.environ`` by default).

        A malformed ``SERVICE_HEARTBEAT_INTERVAL``, ``SERVICE_DISCOVERY_ATTEMPT_TIMEOUT``
        or ``SERVICE_DISCOVERY_CONNECT_TIMEOUT`` is reported with a warning and
        replaced by its default rather than crashing the service at import time;
        a bad argument raises ``ValueError``.
        """
        env = os.environ if environ is None else environ
        resolved_url = url if url is not None else env.get(ENV_URL) or DEFAULT_URL
        resolved_secret = secret if secret is not None else env.get(ENV_SECRET) or None
        if heartbeat_interval is None:
            heartbeat_interval = _seconds_from_env(
                env, ENV_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_INTERVAL
            )
        if attempt_timeout is None:
            attempt_timeout = _seconds_from_env(env, ENV_ATTEMPT_TIMEOUT, DEFAULT_ATTEMPT_TIMEOUT)
        if connect_timeout is None:
            connect_timeout = _seconds_from_env(env, ENV_CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT)
        return cls(
            urls=parse_registry_urls(resolved_url),
            secret=resolved_secret,
            heartbeat_interval=_positive("heartbeat interval", heartbeat_interval),
            timeout=_positive("timeout", timeout),
            attempt_timeout=_positive("attempt_timeout", attempt_timeout),
            connect_timeout=_positive("connect_timeout", connect_timeout),
        )


def _positive(what: str, seconds: float) -> float:
    if not seconds > 0:  # NaN too
        raise ValueError(f"{what} must be positive, got {seconds}")
    return float(seconds)


def _seconds_from_env(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0 or value != value or value == float("inf"):
        logger.warning("%s=%r is not a positive number of seconds; using %s", name, raw, default)
        return default
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
