"""Which prober runs the health probes, chosen by `SERVICE_DISCOVERY_PROBE_CLIENT`.

`builtin` (the default) is the lean HTTP/1.1 client in `builtin_client`;
`httpx` keeps the general-purpose client for anyone who prefers a widely used
stack over the extra throughput (docs/performance.md, scenario 2, has both).
TCP checks always use `tcp_client.TcpProber`; `by_check` routes each probe.
Both resolve names with one `resolver.HostResolver` of
`HEALTH_CHECK_RESOLVER_THREADS` threads. The probers are `outbound/`'s; the
choice is read from the settings, so it is made here, on the runtime's floor.
"""

from __future__ import annotations

from frontends.outbound.probing.builtin_client import PlainProbeClient
from frontends.outbound.probing.by_check import ProberByCheck
from frontends.outbound.probing.httpx_client import HttpxProber
from frontends.outbound.probing.prober import Prober
from frontends.outbound.probing.resolver import HostResolver
from frontends.outbound.probing.tcp_client import TcpProber
from frontends.runtime.settings import Settings


def make_prober(settings: Settings) -> ProberByCheck:
    """Every check type's prober, behind the one a probe driver holds."""
    resolver = HostResolver(threads=settings.resolver_threads)
    return ProberByCheck(
        http=make_http_prober(settings, resolver),
        tcp=TcpProber(policy=settings.registry.probe_policy, resolver=resolver),
        resolver=resolver,
    )


def make_http_prober(settings: Settings, resolver: HostResolver) -> Prober:
    registry = settings.registry
    if settings.probe_client == "httpx":
        return HttpxProber(
            timeout=registry.health_check_timeout,
            concurrency=settings.max_concurrent_probes,
            max_body=registry.probe_max_body_bytes,
            policy=registry.probe_policy,
            resolver=resolver,
        )
    return PlainProbeClient(
        max_body=registry.probe_max_body_bytes,
        policy=registry.probe_policy,
        max_idle=settings.max_concurrent_probes,
        resolver=resolver,
    )
