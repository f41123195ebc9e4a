"""Client SDK of the service-discovery registry.

Register an instance, keep it alive with heartbeats, find other services and
serve a ``/health`` endpoint the registry can probe; on asyncio or trio::

    from service_discovery import ServiceDiscoveryClient, ServiceRegistrationRequest

    client = ServiceDiscoveryClient()  # SERVICE_DISCOVERY_URL / _SECRET from the env
    async with client.registered(ServiceRegistrationRequest(
        service_name="my-service", instance_id="instance-1", host="10.0.0.5", port=8080
    )):
        game = await client.pick("game-service")

See docs/sdk.md for the guide.
"""

from __future__ import annotations

from .backoff import Backoff
from .balancing import power_of_two_choices
from .client import ServiceDiscoveryClient
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    FieldError,
    NoHealthyInstancesError,
    NotFoundError,
    PermissionDeniedError,
    RegistryFullError,
    RegistryUnavailableError,
    ServiceDiscoveryError,
    ValidationError,
)
from .health import HealthChecker, database_probe
from .health_endpoints import health_asgi_app, setup_service_health_checks
from .models import (
    CheckStatus,
    CustomCheckResult,
    HealthCheckResult,
    HealthStatus,
    InstanceStatus,
    ServiceInstance,
    ServiceInstanceList,
    ServiceRegistrationRequest,
)
from .system_load import estimate_load, estimate_load_async

__all__ = [
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "CheckStatus",
    "ConfigurationError",
    "CustomCheckResult",
    "FieldError",
    "HealthCheckResult",
    "HealthChecker",
    "HealthStatus",
    "InstanceStatus",
    "NoHealthyInstancesError",
    "NotFoundError",
    "PermissionDeniedError",
    "RegistryFullError",
    "RegistryUnavailableError",
    "ServiceDiscoveryClient",
    "ServiceDiscoveryError",
    "ServiceInstance",
    "ServiceInstanceList",
    "ServiceRegistrationRequest",
    "ValidationError",
    "__version__",
    "database_probe",
    "estimate_load",
    "estimate_load_async",
    "health_asgi_app",
    "power_of_two_choices",
    "setup_service_health_checks",
]

__version__ = "0.1.0"
