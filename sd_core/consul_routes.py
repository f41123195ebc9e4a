"""Which paths speak Consul, and what the ones we do not serve answer.

Reads are routed by `HttpApi` like our own (route once, authorise once; the
read token is enough). Consul's write endpoints are known by path so that a
consumer that tries to register itself (Fabio, a Consul agent's config) gets
a 405 in our error shape pointing at our own write, instead of a 404 that
reads like a wrong address.
"""

from __future__ import annotations

from .errors import RequestError
from .render import encode

AGENT_SELF = "/v1/agent/self"
CATALOG_SERVICES = "/v1/catalog/services"
CATALOG_SERVICE = "/v1/catalog/service/"
HEALTH_SERVICE = "/v1/health/service/"
HEALTH_STATE = "/v1/health/state/"
#: Routes whose path ends in one name: prefix -> route template.
NAMED_ROUTES = {
    CATALOG_SERVICE: CATALOG_SERVICE + "{name}",
    HEALTH_SERVICE: HEALTH_SERVICE + "{name}",
    HEALTH_STATE: HEALTH_STATE + "{state}",
}
#: Consul's KV store, served empty: every key is a `404` whose index never moves,
#: so a client watching a key (Fabio's manual routes) blocks for its whole wait
#: instead of asking again at once. Its blocking queries park on `KV_SCOPE`,
#: which no change wakes (no service name holds a `/`).
KV = "/v1/kv/"
KV_ROUTE = KV + "{key}"
KV_SCOPE = "/v1/kv"
KV_INDEX = 1
#: The reads that carry an index (and Consul's staleness header, `CONTACT`).
INDEXED_READS = frozenset({CATALOG_SERVICES, KV_ROUTE, *NAMED_ROUTES.values()})
#: Milliseconds since this node last heard from the store (0 in one process).
CONTACT = "x-consul-lastcontact"
_WRITES = frozenset(
    {
        "/v1/agent/service/register",
        "/v1/agent/check/register",
        "/v1/agent/maintenance",
        "/v1/catalog/register",
        "/v1/catalog/deregister",
    }
)
_WRITE_PREFIXES = (
    "/v1/agent/service/deregister/",
    "/v1/agent/service/maintenance/",
    "/v1/agent/check/deregister/",
    "/v1/agent/check/pass/",
    "/v1/agent/check/warn/",
    "/v1/agent/check/fail/",
    "/v1/agent/check/update/",
)


def named(path: str) -> tuple[str, str] | None:
    """`(route template, name)` when `path` is one of the named Consul reads."""
    for prefix, template in NAMED_ROUTES.items():
        if path.startswith(prefix):
            name = path[len(prefix) :]
            if name and "/" not in name:
                return template, name
            return None
    return None


def write_route(path: str) -> str | None:
    """The route template of a Consul write endpoint, or None when `path` is not one."""
    if path in _WRITES:
        return path
    for prefix in _WRITE_PREFIXES:
        if path.startswith(prefix) and len(path) > len(prefix):
            return prefix + "{id}"
    return None


def write_refused(method: str) -> RequestError:
    """The 405 of every Consul write: registrations go through our own API."""
    return RequestError(
        "method_not_allowed",
        405,
        f"Consul write endpoints are not served ({method[:16]}); register with "
        "POST /v1/discovery/register, drain with PUT /v1/discovery/maintenance/"
        "{service_name}/{instance_id} (docs/integrations.md)",
        headers=(("allow", ""),),
    )


def agent_self(datacenter: str, node_name: str, version: str) -> bytes:
    """`/v1/agent/self`: what Prometheus and Fabio read at start (`Config.Datacenter`)."""
    return encode(
        {
            "Config": {
                "Datacenter": datacenter,
                "NodeName": node_name,
                "NodeID": "",
                "Server": True,
                "Version": version,
                "Revision": "",
            },
            "Member": {
                "Name": node_name,
                "Addr": "",
                "Port": 0,
                "Tags": {"dc": datacenter, "role": "node"},
                "Status": 1,
            },
            "Meta": {},
        }
    )
