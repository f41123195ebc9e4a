"""Sans-I/O service registry: every decision, no sockets, no clocks.

The driver reads the clocks and passes the times in: `now` (its monotonic
seconds) and `wall_offset` (wall-clock minus monotonic, for display only).
Then it drains what the core wants done::

    registry = Registry(RegistryConfig(), now=now, wall_offset=wall_offset)
    api = HttpApi(registry, secret=..., frontend="mine", version=__version__)
    result = api.handle(HttpRequest(method, path, query, authorization, content_type, body), now)
    for effect in registry.drain_effects(): ...   # RunProbe, IndexRaised, ...
    deadline = registry.next_deadline()            # sleep until then, then on_timer(now)

`sd_core.testing` runs the same core on a fake clock for tests.
"""

from .checks import CheckType
from .config import RegistryConfig
from .errors import ConfigError, DriverError, FieldProblem, RequestError
from .events import (
    Effect,
    IndexRaised,
    InstanceChange,
    InstanceRegistered,
    InstanceRemoved,
    MaintenanceChanged,
    MaintenanceEnded,
    MaintenanceStarted,
    ProbeFailed,
    ProbePassed,
    ProbeResult,
    Registration,
    Removal,
    RemovalReason,
    RunProbe,
    SelfPreservationChanged,
    StatusChanged,
)
from .http_api import INTERNAL_ERROR, BlockingWait, HttpApi, HttpRequest, HttpResponse
from .instance import InstanceSnapshot
from .models import HeartbeatRequest, RegisterRequest
from .openapi import openapi_bytes, openapi_document
from .pages import Page
from .probe_verdict import judge_probe
from .registry import Registry
from .stats import Stats
from .status import Signal, Status

__version__ = "0.1.0"

__all__ = [
    "INTERNAL_ERROR",
    "BlockingWait",
    "CheckType",
    "ConfigError",
    "DriverError",
    "Effect",
    "FieldProblem",
    "HeartbeatRequest",
    "HttpApi",
    "HttpRequest",
    "HttpResponse",
    "IndexRaised",
    "InstanceChange",
    "InstanceRegistered",
    "InstanceRemoved",
    "InstanceSnapshot",
    "MaintenanceChanged",
    "MaintenanceEnded",
    "MaintenanceStarted",
    "Page",
    "ProbeFailed",
    "ProbePassed",
    "ProbeResult",
    "RegisterRequest",
    "Registration",
    "Registry",
    "RegistryConfig",
    "Removal",
    "RemovalReason",
    "RequestError",
    "RunProbe",
    "SelfPreservationChanged",
    "Signal",
    "Stats",
    "Status",
    "StatusChanged",
    "__version__",
    "judge_probe",
    "openapi_bytes",
    "openapi_document",
]
