"""Log lines: logfmt that a logfmt reader gets back intact, and tokens that never appear."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from frontend_kit import (
    READ_TOKEN,
    SECRET,
    Group,
    Kit,
    http_client,
    make_runtime,
    register,
    register_body,
)

from frontends.runtime.logs import log as registry_log
from frontends.runtime.logs import log_effect, logfmt
from frontends.runtime.runtime import Runtime
from frontends.runtime.settings import load_settings
from frontends.trio_app import app as trio_app
from sd_core import (
    HttpRequest,
    InstanceRegistered,
    InstanceRemoved,
    RunProbe,
    SelfPreservationChanged,
    StatusChanged,
    judge_probe,
)

LOGGER = registry_log.name  # the registry's own logger

# ------------------------------------------------------------ a logfmt reader

_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)")
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"'}


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in _SIMPLE:
            return _SIMPLE[code]
        if len(code) > 1:
            return chr(int(code[1:], 16))
        raise ValueError(f"unknown escape \\{code}")

    return _ESCAPE.sub(one, text)


def parse_logfmt(line: str) -> list[tuple[str, str]]:
    """key=value pairs as go-logfmt reads them: a quoted value ends at an unescaped quote."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] == " ":
            i += 1
            continue
        start = i
        while i < n and line[i] not in ' ="':
            i += 1
        key = line[start:i]
        if not key or i >= n or line[i] != "=":
            raise ValueError(f"expected key= at {start}: {line!r}")
        i += 1
        if i < n and line[i] == '"':
            i += 1
            start = i
            while True:
                if i >= n:
                    raise ValueError(f"unterminated quoted value: {line!r}")
                if line[i] == "\\":
                    i += 2
                elif line[i] == '"':
                    break
                else:
                    i += 1
            value = _unescape(line[start:i])
            i += 1
            if i < n and line[i] != " ":
                raise ValueError(f"text right after a quoted value at {i}: {line!r}")
        else:
            start = i
            while i < n and line[i] != " ":
                i += 1
            value = line[start:i]
            if '"' in value or "=" in value:
                raise ValueError(f"unquoted value with a quote or '=': {line!r}")
        pairs.append((key, value))
    return pairs


def test_the_reader_reads_what_it_should() -> None:
    assert parse_logfmt('event=x a=1 b="two words" c="q\\"\\\\"') == [
        ("event", "x"),
        ("a", "1"),
        ("b", "two words"),
        ("c", 'q"\\'),
    ]
    for broken in ['a="x\\\\"y"', 'a="open', "a=b=c"]:
        with pytest.raises(ValueError):
            parse_logfmt(broken)


# ----------------------------------------------------------------- logfmt


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("plain", "plain"),
        ("game-service", "game-service"),
        (42, "42"),
        (0.5, "0.5"),
        (None, "None"),
        ("two words", '"two words"'),
        ("", '""'),
        ("k=v", '"k=v"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("tab\there", '"tab\\there"'),
        ("bell\x07", '"bell\\x07"'),
    ],
)
def test_logfmt_renders_and_quotes(value: object, rendered: str) -> None:
    assert logfmt("registered", v=value) == f"event=registered v={rendered}"


def test_logfmt_keeps_field_order() -> None:
    line = logfmt("status_changed", service="game", instance="g-1", old="unknown", new="healthy")
    assert line == "event=status_changed service=game instance=g-1 old=unknown new=healthy"


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "two words",
        "",
        "k=v",
        "line\nbreak\r\n",
        "\x00\x1b[31m",
        "tab\there",
        "café",
        "café au lait",
        'say "hi"',
        "C:\\temp",
        'x" admin=true y="',
    ],
)
def test_a_logfmt_reader_gets_every_value_back(value: str) -> None:
    line = logfmt("probe", reason=value)
    assert "\n" not in line and "\r" not in line
    assert parse_logfmt(line) == [("event", "probe"), ("reason", value)]


def test_a_hostile_health_body_cannot_forge_log_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    now = [100.0]
    runtime = Runtime(
        load_settings({"SERVICE_DISCOVERY_SECRET": SECRET}), trio_app.PARTS, clock=lambda: now[0]
    )
    register(runtime, "svc", "i-1")
    instance = runtime.registry.instance_snapshot("svc", "i-1")
    assert instance is not None
    probe = RunProbe("svc", "i-1", "http://127.0.0.1:8080/health", instance.generation)
    body = b'{"status": "down\\" admin=true note=\\""}'
    for _ in range(2):  # FAILURE_THRESHOLD defaults to 2
        now[0] += 30
        runtime.record_probe_result(judge_probe(probe, 200, body))
    [line] = [r.getMessage() for r in caplog.records if "event=status_changed" in r.getMessage()]
    assert [key for key, _ in parse_logfmt(line)] == [
        "event",
        "service",
        "instance",
        "old",
        "new",
        "reason",
    ]


@pytest.mark.parametrize(
    ("effect", "level", "line"),
    [
        (
            InstanceRegistered("svc", "i-1", "http://127.0.0.1:80/health", updated=False),
            logging.INFO,
            "event=registered service=svc instance=i-1 probe_url=http://127.0.0.1:80/health",
        ),
        (
            InstanceRegistered("svc", "i-1", "http://[::1]:80/health", updated=True),
            logging.INFO,
            "event=re_registered service=svc instance=i-1 probe_url=http://[::1]:80/health",
        ),
        (
            InstanceRemoved("svc", "i-1", "ttl_expired"),
            logging.INFO,
            "event=removed service=svc instance=i-1 reason=ttl_expired",
        ),
        (
            StatusChanged("svc", "i-1", "healthy", "unhealthy", "timeout after 5s"),
            logging.INFO,
            "event=status_changed service=svc instance=i-1 old=healthy new=unhealthy"
            ' reason="timeout after 5s"',
        ),
        (
            SelfPreservationChanged(False, "heartbeats came back"),
            logging.WARNING,
            'event=self_preservation_off reason="heartbeats came back"',
        ),
    ],
)
def test_each_effect_is_one_line(
    caplog: pytest.LogCaptureFixture, effect: Any, level: int, line: str
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    log_effect(effect)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(level, line)]


# ------------------------------------------------------- tokens never logged


def assert_no_token_logged(caplog: pytest.LogCaptureFixture) -> None:
    text = caplog.text
    for record in caplog.records:
        text += record.getMessage() + repr(record.args) + (record.exc_text or "")
    for token in (SECRET, READ_TOKEN):
        assert token not in text
        assert token.lower() not in text.lower()


def test_tokens_never_reach_the_log_through_the_runtime(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    now = [50.0]
    settings = load_settings(
        {"SERVICE_DISCOVERY_SECRET": SECRET, "SERVICE_DISCOVERY_READ_TOKEN": READ_TOKEN}
    )
    runtime = Runtime(settings, trio_app.PARTS, clock=lambda: now[0])
    json_type = "application/json"
    statuses = []
    requests: list[tuple[str, str, str | None, bytes]] = [
        ("POST", "/v1/discovery/register", f"Bearer {SECRET}", register_body("svc", "i-1")),
        (
            "POST",
            "/v1/discovery/heartbeat",
            f"bearer {SECRET}",
            b'{"service_name": "svc", "instance_id": "i-1"}',
        ),
        ("POST", "/v1/discovery/register", f"Bearer {SECRET}x", register_body("svc", "i-2")),
        ("POST", "/v1/discovery/register", f"Basic {SECRET}", register_body("svc", "i-2")),
        ("POST", "/v1/discovery/register", f"Bearer {READ_TOKEN}", register_body("svc", "i-2")),
        ("POST", "/v1/discovery/register", f"Bearer {SECRET}", b"{broken"),
        ("POST", "/v1/discovery/register", f"Bearer {SECRET}", b'{"port": 0}'),
        ("GET", "/v1/discovery/services/svc", f"Bearer {READ_TOKEN}", b""),
        ("DELETE", "/v1/discovery/unregister/svc/i-1", f"Bearer {SECRET}", b""),
    ]
    for method, path, authorization, body in requests:
        now[0] += 1
        result = runtime.handle(HttpRequest(method, path, b"", authorization, json_type, body))
        statuses.append(getattr(result, "status", None))
    assert statuses == [200, 200, 401, 401, 403, 400, 422, 200, 200]

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the mapping broke")

    monkeypatch.setattr(runtime.node, "answer", explode)
    result = runtime.handle(
        HttpRequest("GET", "/v1/discovery/services", b"", f"Bearer {SECRET}", None, b"")
    )
    assert getattr(result, "status", None) == 500

    messages = [r.getMessage() for r in caplog.records]
    assert any("event=registered" in m for m in messages)  # the capture does see the logs
    assert any("event=internal_error" in m for m in messages)
    assert_no_token_logged(caplog)


def test_tokens_never_reach_the_log_through_either_app(
    make_kit: Callable[[], Kit], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario(kit: Kit, group: Group) -> None:
        runtime = make_runtime(kit)
        app = kit.make_app(runtime)
        async with http_client(app) as client:
            good = {"authorization": f"Bearer {SECRET}", "content-type": "application/json"}
            bad = {"authorization": f"Bearer {SECRET[:-1]}", "content-type": "application/json"}
            read = {"authorization": f"Bearer {READ_TOKEN}", "content-type": "application/json"}
            heartbeat = b'{"service_name": "svc", "instance_id": "i-1"}'
            script: list[tuple[str, str, dict[str, str], bytes | None, int]] = [
                ("POST", "/v1/discovery/register", good, register_body("svc", "i-1"), 200),
                ("POST", "/v1/discovery/heartbeat", good, heartbeat, 200),
                ("POST", "/v1/discovery/heartbeat", bad, heartbeat, 401),
                ("POST", "/v1/discovery/heartbeat", read, heartbeat, 403),
                ("POST", "/v1/discovery/register", good, b"x" * 70_000, 413),
                ("GET", "/nope", good, None, 404),
                ("DELETE", "/v1/discovery/unregister/svc/i-1", good, None, 200),
            ]
            for method, path, headers, body, status in script:
                await kit.sleep(1)
                response: httpx.Response = await client.request(
                    method, path, headers=headers, content=body
                )
                assert response.status_code == status

    make_kit().run(scenario)
    assert any("event=registered" in r.getMessage() for r in caplog.records)
    assert_no_token_logged(caplog)
