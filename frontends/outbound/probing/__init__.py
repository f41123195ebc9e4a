"""Health probes: one module per prober, and the address checks they share.

- `prober`: the `Prober` interface a driver uses, and the failures every prober reports;
- `addresses`: the probe policy check on resolved addresses (no DNS rebinding);
- `resolver`: name lookups on the prober's own daemon threads (never the loop's executor);
- `builtin_client`: the default, a lean HTTP/1.1 client over anyio;
- `httpx_client`: the same job done with httpx;
- `tcp_client`: TCP checks (a connect within the deadline);
- `by_check`: routes each probe to the prober of its check type.

`runtime.probers.make_prober` builds them from the settings.
"""

from frontends.outbound.probing.prober import Prober, crashed, failed, timed_out

__all__ = ["Prober", "crashed", "failed", "timed_out"]
