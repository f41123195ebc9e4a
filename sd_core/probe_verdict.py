"""Whether a health endpoint's answer counts as a pass: a pure function.

Kept apart from the driver so the rules in the API contract are tested on bytes
alone, and both frontends judge a response the same way.
"""

from __future__ import annotations

import json

from .events import ProbeFailed, ProbePassed, ProbeResult, RunProbe

__all__ = [
    "judge_probe",
]


PASSING_STATUSES = frozenset({"healthy", "ok", "up", "pass"})


def judge_probe(
    probe: RunProbe, status_code: int, body: bytes, *, truncated: bool = False
) -> ProbeResult:
    """Turn a finished HTTP exchange into the event the core consumes.

    `truncated` means the driver stopped reading at the body limit; such an
    endpoint fails, since an unbounded body is either a bug or an attack.
    """
    key = (probe.service_name, probe.instance_id, probe.generation)
    if truncated:
        return ProbeFailed(*key, reason="body over the size limit")
    if not 200 <= status_code < 300:
        return ProbeFailed(*key, reason=f"HTTP {status_code}")
    try:
        document = json.loads(body)
    except ValueError:  # not JSON (or not UTF-8): a plain 2xx passes
        return ProbePassed(*key)
    except RecursionError:  # JSON nested deeper than Python parses: hostile or broken
        return ProbeFailed(*key, reason="body nested too deeply")
    if not isinstance(document, dict) or "status" not in document:
        return ProbePassed(*key, load=_load_of(document))
    status = document["status"]
    if isinstance(status, str) and status.lower() in PASSING_STATUSES:
        return ProbePassed(*key, load=_load_of(document))
    return ProbeFailed(*key, reason=f"reported status {str(status)[:64]!r}")


def _load_of(document: object) -> float | None:
    if not isinstance(document, dict):
        return None
    load = document.get("load_percentage")
    if isinstance(load, bool) or not isinstance(load, int | float):
        return None
    try:
        value = float(load)
    except OverflowError:  # an integer too large for a float: above 1 either way
        value = float("inf") if load > 0 else 0.0
    if value != value:  # NaN
        return None
    return min(1.0, max(0.0, value))
