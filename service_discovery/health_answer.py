"""The bytes of a ``/health`` answer, shared by every way of serving it.

The ASGI wrapper (:func:`~service_discovery.health_asgi_app`) and the WSGI
one (:func:`~service_discovery.health_wsgi_app`) answer alike: the checker's
result as JSON, 200 when healthy and 503 when not (what the registry's probe
and most load balancers expect), never cached, ``HEAD`` without a body and
any other method 405. Written once here, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .health import HealthChecker
from .models import HealthCheckResult

__all__ = ["HealthAnswer", "body_of", "health_answer"]


@dataclass(frozen=True, slots=True)
class HealthAnswer:
    """Status, headers and body of one answer (headers as text; each server encodes)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def body_of(result: HealthCheckResult) -> bytes:
    return json.dumps(result.model_dump(mode="json"), separators=(",", ":")).encode()


async def health_answer(checker: HealthChecker, method: str) -> HealthAnswer:
    """Run the checks (for ``GET`` and ``HEAD``) and build the answer to ``method``."""
    if method not in {"GET", "HEAD"}:
        body = b'{"error":"method_not_allowed"}'
        status = 405
        extra = [("allow", "GET, HEAD")]
    else:
        result = await checker.run()
        body = body_of(result)
        status = result.http_status
        extra = []
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
        *extra,
    ]
    return HealthAnswer(status, headers, b"" if method == "HEAD" else body)
