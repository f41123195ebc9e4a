"""Client SDK of the service-discovery registry.

Register an instance, keep it alive with heartbeats, find other services and
serve a ``/health`` endpoint the registry can probe; on asyncio or trio (or
without async: :class:`SyncServiceDiscoveryClient`)::

    from service_discovery import ServiceDiscoveryClient, ServiceRegistrationRequest

    client = ServiceDiscoveryClient()  # SERVICE_DISCOVERY_URL / _SECRET from the env
    async with client.registered(ServiceRegistrationRequest(
        service_name="my-service", instance_id="instance-1", host="10.0.0.5", port=8080
    )):
        game = await client.pick("game-service")

See docs/sdk.md for the guide.
"""

from __future__ import annotations

from . import (
    backoff,
    balancing,
    client,
    errors,
    health,
    health_endpoints,
    health_wsgi,
    models,
    sync_client,
    system_load,
)
from .backoff import *
from .balancing import *
from .client import *
from .errors import *
from .health import *
from .health_endpoints import *
from .health_wsgi import *
from .models import *
from .sync_client import *
from .system_load import *

__all__ = [
    "__version__",
    *backoff.__all__,
    *balancing.__all__,
    *client.__all__,
    *errors.__all__,
    *health.__all__,
    *health_endpoints.__all__,
    *health_wsgi.__all__,
    *models.__all__,
    *sync_client.__all__,
    *system_load.__all__,
]

__version__ = "0.1.0"
