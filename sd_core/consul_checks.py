"""An instance's health as Consul's checks: the one place the status mapping lives.

Consul has no instance status, only checks, and a consumer aggregates them
(Prometheus' `__meta_consul_health`, `?passing`, Fabio's `passing` filter):
the worst check wins, and a check whose id starts with `_service_maintenance:`
makes the instance "maintenance". So each instance shows one check for its
status, and a drained one a second, critical check carrying the reason, as
Consul's own maintenance mode adds: every consumer then drops it from its
passing instances without knowing our maintenance flag.
"""

from __future__ import annotations

from typing import NamedTuple

from .instance import Instance
from .status import Status

PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"
#: The check states `/v1/health/state/<state>` accepts (`any` is every check).
STATES = frozenset({"any", PASSING, WARNING, CRITICAL})
#: Consul's prefix of a service's maintenance check id.
MAINTENANCE_PREFIX = "_service_maintenance:"
#: Consul's note when maintenance was started without a reason.
NO_REASON = "Maintenance mode is enabled for this service, but no reason was provided."

_STATES = {Status.HEALTHY: PASSING, Status.UNHEALTHY: CRITICAL, Status.UNKNOWN: CRITICAL}
_OUTPUTS = {
    Status.HEALTHY: "{check} check passing",
    Status.UNHEALTHY: "{check} check failing",
    Status.UNKNOWN: "No {check} check has passed yet",
}


class Check(NamedTuple):
    """One Consul check of an instance: its id, name, state, notes, output and type."""

    check_id: str
    name: str
    status: str
    notes: str
    output: str
    type: str


def instance_checks(instance: Instance) -> tuple[Check, ...]:
    """The instance's status check, then its maintenance check when it is drained."""
    kind = instance.check.value
    status = Check(
        f"service:{instance.instance_id}",
        f"Service '{instance.service_name}' check",
        _STATES[instance.status],
        "",
        _OUTPUTS[instance.status].format(check=kind),
        kind,
    )
    maintenance = instance.maintenance
    if maintenance is None:
        return (status,)
    reason = maintenance.reason or NO_REASON
    drained = Check(
        MAINTENANCE_PREFIX + instance.instance_id,
        "Service Maintenance Mode",
        CRITICAL,
        reason,
        reason,
        "maintenance",
    )
    return (status, drained)


def passing(instance: Instance) -> bool:
    """Whether every check of the instance passes: what `?passing` keeps."""
    return instance.status is Status.HEALTHY and instance.maintenance is None
