"""Schemathesis against each frontend's own `/openapi.json`, as a running server.

Every operation the document lists is fuzzed with schemathesis's Python API
(`schemathesis.openapi.from_url`, `APIOperation.as_strategy`, `Case.call`,
`Case.validate_response`), in both generation modes: *positive* (requests the
schema calls valid) and *negative* (requests that break it somewhere). Each
generated request is sent with the bearer token and its response must:

- never be a 5xx (the contract: no request may produce a 500);
- have a status code the document lists for that operation, a body matching
  the documented response schema, the documented response headers, and the
  documented Content-Type (schemathesis's `not_a_server_error`,
  `status_code_conformance`, `response_schema_conformance`,
  `response_headers_conformance`, `content_type_conformance`);
- be `application/json`, carry the one error shape
  `{"success": false, "error": ..., "message": ...}` on every non-2xx
  (`details` exactly on 422, `WWW-Authenticate: Bearer` on 401), an
  `X-Discovery-Index` on every read answer, and never echo a token
  (checked here, beyond what the schema can say).

Failures are collected over the whole run rather than stopping at the first,
and reported grouped by operation, mode and problem, with a curl line
(schemathesis masks the token) and the response.

Positive cases are steered a little so the fuzzing reaches deep paths: the
published schema cannot express the `host` rules, so generated registrations
get a valid host (and health endpoint) from a pool; half of the heartbeats,
unregistrations and single-service reads name instances and services seeded
before the run (with hostile metadata keys), so 200 paths render real data.
That the schema itself is as strict as the server is checked by
`test_schema_valid_request_is_accepted` below, not worked around silently.

Knobs (environment variables):

- `RELIABILITY_FUZZ_EXAMPLES` (default 64): examples per operation and
  generation mode. 64 gives a little over 1,000 requests per frontend in
  about 30-40 s on two cores; raise it for a longer soak, e.g. 1000.
- `RELIABILITY_FUZZ_SEED` (default 20240115): the Hypothesis seed; runs are
  deterministic for a given seed, examples count and schema.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st
from reliability_support import AUTH, READ_TOKEN, SECRET, base_env
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conformance.client import tls_context
from conformance.server_process import ServerProcess, serving
from sd_core.consul_query import parse_duration

AnyCase = Case[Any]

DEFAULT_EXAMPLES = 64
EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", str(DEFAULT_EXAMPLES)))
SEED = int(os.environ.get("RELIABILITY_FUZZ_SEED", "20240115"))

#: The default run must send at least this many generated requests per frontend.
MIN_REQUESTS = 1000 * EXAMPLES // DEFAULT_EXAMPLES

#: A response slower than this on loopback means something blocked.
SLOW_SECONDS = 3.0

#: Every operation the document must list (a lost operation would go unfuzzed).
OPERATIONS = {
    "POST /v1/discovery/register",
    "POST /v1/discovery/heartbeat",
    "DELETE /v1/discovery/unregister/{service_name}/{instance_id}",
    "PUT /v1/discovery/maintenance/{service_name}/{instance_id}",
    "DELETE /v1/discovery/maintenance/{service_name}/{instance_id}",
    "GET /v1/discovery/services",
    "GET /v1/discovery/services/{name}",
    "GET /v1/discovery/services/{name}/healthy",
    "GET /v1/discovery/services/{name}/instances",
    "GET /v1/discovery/prometheus",
    "GET /v1/discovery/token",
    "GET /health",
    "GET /v1/agent/self",
    "GET /v1/catalog/services",
    "GET /v1/catalog/service/{name}",
    "GET /v1/health/service/{name}",
    "GET /v1/health/state/{state}",
    "GET /v1/kv/{key}",
}
#: Reads of the registry's state (they carry its index); the token's access is not
#: one, nor is Consul's `/v1/agent/self` (this node's names).
NOT_STATE = ("GET /v1/discovery/token", "GET /v1/agent/self")
READS = {label for label in OPERATIONS if label.startswith("GET /v1/") and label not in NOT_STATE}

#: The Consul-compatible reads (docs/integrations.md): their `wait` is a Go duration.
CONSUL_READS = {
    label
    for label in OPERATIONS
    if label.startswith(("GET /v1/catalog/", "GET /v1/health/", "GET /v1/kv/"))
}

#: Documented, but never fuzzed here: a stream does not end, so it has its own
#: conformance tests (conformance/test_watch_stream.py).
STREAMS = {"GET /v1/discovery/watch"}

SCHEMATHESIS_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# ----------------------------------------------------------------- seed data

#: Seeded before the run; metadata keys chosen to stress the Prometheus labels.
SEEDED: list[dict[str, Any]] = [
    {
        "service_name": "fuzz-game",
        "instance_id": "g-1",
        "host": "127.0.0.1",
        "port": 8080,
        "metadata": {
            "version": "1.0.0",
            "app-version": "dash",
            "app.version": "dot",
            "__address__": "evil.example:80",
            "job": "other-job",
            "instance": "spoofed",
            "status": "spoofed",
            "9lives": "digit-first",
            "ünïcode": "välue ✓",
            "quote": "\"'\\",
        },
    },
    {"service_name": "fuzz-game", "instance_id": "g-2", "host": "::1", "port": 8081},
    {
        "service_name": "fuzz-game",
        "instance_id": "g-3",
        "host": "[::1]",
        "port": 65535,
        "health_endpoint": "/status?verbose=1&x=%20",
        "load_percentage": 0.75,
    },
    {
        "service_name": "Fuzz.dotted_name-1",
        "instance_id": "A.b_c-9",
        "host": "svc-a.internal",
        "port": 1,
        "metadata": {"long": "x" * 1024, "k" * 128: "v"},
    },
]
DISPOSABLE = [
    {"service_name": "fuzz-disposable", "instance_id": f"d-{n}", "host": "127.0.0.1", "port": 9}
    for n in range(150)
]
KNOWN_NAMES = sorted({body["service_name"] for body in SEEDED + DISPOSABLE})
KNOWN_PAIRS = sorted({(b["service_name"], b["instance_id"]) for b in SEEDED + DISPOSABLE})

VALID_HOSTS = [
    "127.0.0.1",
    "localhost",
    "::1",
    "[::1]",
    "2001:db8::7",
    "10.1.2.3",
    "169.254.169.254",  # refused by the probe policy: registered, message says so
    "svc-a.internal",
    "a.b-c.d.",
    "x" * 63 + ".example",
]
HOSTS = st.one_of(
    st.sampled_from(VALID_HOSTS),
    st.from_regex(r"\A[a-z][a-z0-9-]{0,20}[a-z0-9](\.[a-z][a-z0-9-]{0,20}[a-z0-9]){0,3}\Z"),
)
_HEALTH_ENDPOINT_OK = re.compile(r"/(?!/)[^\s\x00-\x1f\x7f-\x9f#]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WAIT = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,9})?)(ms|s|m|h)?")
_WAIT_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _with_valid_host(pair: tuple[AnyCase, str]) -> AnyCase:
    """The published schema cannot say what a host is; give the case one that is."""
    case, host = pair
    if isinstance(case.body, dict):
        case.body["host"] = host
        endpoint = case.body.get("health_endpoint")
        if isinstance(endpoint, str) and not _HEALTH_ENDPOINT_OK.fullmatch(endpoint):
            case.body["health_endpoint"] = "/health"
        metadata = case.body.get("metadata")
        if isinstance(metadata, dict):
            case.body["metadata"] = {
                k: v
                for k, v in metadata.items()
                if not _CONTROL.search(k) and not (isinstance(v, str) and _CONTROL.search(v))
            }
    return case


def _naming_known_instance(pair: tuple[AnyCase, tuple[str, str]]) -> AnyCase:
    case, (service, instance) = pair
    if isinstance(case.body, dict):
        case.body["service_name"] = service
        case.body["instance_id"] = instance
    if case.path_parameters and "service_name" in case.path_parameters:
        case.path_parameters["service_name"] = service
        case.path_parameters["instance_id"] = instance
    return case


def _naming_known_service(pair: tuple[AnyCase, str]) -> AnyCase:
    case, name = pair
    if case.path_parameters and "name" in case.path_parameters:
        case.path_parameters["name"] = name
    return case


def strategy_for(operation: Any, mode: GenerationMode) -> st.SearchStrategy[AnyCase]:
    generated: st.SearchStrategy[AnyCase] = operation.as_strategy(generation_mode=mode)
    if mode is not GenerationMode.POSITIVE:
        return generated
    label = operation.label
    if label == "POST /v1/discovery/register":
        return st.tuples(generated, HOSTS).map(_with_valid_host)
    if label in {
        "POST /v1/discovery/heartbeat",
        "DELETE /v1/discovery/unregister/{service_name}/{instance_id}",
    }:
        known = st.tuples(generated, st.sampled_from(KNOWN_PAIRS)).map(_naming_known_instance)
        return st.one_of(known, generated)
    if "{name}" in label:
        known = st.tuples(generated, st.sampled_from(KNOWN_NAMES)).map(_naming_known_service)
        return st.one_of(known, generated)
    return generated


def keep_blocking_short(case: AnyCase) -> None:
    """A blocking query may wait up to 5 minutes: hold a generated one for 5 ms at most.

    Only a `wait` the server would accept is shortened (and a missing one,
    whose default is 60 s); a malformed one is left alone, it must get a 422.
    """
    query = case.query
    if not query or "index" not in query:
        return
    wait = query.get("wait")
    if wait is None or isinstance(wait, list):
        query["wait"] = "5ms"
        return
    if case.operation.label in CONSUL_READS:  # Go durations: `1m30s`, `500us`
        seconds = parse_duration(str(wait))
        if seconds is not None and seconds > 0.005:
            query["wait"] = "5ms"
        return
    match = _WAIT.fullmatch(str(wait))
    if match is not None and float(match.group(1)) * _WAIT_UNITS[match.group(2)] > 0.005:
        query["wait"] = "5ms"


# ----------------------------------------------------------- own checks


def header(response: Response, name: str) -> str | None:
    values = response.headers.get(name.lower())
    return None if values is None else ", ".join(values)


def text_of(response: Response) -> str:
    return response.content.decode("utf-8", "replace")


def contract_problems(label: str, response: Response) -> list[str]:
    """Rules of docs/api.md that hold for every response, beyond the schema."""
    problems: list[str] = []
    status = response.status_code
    content_type = header(response, "content-type")
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        problems.append(f"Content-Type {content_type!r}")
    if status >= 500:
        problems.append(f"5xx status {status}")
    text = text_of(response)
    if SECRET in text or READ_TOKEN in text:
        problems.append("a token is echoed in the body")
    if any(SECRET in v or READ_TOKEN in v for vs in response.headers.values() for v in vs):
        problems.append("a token is echoed in a header")
    try:
        body = json.loads(text)
    except ValueError:
        return [*problems, "body is not JSON"]
    if not 200 <= status < 300:
        problems.extend(_error_shape_problems(status, body, response))
    if label in READS and (200 <= status < 300 or status == 404):
        index = header(response, "x-discovery-index") or ""
        if not index.isdigit():
            problems.append(f"read answer without a valid X-Discovery-Index ({index!r})")
    return problems


def _error_shape_problems(status: int, body: Any, response: Response) -> list[str]:
    if not isinstance(body, dict):
        return ["error body is not an object"]
    problems: list[str] = []
    expected = {"success", "error", "message"} | ({"details"} if status == 422 else set())
    if set(body) != expected:
        problems.append(f"error body keys {sorted(body)} != {sorted(expected)}")
    if body.get("success") is not False:
        problems.append("error body without success: false")
    if not isinstance(body.get("error"), str) or not re.fullmatch(r"[a-z_]+", body["error"]):
        problems.append(f"error code {body.get('error')!r} is not a stable machine code")
    if not isinstance(body.get("message"), str) or not body["message"]:
        problems.append("error body without a message")
    if status == 422:
        details = body.get("details")
        if not isinstance(details, list) or not details:
            problems.append("422 without details")
        elif not all(
            isinstance(d, dict)
            and set(d) == {"field", "message"}
            and all(isinstance(v, str) for v in d.values())
            for d in details
        ):
            problems.append(f"malformed details {details!r}"[:300])
    if status == 401 and header(response, "www-authenticate") != "Bearer":
        problems.append("401 without WWW-Authenticate: Bearer")
    return problems


# -------------------------------------------------------------- recording


class FuzzRecord:
    """Counts every request and collects every failure, grouped for the report."""

    def __init__(self) -> None:
        self.requests = 0
        self.statuses: Counter[tuple[str, str, int]] = Counter()
        self.failures: Counter[tuple[str, str, str, int]] = Counter()
        self.examples: dict[tuple[str, str, str, int], list[str]] = defaultdict(list)

    def fail(self, key: tuple[str, str, str, int], case: AnyCase, detail: str) -> None:
        self.failures[key] += 1
        if len(self.examples[key]) < 2:
            curl = case.as_curl_command(headers=AUTH)
            self.examples[key].append(f"{curl}\n      -> {detail}"[:1200])

    def check(self, case: AnyCase, response: Response, mode: str, elapsed: float) -> None:
        label = case.operation.label
        status = response.status_code
        self.requests += 1
        self.statuses[(label, mode, status)] += 1
        excerpt = f"{status} {text_of(response)[:300]!r}"
        try:
            case.validate_response(response, checks=SCHEMATHESIS_CHECKS, headers=AUTH)
        except FailureGroup as group:
            for failure in group.exceptions:
                kind = f"schemathesis: {getattr(failure, 'title', type(failure).__name__)}"
                self.fail((label, mode, kind, status), case, f"{excerpt}\n      {failure}")
        for problem in contract_problems(label, response):
            self.fail((label, mode, problem, status), case, excerpt)
        if elapsed > SLOW_SECONDS:
            self.fail((label, mode, "slow answer", status), case, f"{elapsed:.2f} s")

    def report(self) -> str:
        lines = [f"{sum(self.failures.values())} failures in {self.requests} requests:"]
        for key, count in sorted(self.failures.items()):
            label, mode, problem, status = key
            lines.append(f"- {label} [{mode}] {status}: {problem} (x{count})")
            lines.extend(f"    {example}" for example in self.examples[key])
        return "\n".join(lines)

    def share(self, label: str, mode: str, ok: Callable[[int], bool]) -> float:
        total = sum(n for (lbl, m, _), n in self.statuses.items() if lbl == label and m == mode)
        good = sum(
            n for (lbl, m, s), n in self.statuses.items() if lbl == label and m == mode and ok(s)
        )
        return good / total if total else 0.0


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    record: FuzzRecord,
) -> None:
    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(case=strategy_for(operation, mode))
    def run(case: AnyCase) -> None:
        keep_blocking_short(case)
        start = time.monotonic()
        try:
            response = case.call(base_url=base_url, session=session, headers=AUTH, timeout=10)
        except requests.RequestException as error:
            record.fail((operation.label, mode.value, "no answer", 0), case, repr(error))
            return
        record.check(case, response, mode.value, time.monotonic() - start)

    run()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fuzz_server(frontend: str) -> Iterator[ServerProcess]:
    with serving(frontend, base_env()) as server:
        yield server


def seed_registry(url: str) -> None:
    with httpx.Client(base_url=url, headers=AUTH, timeout=10, verify=tls_context()) as client:
        for body in SEEDED + DISPOSABLE:
            response = client.post("/v1/discovery/register", json=body)
            assert response.status_code == 200, response.text


# ------------------------------------------------------------------- tests


def test_schemathesis_finds_no_contract_violation(fuzz_server: ServerProcess) -> None:
    seed_registry(fuzz_server.url)
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"schemathesis cannot use an operation: {result.err()}"
        operations.append(result.ok())
    labels = {op.label for op in operations}
    assert labels >= OPERATIONS, f"missing from the document: {OPERATIONS - labels}"
    # Anything else documented is a page for people or scrapers (HTML, scripts,
    # the metrics text), not part of the JSON API, and is not fuzzed here.
    pages = labels - OPERATIONS - STREAMS
    assert labels >= STREAMS, f"missing from the document: {STREAMS - labels}"
    assert all(label.startswith("GET /") and "/v1/" not in label for label in pages), pages
    operations = [op for op in operations if op.label in OPERATIONS]

    record = FuzzRecord()
    with requests.Session() as session:
        for operation in operations:
            modes = [GenerationMode.POSITIVE]
            if operation.body or any(True for _ in operation.iter_parameters()):
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                fuzz_operation(operation, mode, fuzz_server.url, session, record)

    assert not record.failures, record.report()
    assert record.requests >= MIN_REQUESTS, f"only {record.requests} requests generated"
    # The fuzzing reached the deep paths, not only the 4xx ones.
    register_ok = record.share("POST /v1/discovery/register", "positive", lambda s: s == 200)
    assert register_ok >= 0.5, f"only {register_ok:.0%} of positive registrations accepted"
    for label in ("POST /v1/discovery/heartbeat", "GET /v1/discovery/services/{name}"):
        assert record.share(label, "positive", lambda s: s == 200) > 0.1, record.statuses
    for (label, mode_name), expected in {
        ("POST /v1/discovery/register", "negative"): {400, 401, 422},
        ("GET /v1/discovery/services", "negative"): {401, 422},
    }.items():
        seen = {s for (lbl, m, s) in record.statuses if lbl == label and m == mode_name}
        assert expected <= seen, f"{label} [{mode_name}] only answered {sorted(seen)}"

    # The server's own view: nothing it answered was a 5xx, nothing it logged was an error.
    metrics = httpx.get(f"{fuzz_server.url}/metrics", verify=tls_context()).text
    assert not re.search(r'^sd_http_requests_total\{.*status="5\d\d"', metrics, re.M), metrics
    log = fuzz_server.stderr()
    assert "Traceback" not in log and "level=ERROR" not in log, log[-5000:]
    assert SECRET not in log and READ_TOKEN not in log


def test_unlisted_endpoints_keep_their_media_types(fuzz_server: ServerProcess) -> None:
    """`/metrics` and `/openapi.json` are not in the document; check them directly."""
    with httpx.Client(base_url=fuzz_server.url, verify=tls_context()) as client:
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain"), metrics.headers
        assert "sd_http_requests_total" in metrics.text
        document = client.get("/openapi.json")
        assert document.status_code == 200
        assert document.headers["content-type"] == "application/json"
        assert document.json()["openapi"].startswith("3.")


# ------------------------------------------- schema vs. validation (lead: openapi.py)


def _register(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"service_name": "fuzz-schema", "instance_id": "s-1"}
    body.update(host="127.0.0.1", port=8080)
    body.update(fields)
    return body


#: (id, method, path, query, JSON body, the schema to check it against in the document)
SCHEMA_VALID_REQUESTS: list[tuple[str, str, str, dict[str, str], Any, str]] = [
    ("empty-host", "POST", "/v1/discovery/register", {}, _register(host=""), "RegisterRequest"),
    (
        "host-with-spaces",
        "POST",
        "/v1/discovery/register",
        {},
        _register(host="not a host!"),
        "RegisterRequest",
    ),
    (
        "relative-health-endpoint",
        "POST",
        "/v1/discovery/register",
        {},
        _register(health_endpoint="health"),
        "RegisterRequest",
    ),
    (
        "control-char-in-metadata",
        "POST",
        "/v1/discovery/register",
        {},
        _register(metadata={"k": "line\nbreak"}),
        "RegisterRequest",
    ),
    (
        "wait-with-10-fraction-digits",
        "GET",
        "/v1/discovery/services",
        {"wait": "1.0000000001s"},
        None,
        "wait",
    ),
    (
        "wait-with-13-digits",
        "GET",
        "/v1/discovery/services",
        {"wait": "0000000000001"},
        None,
        "wait",
    ),
    (
        "index-with-20-digits",
        "GET",
        "/v1/discovery/services",
        {"index": "10000000000000000000"},
        None,
        "index",
    ),
]


def _schema_accepts(document: dict[str, Any], target: str, value: Any) -> bool:
    if target in {"wait", "index"}:
        parameters = document["paths"]["/v1/discovery/services"]["get"]["parameters"]
        schema = next(p["schema"] for p in parameters if p["name"] == target)
        value = int(value) if target == "index" else value
        return bool(jsonschema_rs.is_valid(schema, value))
    wrapper = {"$ref": f"#/components/schemas/{target}", "components": document["components"]}
    return bool(jsonschema_rs.is_valid(wrapper, value))


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "target"),
    [pytest.param(*spec[1:], id=spec[0]) for spec in SCHEMA_VALID_REQUESTS],
)
def test_schema_valid_request_is_accepted(
    fuzz_server: ServerProcess,
    method: str,
    path: str,
    query: dict[str, str],
    body: Any,
    target: str,
) -> None:
    """A request the published schema calls valid is not refused as invalid (422).

    Either fix makes this pass: the schema states the rule (the example
    becomes schema-invalid), or the server accepts the request.
    """
    with httpx.Client(base_url=fuzz_server.url, headers=AUTH, verify=tls_context()) as client:
        document = client.get("/openapi.json").json()
        value = body if body is not None else next(iter(query.values()))
        if not _schema_accepts(document, target, value):
            return  # the schema now says what the server enforces
        response = client.request(method, path, params=query, json=body)
    assert response.status_code != 422, f"schema-valid request refused: {response.text}"


@pytest.mark.parametrize("suffix", ["/healthy", "/instances"])
def test_schema_invalid_service_name_is_rejected(fuzz_server: ServerProcess, suffix: str) -> None:
    with httpx.Client(base_url=fuzz_server.url, headers=AUTH, verify=tls_context()) as client:
        document = client.get("/openapi.json").json()
        operation = document["paths"][f"/v1/discovery/services/{{name}}{suffix}"]["get"]
        name_schema = next(p["schema"] for p in operation["parameters"] if p["name"] == "name")
        name = "\u0089\u00a6"
        if jsonschema_rs.is_valid(name_schema, name):
            return  # the schema no longer promises the pattern
        response = client.get(f"/v1/discovery/services/{name}{suffix}")
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text}"
