"""A Sans-I/O client protocol for etcd's v3 JSON gateway, and an in-memory etcd.

No sockets, no clocks, no event loop: request builders return `GatewayRequest` values,
parsers turn `(status, body)` into typed results or errors, `WatchFramer` frames the watch
body, and `MemoryEtcd` answers the same requests with the gateway's bytes. Drivers (asyncio
or trio) do the I/O; time comes in as `now`.

Each module lists its public names in its own `__all__`; the package re-exports them.
"""

from . import codec, errors, memory, requests, responses, values, watch
from .codec import *
from .errors import *
from .memory import *
from .requests import *
from .responses import *
from .values import *
from .watch import *

__all__ = [
    *codec.__all__,
    *errors.__all__,
    *memory.__all__,
    *requests.__all__,
    *responses.__all__,
    *values.__all__,
    *watch.__all__,
]
