"""Settings shared by the fixtures and the test modules.

Tokens are fresh random strings per run, so nothing can pass by matching a
default or a value baked into a frontend.
"""

from __future__ import annotations

import itertools
import secrets

#: Every server kind the suite runs against (`/health` reports the same name, but
#: for `cluster`: three nodes, quart, trio and quart, on one etcd; see
#: `conformance.cluster_process`).
FRONTENDS = ["quart", "trio", "quart-uvicorn", "cluster"]

#: The kinds that are one server process (every kind but the cluster): what
#: tests of one process's sockets, signals and limits run against.
SINGLE_PROCESS_KINDS = [kind for kind in FRONTENDS if kind != "cluster"]


def list_endpoints(service: str) -> tuple[str, ...]:
    """Every list endpoint, `service`'s where one is per service: what a full read covers."""
    return (
        "/v1/discovery/services",
        f"/v1/discovery/services/{service}",
        f"/v1/discovery/services/{service}/healthy",
        f"/v1/discovery/services/{service}/instances",
        "/v1/discovery/prometheus",
    )


SECRET = "conf-rw-" + secrets.token_hex(16)
READ_TOKEN = "conf-ro-" + secrets.token_hex(16)

#: Probe period of the probing servers: short, so probe tests take seconds.
PROBE_INTERVAL = 0.5

#: Settings of the shared probing server: fast probes, both thresholds at 2.
#: New instances wait for their phase rather than being probed at once, so a
#: test sees `unknown` before the first outcome (the at-once first probe has
#: its own test, on the default interval).
PROBE_ENV = {
    "HEALTH_CHECK_INTERVAL_SECONDS": str(PROBE_INTERVAL),
    "HEALTH_CHECK_TIMEOUT_SECONDS": "0.4",
    "HEALTH_CHECK_SUCCESS_THRESHOLD": "2",
    "HEALTH_CHECK_FAILURE_THRESHOLD": "2",
    "HEALTH_CHECK_FIRST_PROBES_PER_SECOND": "0",
}

#: A day: on a "quiet" server, hash-staggered first probes fall after the run,
#: so its registry only changes when a test changes it (`base_env` also turns
#: off probing new instances at once there).
QUIET_INTERVAL = "86400"

_names = itertools.count(1)


def base_env(**overrides: str) -> dict[str, str]:
    """Both tokens set, everything else at its default unless overridden."""
    env = {
        "SERVICE_DISCOVERY_SECRET": SECRET,
        "SERVICE_DISCOVERY_READ_TOKEN": READ_TOKEN,
    }
    env.update(overrides)
    if env.get("HEALTH_CHECK_INTERVAL_SECONDS") == QUIET_INTERVAL:
        env.setdefault("HEALTH_CHECK_FIRST_PROBES_PER_SECOND", "0")
    return env


def unique_name(prefix: str) -> str:
    """A valid service or instance name that no other test uses."""
    return f"{prefix}-{next(_names)}-{secrets.token_hex(3)}"
