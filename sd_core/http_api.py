"""The HTTP mapping both frontends share: request pieces in, response bytes out.

A frontend does routing glue, body reading, waiting and probing; everything a
client can observe about a request (status, headers, the one error shape, the
order of checks, auth) is decided here once, so the two frontends cannot
disagree. Still no I/O: blocking queries come back as a `BlockingWait` that
the frontend waits on before calling again with `may_block=False`.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError

from . import consul_routes, consul_views
from .body import Body
from .consul_checks import STATES
from .consul_query import parse_query, query_token
from .consul_views import CATALOG, HEALTH, ConsulViews
from .errors import FieldProblem, RequestError, query_error
from .filters import InstanceFilter, read_filter
from .models import HeartbeatRequest, MaintenanceRequest, RegisterRequest, metadata_bytes
from .pages import Page, page_headers
from .registry import Registry
from .render import encode
from .status import Status
from .watch_stream import WATCH_ROUTE, WatchSpec, parse_watch

__all__ = [
    "INTERNAL_ERROR",
    "BlockingWait",
    "HttpApi",
    "HttpRequest",
    "HttpResponse",
    "RoutedRequest",
]


JSON = "application/json"
INDEX_HEADER = "x-discovery-index"
DEFAULT_WAIT = 60.0
MAX_WAIT = 300.0
_WAIT_RE = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,9})?)(ms|s|m|h)?")
_WAIT_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_Model = TypeVar("_Model", bound=BaseModel)

_PUBLIC = frozenset({"/health", "/metrics", "/openapi.json"})
_SERVICES = "/v1/discovery/services/"
_UNREGISTER = "/v1/discovery/unregister/"
_UNREGISTER_ROUTE = "/v1/discovery/unregister/{service_name}/{instance_id}"
_MAINTENANCE = "/v1/discovery/maintenance/"
_MAINTENANCE_ROUTE = "/v1/discovery/maintenance/{service_name}/{instance_id}"
_REGISTER = "/v1/discovery/register"
_TOKEN_ROUTE = "/v1/discovery/token"
_READ_WRITE = "read-write"
_READ_ONLY = "read-only"
_WRITE_ROUTES = frozenset(
    {_REGISTER, "/v1/discovery/heartbeat", _UNREGISTER_ROUTE, _MAINTENANCE_ROUTE}
)
HEARTBEAT_OK = b'{"success":true,"message":"Heartbeat updated successfully"}'
UNREGISTER_OK = b'{"success":true,"message":"Service unregistered successfully"}'


class HttpRequest(NamedTuple):
    """One request as the mapping needs it: what every frontend extracts, and all of it.

    A value rather than six arguments, so that a frontend builds it once and
    hands the same object back after a blocking query's wait.
    """

    method: str
    path: str
    query: bytes = b""
    authorization: str | None = None
    content_type: str | None = None
    body: bytes = b""


class HttpResponse(NamedTuple):
    """What to send. `route` is the matched route template, for metrics labels.

    Named tuples rather than frozen dataclasses: just as immutable, and several
    times cheaper to build on a path that runs 100,000 times a second.
    """

    status: int
    body: Body  # `Pieces` for a body made of views of other cached bodies (`sd_core.body`)
    headers: tuple[tuple[str, str], ...]
    route: str


class BlockingWait(NamedTuple):
    """Hold the request until `scope`'s index passes `seen_index` or `timeout` elapses.

    `scope` is a service name, or None for the global index. Then call
    `HttpApi.handle` again with `may_block=False`.
    """

    scope: str | None
    seen_index: int
    timeout: float


Result = HttpResponse | BlockingWait
#: An endpoint: the routed request, its body, the time and whether it may block in;
#: its answer (or a blocking query's wait) out.
Endpoint = Callable[["RoutedRequest", bytes, float, bool], Result]


class PendingWrite(NamedTuple):
    """Cluster mode: the write went to the store; park the request.

    The node answers it later with a `WriteDone(token, response)` effect, once the
    store confirmed the write and the node's own view shows it (read-your-writes).
    """

    token: int


class RegisterWrite(NamedTuple):
    """A validated, authorised `POST /v1/discovery/register` (cluster mode)."""

    route: str
    request: RegisterRequest


class HeartbeatWrite(NamedTuple):
    route: str
    request: HeartbeatRequest


class UnregisterWrite(NamedTuple):
    route: str
    service_name: str
    instance_id: str


class MaintenanceWrite(NamedTuple):
    """`PUT` (`start`, with its optional reason) or `DELETE` of maintenance."""

    route: str
    service_name: str
    instance_id: str
    start: bool
    reason: str | None


WriteCommand = RegisterWrite | HeartbeatWrite | UnregisterWrite | MaintenanceWrite


#: `RoutedRequest.refusal` when nothing answers the method and path (a 404 or 405).
NOT_ROUTED = "not_routed"


class RoutedRequest(NamedTuple):
    """A request's head, routed and authorised once: the first of `HttpApi`'s two steps.

    `HttpApi.head` builds it from the method, path and headers, before any body
    is read; `HttpApi.answer` takes it back with the body. Nothing is routed or
    authorised again after the head, in one process or on a cluster node.

    `answer` is set when the head alone decides the response: a cached read
    (the fast path), a 404 or 405 (`refusal` is `NOT_ROUTED`), or a 401 or 403
    (`refusal` is the reason counted in `auth_failures`, and `refused_early`
    says the frontend sends it without reading the body). `body_limit` is the
    most body bytes the request may carry.
    """

    method: str
    path: str
    query: bytes
    authorization: str | None
    content_type: str | None
    route: str
    params: tuple[str, ...]
    endpoint: Endpoint | None
    access: str | None
    answer: HttpResponse | None
    refusal: str | None
    body_limit: int
    refused_early: bool


_new_routed = tuple.__new__


class _FastEntry(NamedTuple):
    """A read answered before: still current while `cache[view]` is `response.body`.

    `cache` is the registry's render cache the body came from (`Views.cache_of`);
    it drops the body as soon as anything the response shows changes.
    """

    response: HttpResponse
    cache: dict[str, Body]
    view: str


_JSON_HEADERS = (("content-type", JSON),)


def error_body(error: RequestError) -> bytes:
    document: dict[str, object] = {
        "success": False,
        "error": error.code,
        "message": error.message,
    }
    if error.details:
        document["details"] = [{"field": d.field, "message": d.message} for d in error.details]
    return encode(document)


def error_response(error: RequestError, route: str) -> HttpResponse:
    return HttpResponse(error.status, error_body(error), _JSON_HEADERS + error.headers, route)


def not_found(path: str) -> HttpResponse:
    """The 404 of a path no route serves: the core's own, and a framework's beside it."""
    error = RequestError("not_found", 404, f"No such endpoint: {path[:200]}")
    return error_response(error, "unknown")


def method_not_allowed(method: str, methods: Iterable[str], route: str) -> HttpResponse:
    """The 405 of a route that serves other `methods`, naming them in `Allow`."""
    allowed = ", ".join(sorted(methods))
    error = RequestError(
        "method_not_allowed",
        405,
        f"Method {method[:16]} is not allowed here; use {allowed}",
        headers=(("allow", allowed),),
    )
    return error_response(error, route)


INTERNAL_ERROR = HttpResponse(
    500,
    b'{"success":false,"error":"internal_error","message":"Internal server error"}',
    _JSON_HEADERS,
    "unknown",
)


class HttpApi:
    """Routes, authenticates and answers every request of the contract."""

    def __init__(
        self,
        registry: Registry,
        *,
        secret: str,
        read_token: str | None = None,
        frontend: str,
        version: str,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
        openapi: Callable[[], bytes] | None = None,
        pages: Mapping[str, Page] | None = None,
    ) -> None:
        """`metrics` and `openapi` render those documents (they need libraries the core avoids).

        `pages` maps a path to a static page for people (see `sd_core.pages`):
        public, GET only, served as given.
        """
        self.registry = registry
        self._secret = secret.encode()
        self._secret_header = b"Bearer " + self._secret
        self._read_token = read_token.encode() if read_token else None
        self.frontend = frontend
        self.version = version
        self._metrics = metrics
        self._openapi = openapi
        self.draining = False
        # Refused authentications by reason ("missing", "invalid",
        # "read_only_write"): a brute force must show in /metrics, not pass silently.
        self.auth_failures: dict[str, int] = {}
        self._fast: dict[str, _FastEntry] = {}
        self._static: dict[str, dict[str, Endpoint]] = {
            "/health": {"GET": self._health},
            "/metrics": {"GET": self._metrics_page},
            "/openapi.json": {"GET": self._openapi_page},
            "/v1/discovery/register": {"POST": self._register},
            "/v1/discovery/heartbeat": {"POST": self._heartbeat},
            "/v1/discovery/services": {"GET": self._all_services},
            "/v1/discovery/prometheus": {"GET": self._all_targets},
            WATCH_ROUTE: {"GET": self._watch_unstreamed},
            _TOKEN_ROUTE: {"GET": self._token_access},
        }
        # `/v1/agent/self` shows no more than `/health` (the datacenter, the node's
        # name), and some clients (py-consul) send it no token.
        self._public = _PUBLIC | frozenset(pages or ()) | {consul_routes.AGENT_SELF}
        for path, page in (pages or {}).items():
            self._static[path] = {
                "GET": _Fixed(HttpResponse(200, page.body, page_headers(page), path))
            }
        # Consul's reads (sd_core.consul_*): routed, authorised and cached like our own.
        self._consul = ConsulViews(registry.views, registry.config.datacenter)
        self._static[consul_routes.AGENT_SELF] = {"GET": self._agent_self}
        self._static[consul_routes.CATALOG_SERVICES] = {"GET": self._catalog_services}
        named = consul_routes.NAMED_ROUTES
        self._consul_named: dict[str, dict[str, Endpoint]] = {
            named[consul_routes.CATALOG_SERVICE]: {"GET": self._consul_service},
            named[consul_routes.HEALTH_SERVICE]: {"GET": self._consul_service},
            named[consul_routes.HEALTH_STATE]: {"GET": self._health_state},
        }
        self._consul_named[consul_routes.KV_ROUTE] = {"GET": self._consul_kv}
        self._consul_routes = frozenset(
            {consul_routes.AGENT_SELF, consul_routes.CATALOG_SERVICES, *self._consul_named}
        )
        # `/services/{name}` + view suffix -> (methods, route template); built
        # once, since routing runs on every request.
        self._service_views: dict[str, tuple[dict[str, Endpoint], str]] = {
            "": ({"GET": self._service}, _SERVICES + "{name}"),
            "healthy": ({"GET": self._healthy}, _SERVICES + "{name}/healthy"),
            "instances": ({"GET": self._service_targets}, _SERVICES + "{name}/instances"),
        }
        self._unregister_route: dict[str, Endpoint] = {"DELETE": self._unregister}
        self._maintenance_route: dict[str, Endpoint] = {
            "PUT": self._start_maintenance,
            "DELETE": self._end_maintenance,
        }
        # Cluster mode: headers every read carries (cluster id, staleness) and the
        # store's section of /health.
        self._read_headers: tuple[tuple[str, str], ...] = ()
        #: Cluster mode: how to hold a read whose index this node's view has not
        #: reached yet (None: answer it at once, the lower index says "start over").
        self.catch_up: Callable[[int, float, float], BlockingWait | None] | None = None
        self.health_extra: Callable[[], dict[str, object]] | None = None

    def routes(self) -> list[tuple[str, str]]:
        """Every (method, route template) answered here: what /openapi.json must document."""
        tables = [(route, methods) for route, methods in self._static.items()]
        tables += [(route, methods) for methods, route in self._service_views.values()]
        tables.append((_UNREGISTER_ROUTE, self._unregister_route))
        tables.append((_MAINTENANCE_ROUTE, self._maintenance_route))
        tables += list(self._consul_named.items())
        return sorted((method, route) for route, methods in tables for method in methods)

    def serves(self, path: str) -> bool:
        """Whether some route here serves `path` (with any method): what a frontend that
        shares its paths with a framework's router asks first, without routing twice."""
        return (
            path in self._static
            or self._dynamic_route(path)[0] is not None
            or consul_routes.write_route(path) is not None  # their 405 is ours
        )

    # ------------------------------------------------------------ entry

    def handle(self, request: HttpRequest, now: float, *, may_block: bool = True) -> Result:
        """Answer one request in one call: `head`, then `answer`. Raises nothing a client can cause.

        For callers that hold the whole request at once (tests, benches, the
        simulations); a frontend calls the two steps itself, reading the body between.
        """
        method, path, query, authorization, content_type, body = request
        if method == "GET" and not query and authorization is not None:
            # `_fast_hit`, inline: the call would cost a tenth of a cached read.
            hit = self._fast.get(path)
            secret = self._secret_header
            if (
                hit is not None
                and hit.cache.get(hit.view) is hit.response.body
                and hmac.compare_digest(authorization.encode("latin-1", "replace"), secret)
            ):
                return hit.response
        routed = self._routed(method, path, query, authorization, content_type)
        return self.answer(routed, body, now, may_block=may_block)

    def head(
        self, method: str, path: str, query: bytes, authorization: str | None,
        content_type: str | None,
    ) -> RoutedRequest:  # fmt: skip
        """The first step: route and authorise a request from its head, and set its body limit."""
        if method == "GET" and not query:
            hit = self._fast_hit(path, authorization)
            if hit is not None:
                return _new_routed(RoutedRequest, (
                    method, path, query, authorization, content_type, hit.route, (),
                    None, _READ_WRITE, hit, None, self.registry.config.max_body_bytes, False,
                ))  # fmt: skip
        return self._routed(method, path, query, authorization, content_type)

    def answer(
        self, routed: RoutedRequest, body: bytes, now: float, *, may_block: bool = True
    ) -> Result:
        """The second step: the answer to a routed request, given its body.

        A refusal decided by the head is counted here, when it is answered.
        """
        answer = routed.answer
        if answer is not None:
            if routed.refused_early:
                self._auth_failed(routed.refusal or "")
            return answer
        endpoint = routed.endpoint
        assert endpoint is not None  # routed and allowed: `head` left no answer
        try:
            return endpoint(routed, body, now, may_block)
        except RequestError as error:
            return error_response(error, routed.route)

    def _fast_hit(self, path: str, authorization: str | None) -> HttpResponse | None:
        """A plain read whose rendered body has not changed since we last answered it:
        one dict lookup and the token check."""
        hit = self._fast.get(path)
        if (
            hit is not None
            and hit.cache.get(hit.view) is hit.response.body
            and authorization is not None
            and hmac.compare_digest(authorization.encode("latin-1", "replace"), self._secret_header)
        ):
            return hit.response
        return None

    def _routed(
        self,
        method: str,
        path: str,
        query: bytes,
        authorization: str | None,
        content_type: str | None,
    ) -> RoutedRequest:
        endpoint, route, params = self._route(method, path)
        limit = self.registry.config.max_body_bytes
        if isinstance(endpoint, HttpResponse):
            return RoutedRequest(
                method, path, query, authorization, content_type, route, (),
                None, None, endpoint, NOT_ROUTED, limit, False,
            )  # fmt: skip
        access: str | None = None
        answer: HttpResponse | None = None
        refusal: str | None = None
        if authorization is None and query and route in self._consul_routes:
            # Consul's `?token=` (read routes only; discouraged: it ends up in logs).
            token = query_token(query)
            authorization = None if token is None else "Bearer " + token
        if route not in self._public:
            access = self._access(authorization)
            if access is not _READ_WRITE and not (access is _READ_ONLY and method == "GET"):
                refusal, error = _refusal(method, access, authorization)
                answer = error_response(error, route)
        # tuple.__new__ directly: a NamedTuple's own __new__ is a Python call per request.
        return _new_routed(RoutedRequest, (
            method, path, query, authorization, content_type, route, params,
            endpoint, access, answer, refusal, limit, refusal is not None,
        ))  # fmt: skip

    def write_command(
        self, routed: RoutedRequest, body: bytes, now: float
    ) -> WriteCommand | HttpResponse | None:
        """Cluster mode: a routed write's body parsed and checked as `answer` would, not applied.

        None when `routed` is not one of the writes, or already has its answer
        (hand it to `answer`); an `HttpResponse` when it is refused (draining,
        validation); else the command, for the cluster node to turn into store calls.
        """
        route = routed.route
        if routed.answer is not None or route not in _WRITE_ROUTES:
            return None
        params = routed.params
        try:
            self._writable()
            if route == _UNREGISTER_ROUTE:
                return UnregisterWrite(route, params[0], params[1])
            if route == _MAINTENANCE_ROUTE:
                start = routed.method == "PUT"
                reason = (
                    _parse(MaintenanceRequest, routed.content_type, body).reason
                    if start and body
                    else None
                )
                return MaintenanceWrite(route, params[0], params[1], start, reason)
            if route == _REGISTER:
                return RegisterWrite(route, self._parse_register(routed, body))
            return HeartbeatWrite(route, _parse(HeartbeatRequest, routed.content_type, body))
        except RequestError as error:
            return error_response(error, route)

    def open_watch(
        self, request: HttpRequest, last_event_id: str | None
    ) -> HttpResponse | WatchSpec:
        """A watch stream's checks, in the order of any read: auth, then parameters.

        The frontend streams a `WatchSpec` (see `sd_core.watch_stream`) and
        sends an `HttpResponse` as it is, before any stream starts.
        """
        try:
            self._authenticate("GET", request.authorization)
            if self.draining:
                self._writable()
            return parse_watch(
                request.query, last_event_id, self.registry.config.max_watched_services
            )
        except RequestError as error:
            return error_response(error, WATCH_ROUTE)

    def set_read_headers(self, headers: tuple[tuple[str, str], ...]) -> None:
        """Cluster mode: headers added to every read from now on."""
        if headers != self._read_headers:
            self._read_headers = headers
            self._fast.clear()  # cached responses carry the old ones

    def register_ok(self, request: RegisterRequest, route: str) -> HttpResponse:
        """The answer to a registration that took effect."""
        message = f"Service {request.service_name}:{request.instance_id} registered successfully"
        refusal = self.registry.config.probe_policy.literal_refusal(request.host)
        if refusal is not None:  # registered, but say why it will never turn healthy
            message += f"; health checks refused: {refusal}"
        # The TTL, so a client can check its heartbeat interval fits (a 10 s TTL
        # with the SDK's 60 s heartbeat expired instances every minute, silently).
        ttl = self.registry.config.registration_ttl
        body = {
            "success": True,
            "message": message,
            "ttl_seconds": int(ttl) if float(ttl).is_integer() else ttl,
        }
        return HttpResponse(200, encode(body), _JSON_HEADERS, route)

    def maintenance_ok(
        self, service_name: str, instance_id: str, start: bool, route: str
    ) -> HttpResponse:
        """The answer to a maintenance call that took effect (or had nothing to do)."""
        state = "in" if start else "out of"
        message = f"Instance {service_name}:{instance_id} is {state} maintenance"
        return HttpResponse(
            200, encode({"success": True, "message": message}), _JSON_HEADERS, route
        )

    def payload_too_large(self, method: str, path: str) -> HttpResponse:
        """The answer when the body passed the limit: routing errors still come first."""
        return self.too_large(self._routed(method, path, b"", None, None))

    def too_large(self, routed: RoutedRequest) -> HttpResponse:
        """`payload_too_large` for a routed request (its 404 or 405 first, no auth refusal)."""
        if routed.refusal == NOT_ROUTED and routed.answer is not None:
            return routed.answer
        limit = routed.body_limit
        return error_response(
            RequestError("payload_too_large", 413, f"Request body is larger than {limit} bytes"),
            routed.route,
        )

    def overloaded(self, method: str, path: str, what: str) -> HttpResponse:
        """503 with `Retry-After` when a frontend limit (`what`) is reached."""
        handler, route, _ = self._route(method, path)
        if isinstance(handler, HttpResponse):
            route = "unknown"
        error = RequestError(
            "overloaded",
            503,
            f"Too many {what}; retry shortly",
            headers=(("retry-after", "1"),),
        )
        return error_response(error, route)

    @property
    def max_body_bytes(self) -> int:
        return self.registry.config.max_body_bytes

    # ---------------------------------------------------------- routing

    def _route(
        self, method: str, path: str
    ) -> tuple[Endpoint | HttpResponse, str, tuple[str, ...]]:
        methods = self._static.get(path)
        route = path
        params: tuple[str, ...] = ()
        if methods is None:
            methods, route, params = self._dynamic_route(path)
        if methods is None:
            write = consul_routes.write_route(path)
            if write is not None:
                return error_response(consul_routes.write_refused(method), write), write, ()
            return not_found(path), "unknown", ()
        handler = methods.get(method)
        if handler is None:
            return method_not_allowed(method, methods, route), route, ()
        return handler, route, params

    def _dynamic_route(self, path: str) -> tuple[dict[str, Endpoint] | None, str, tuple[str, ...]]:
        if path.startswith(_SERVICES):
            name, slash, view = path[len(_SERVICES) :].partition("/")
            if name and (view or not slash) and "/" not in view:
                found = self._service_views.get(view)
                if found is not None:
                    return found[0], found[1], (name,)
        elif path.startswith(_UNREGISTER):
            params = _instance_params(path, _UNREGISTER)
            if params:
                return self._unregister_route, _UNREGISTER_ROUTE, params
        elif path.startswith(_MAINTENANCE):
            params = _instance_params(path, _MAINTENANCE)
            if params:
                return self._maintenance_route, _MAINTENANCE_ROUTE, params
        elif path.startswith(consul_routes.KV) and len(path) > len(consul_routes.KV):
            key = path[len(consul_routes.KV) :]
            return self._consul_named[consul_routes.KV_ROUTE], consul_routes.KV_ROUTE, (key,)
        elif path.startswith("/v1/") and (named := consul_routes.named(path)) is not None:
            route, name = named
            return self._consul_named[route], route, (name,)
        return None, "", ()

    # ------------------------------------------------------------- auth

    def _authenticate(self, method: str, authorization: str | None) -> None:
        refused = _refused(method, self._access(authorization), authorization)
        if refused is not None:
            reason, error = refused
            self._auth_failed(reason)
            raise error

    def _access(self, authorization: str | None) -> str | None:
        """What the token of `authorization` may do (read-write, read-only), or None."""
        if authorization is not None and hmac.compare_digest(
            authorization.encode("latin-1", "replace"), self._secret_header
        ):
            return _READ_WRITE  # the common case, compared in constant time as one string
        token = _bearer_token(authorization)
        if token is None:
            return None
        if hmac.compare_digest(token, self._secret):
            return _READ_WRITE
        if self._read_token is not None and hmac.compare_digest(token, self._read_token):
            return _READ_ONLY
        return None

    def _auth_failed(self, reason: str) -> None:
        failures = self.auth_failures
        failures[reason] = failures.get(reason, 0) + 1

    # ----------------------------------------------------------- writes

    def _writable(self) -> None:
        if self.draining:
            raise RequestError(
                "shutting_down",
                503,
                "The registry is shutting down",
                headers=(("retry-after", "1"),),
            )

    def _register(self, call: RoutedRequest, body: bytes, now: float, may_block: bool) -> Result:
        self._writable()
        request = self._parse_register(call, body)
        self.registry.register(request, now)
        return self.register_ok(request, call.route)

    def _parse_register(self, call: RoutedRequest, body: bytes) -> RegisterRequest:
        """A registration's body, its metadata's total size checked against the setting.

        Per-entry limits alone let 64 entries of 1 KiB each through, repeated in
        every view; the total is what an instance costs.
        """
        request = _parse(RegisterRequest, call.content_type, body)
        limit = self.registry.config.max_metadata_bytes
        size = metadata_bytes(request.metadata)
        if size > limit:
            problem = FieldProblem(
                "metadata", f"at most {limit} bytes of keys and values together (UTF-8), got {size}"
            )
            raise RequestError(
                "validation_error", 422, "Invalid fields: metadata", details=(problem,)
            )
        return request

    def _heartbeat(self, call: RoutedRequest, body: bytes, now: float, may_block: bool) -> Result:
        self._writable()
        request = _parse(HeartbeatRequest, call.content_type, body)
        status = None if request.status is None else Status(request.status)
        self.registry.heartbeat(
            request.service_name,
            request.instance_id,
            request.load_percentage,
            now,
            status=status,
        )
        return HttpResponse(200, HEARTBEAT_OK, _JSON_HEADERS, call.route)

    def _start_maintenance(
        self, call: RoutedRequest, body: bytes, now: float, may_block: bool
    ) -> Result:
        self._writable()
        # The body is optional: none at all means no reason given.
        reason = _parse(MaintenanceRequest, call.content_type, body).reason if body else None
        service_name, instance_id = call.params
        self.registry.start_maintenance(service_name, instance_id, reason, now)
        return self.maintenance_ok(service_name, instance_id, True, call.route)

    def _end_maintenance(
        self, call: RoutedRequest, body: bytes, now: float, may_block: bool
    ) -> Result:
        self._writable()
        service_name, instance_id = call.params
        self.registry.end_maintenance(service_name, instance_id, now)
        return self.maintenance_ok(service_name, instance_id, False, call.route)

    def _unregister(self, call: RoutedRequest, body: bytes, now: float, may_block: bool) -> Result:
        self._writable()
        service_name, instance_id = call.params
        self.registry.unregister(service_name, instance_id, now)
        return HttpResponse(200, UNREGISTER_OK, _JSON_HEADERS, call.route)

    # ------------------------------------------------------------ reads

    def _blocking(
        self, call: RoutedRequest, scope: str | None, now: float, may_block: bool
    ) -> tuple[int, BlockingWait | None, InstanceFilter | None]:
        registry = self.registry
        index = registry.global_index if scope is None else registry.service_index(scope)
        if not call.query:
            return index, None, None
        wanted, wait, only = _read_params(call.query, self.registry.config.max_filter_pairs)
        if wanted is None or not may_block:
            return index, None, only
        return index, self._hold(scope, index, wanted, wait, now), only

    def _hold(
        self, scope: str | None, index: int, wanted: int, wait: float, now: float
    ) -> BlockingWait | None:
        """Whether a read asking for `wanted` waits: only while the client is up to date.

        A passed index answers at once, and so does one from the future (a
        registry restart), so the client sees a lower index and starts again
        from 0; a cluster node whose view is behind that index first waits for it.
        """
        if wanted == index:
            return BlockingWait(scope, wanted, wait)
        if wanted > index and self.catch_up is not None:
            return self.catch_up(wanted, wait, now)
        return None

    def _read(
        self,
        call: RoutedRequest,
        now: float,
        may_block: bool,
        scope: str | None,
        view: str,
        render: Callable[[str, InstanceFilter | None], Body | None],
    ) -> Result:
        index, wait, only = self._blocking(call, scope, now, may_block)
        if wait is not None:
            return wait
        name = scope or ""
        body = render(name, only)
        headers = (("content-type", JSON), (INDEX_HEADER, str(index)), *self._read_headers)
        if body is None:
            error = RequestError(
                "service_not_found", 404, f"Service {name} is not registered", headers=headers[1:]
            )
            return error_response(error, call.route)
        return self._cached_response(call, scope, view, body, headers)

    def _cached_response(
        self,
        call: RoutedRequest,
        scope: str | None,
        view: str,
        body: Body,
        headers: tuple[tuple[str, str], ...],
    ) -> HttpResponse:
        """A read's 200, remembered for the fast path when its body is the cached one."""
        response = HttpResponse(200, body, headers, call.route)
        # The registry keeps handing out this very bytes object (from `cache`)
        # until anything shown, the index included, changes: identity with it
        # is what the fast path in `handle` checks.
        cache = self.registry.views.cache_of(scope)
        if cache is not None and not call.query and cache.get(view) is body:
            fast = self._fast
            if len(fast) > 4 * self.registry.service_count + 64:
                fast.clear()  # forget paths of services that went away
            fast[call.path] = _FastEntry(response, cache, view)
        return response

    # ----------------------------------------------------- Consul reads

    def _consul_read(
        self, view: str, scope: str | None, call: RoutedRequest, now: float, may_block: bool
    ) -> Result:
        """A Consul read of `view` (`ConsulViews.body`): its own query syntax, our index
        for `scope` (a service, or None: every one), our blocking and caches."""
        registry = self.registry
        index = registry.global_index if scope is None else registry.service_index(scope)
        query = parse_query(call.query, registry.config.datacenter)
        if query.wait_index is not None and may_block:
            held = self._hold(scope, index, query.wait_index, query.wait, now)
            if held is not None:
                return held
        body = self._consul.body(view, scope, query)
        return self._cached_response(call, scope, view, body, self._consul_headers(index))

    def _consul_headers(self, index: int) -> tuple[tuple[str, str], ...]:
        number = str(index)
        return (
            ("content-type", JSON),
            ("x-consul-index", number),
            ("x-consul-knownleader", "true"),
            (consul_routes.CONTACT, "0"),
            (INDEX_HEADER, number),
            *self._read_headers,
        )

    def _consul_kv(self, call: RoutedRequest, body: bytes, now: float, may_block: bool) -> Result:
        """Consul's KV store, always empty (see `consul_routes.KV`): a `404` at index 1."""
        query = parse_query(call.query, self.registry.config.datacenter)
        index = consul_routes.KV_INDEX
        if query.wait_index == index and may_block:
            return BlockingWait(consul_routes.KV_SCOPE, index, query.wait)
        headers = self._consul_headers(index)[1:]
        message = "Consul's KV store is not served here: every key is absent"
        return error_response(RequestError("not_found", 404, message, headers=headers), call.route)

    def _catalog_services(
        self, call: RoutedRequest, body: bytes, now: float, may_block: bool
    ) -> Result:
        return self._consul_read(consul_views.SERVICES, None, call, now, may_block)

    def _consul_service(
        self, call: RoutedRequest, body: bytes, now: float, may_block: bool
    ) -> Result:
        """`/v1/health/service/<name>` or `/v1/catalog/service/<name>`, told apart by route."""
        view = HEALTH if call.route.startswith(consul_routes.HEALTH_SERVICE) else CATALOG
        return self._consul_read(view, call.params[0], call, now, may_block)

    def _health_state(
        self, call: RoutedRequest, body: bytes, now: float, may_block: bool
    ) -> Result:
        state = call.params[0]
        if state not in STATES:
            raise RequestError(
                "validation_error",
                422,
                "Invalid path parameter: state",
                details=(FieldProblem("state", "must be any, passing, warning or critical"),),
            )
        return self._consul_read(consul_views.STATE + state, None, call, now, may_block)

    def _agent_self(self, call: RoutedRequest, body: bytes, now: float, may_block: bool) -> Result:
        config = self.registry.config
        document = consul_routes.agent_self(config.datacenter, config.node_name, self.version)
        return HttpResponse(200, document, _JSON_HEADERS, call.route)

    def _all_services(
        self, call: RoutedRequest, body: bytes, now: float, may_block: bool
    ) -> Result:
        views = self.registry.views
        return self._read(
            call, now, may_block, None, "services", lambda _, only: views.all_services(only)
        )

    def _all_targets(self, call: RoutedRequest, body: bytes, now: float, may_block: bool) -> Result:
        views = self.registry.views
        return self._read(
            call, now, may_block, None, "targets", lambda _, only: views.all_targets(only)
        )

    def _service(self, call: RoutedRequest, body: bytes, now: float, may_block: bool) -> Result:
        name = call.params[0]
        return self._read(
            call, now, may_block, name, "instances", self.registry.views.service_instances
        )

    def _healthy(self, call: RoutedRequest, body: bytes, now: float, may_block: bool) -> Result:
        return self._read(
            call, now, may_block, call.params[0], "healthy", self.registry.views.healthy_instances
        )

    def _service_targets(
        self, call: RoutedRequest, body: bytes, now: float, may_block: bool
    ) -> Result:
        return self._read(
            call, now, may_block, call.params[0], "targets", self.registry.views.service_targets
        )

    def _watch_unstreamed(
        self, call: RoutedRequest, body: bytes, now: float, may_block: bool
    ) -> Result:
        # Reached only through a frontend that does not hold streams: say so
        # the way an older registry would, so clients fall back to blocking queries.
        parse_watch(call.query, None, self.registry.config.max_watched_services)
        raise RequestError("not_found", 404, "Watch streams are not served here")

    def _token_access(
        self, call: RoutedRequest, body: bytes, now: float, may_block: bool
    ) -> Result:
        # What the caller's token may do, found by a read: a client (the
        # dashboard) that must decide whether to offer writes asks here instead
        # of trying a write, which would change the registry or count as a
        # refused write in sd_auth_failures_total. Authentication already
        # refused anything but a valid token.
        access = self._access(call.authorization)
        return HttpResponse(200, encode({"access": access}), _JSON_HEADERS, call.route)

    # ----------------------------------------------------------- public

    def health_document(self, now: float) -> dict[str, object]:
        registry = self.registry
        active, reason = registry.self_preservation
        document: dict[str, object] = {
            "status": "healthy",
            "service": "service-discovery",
            "load_percentage": 0.0,
            "frontend": self.frontend,
            "version": self.version,
            "uptime_seconds": round(max(0.0, now - registry.started_at), 3),
            "instances": registry.instance_count,
            "services": registry.service_count,
            "self_preservation": active,
            "self_preservation_reason": reason,
        }
        if self.health_extra is not None:
            document.update(self.health_extra())
        return document

    def _health(self, call: RoutedRequest, body: bytes, now: float, may_block: bool) -> Result:
        return HttpResponse(200, encode(self.health_document(now)), _JSON_HEADERS, call.route)

    def _metrics_page(
        self, call: RoutedRequest, body: bytes, now: float, may_block: bool
    ) -> Result:
        if self._metrics is None:
            raise RequestError("not_found", 404, "Metrics are not enabled")
        body, content_type = self._metrics()
        return HttpResponse(200, body, (("content-type", content_type),), call.route)

    def _openapi_page(
        self, call: RoutedRequest, body: bytes, now: float, may_block: bool
    ) -> Result:
        if self._openapi is None:
            raise RequestError("not_found", 404, "No OpenAPI document is available")
        return HttpResponse(200, self._openapi(), _JSON_HEADERS, call.route)


def _refused(
    method: str, access: str | None, authorization: str | None
) -> tuple[str, RequestError] | None:
    """Why `access` may not make this request (the reason counted, the 401 or 403), or None."""
    if access == _READ_WRITE or (access == _READ_ONLY and method == "GET"):
        return None
    return _refusal(method, access, authorization)


def _refusal(
    method: str, access: str | None, authorization: str | None
) -> tuple[str, RequestError]:
    """The reason counted and the 401 or 403 for a request `access` may not make."""
    if access == _READ_ONLY:
        return "read_only_write", RequestError(
            "forbidden", 403, "The read-only token cannot be used to change the registry"
        )
    return "missing" if not authorization else "invalid", RequestError(
        "unauthorized",
        401,
        "A valid bearer token is required",
        headers=(("www-authenticate", "Bearer"),),
    )


class _Fixed:
    """An endpoint whose answer never changes (a page): the prebuilt response."""

    __slots__ = ("response",)

    def __init__(self, response: HttpResponse) -> None:
        self.response = response

    def __call__(self, call: RoutedRequest, body: bytes, now: float, may_block: bool) -> Result:
        return self.response


def _bearer_token(authorization: str | None) -> bytes | None:
    """The token of `Bearer <token>`, or of a bare `<token>` with no scheme at all.

    The bare form is what Debian 12's Prometheus 2.42 sends for
    `authorization: {credentials: ...}` without a `type`; it is compared
    against the tokens like any other, so it grants nothing a wrong one would.
    """
    if not authorization:
        return None
    scheme, space, token = authorization.strip().partition(" ")
    if not space:
        token = scheme  # no scheme: the whole value is the candidate token
    elif scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token:
        return None
    try:
        return token.encode("ascii")
    except UnicodeEncodeError:
        return None


def _is_json(content_type: str | None) -> bool:
    if content_type == JSON:
        return True
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == JSON


def _parse(model: type[_Model], content_type: str | None, body: bytes) -> _Model:
    """Body bytes to a validated model, or the 415/400/422 that explains why not."""
    if not _is_json(content_type):
        raise RequestError(
            "unsupported_media_type", 415, "The request body must be sent as application/json"
        )
    try:
        return model.__pydantic_validator__.validate_json(body)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _validation_error(exc: ValidationError) -> RequestError:
    problems: list[FieldProblem] = []
    for error in exc.errors(include_url=False, include_input=False):
        location = error["loc"]
        if error["type"] == "json_invalid" or (error["type"] == "model_type" and not location):
            return RequestError("invalid_json", 400, "The request body must be a JSON object")
        message = error["msg"].removeprefix("Value error, ")
        if location and location[-1] == "[key]":
            # A bad map key: name the map, not the key (it may be huge or hostile).
            location = location[:-2]
            message = f"a key: {message}"
        problems.append(FieldProblem(".".join(str(part) for part in location), message))
    fields = ", ".join(sorted({p.field for p in problems}))
    return RequestError(
        "validation_error", 422, f"Invalid fields: {fields}", details=tuple(problems)
    )


def _instance_params(path: str, prefix: str) -> tuple[str, ...]:
    """`(service, instance)` from `<prefix><service>/<instance>`, or () when it is not that."""
    service, _, instance = path[len(prefix) :].partition("/")
    if service and instance and "/" not in instance:
        return (service, instance)
    return ()


def _read_params(
    query: bytes, max_filter_pairs: int
) -> tuple[int | None, float, InstanceFilter | None]:
    """`index`, `wait` and the filter of a read's query string, or the 422 naming the bad one."""
    index: int | None = None
    wait = DEFAULT_WAIT
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        pairs = []
    only = read_filter(pairs, max_filter_pairs)
    for key, value in pairs:
        if key == "index":
            if not value.isascii() or not value.isdigit() or len(value) > 19:
                raise query_error("index", "must be a non-negative integer")
            index = int(value)
        elif key == "wait":
            match = _WAIT_RE.fullmatch(value)
            if match is None:
                raise query_error("wait", "must be a duration like 30s, 2m or 500ms")
            wait = min(MAX_WAIT, float(match.group(1)) * _WAIT_UNITS[match.group(2)])
    return index, wait, only
