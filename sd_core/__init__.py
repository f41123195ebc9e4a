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

Each module lists its public names in its own `__all__`; the package re-exports them.
"""

from . import (
    checks,
    config,
    errors,
    events,
    http_api,
    instance,
    models,
    openapi,
    pages,
    probe_verdict,
    registry,
    stats,
    status,
)
from .checks import *
from .config import *
from .errors import *
from .events import *
from .http_api import *
from .instance import *
from .models import *
from .openapi import *
from .pages import *
from .probe_verdict import *
from .registry import *
from .stats import *
from .status import *

__version__ = "0.1.0"

__all__ = [
    "__version__",
    *checks.__all__,
    *config.__all__,
    *errors.__all__,
    *events.__all__,
    *http_api.__all__,
    *instance.__all__,
    *models.__all__,
    *openapi.__all__,
    *pages.__all__,
    *probe_verdict.__all__,
    *registry.__all__,
    *stats.__all__,
    *status.__all__,
]
