"""`GET /v1/discovery/watch`: watches as a Server-Sent Events stream.

First events carry each followed service's state and index; then one event
per index rise; the SSE id is a global index position a client resumes from
(`Last-Event-ID` or `?index=`) without missing a change. Auth and parameters
are refused like any read, before a stream starts; open streams are limited;
a reader that falls too far behind is dropped; shutdown ends streams cleanly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing

import pytest

from conformance.client import Api, api_for, instance_body
from conformance.common import QUIET_INTERVAL, READ_TOKEN, SECRET, unique_name
from conformance.dedicated_servers import server_fixture
from conformance.fixture_types import Clients, Launcher
from conformance.server_process import ServerProcess
from conformance.sse_client import Event, SseStream

AUTH = {"Authorization": f"Bearer {SECRET}"}


watch_server = server_fixture(
    {
        "HEALTH_CHECK_INTERVAL_SECONDS": QUIET_INTERVAL,
        "SERVICE_DISCOVERY_WATCH_KEEPALIVE_SECONDS": "0.2",
    }
)


@pytest.fixture
def wapi(watch_server: ServerProcess, clients: Clients) -> Api:
    return clients(watch_server)


@pytest.fixture
def open_stream(watch_server: ServerProcess) -> Iterator[Callable[..., SseStream]]:
    """Opens streams on the module's server (with the write token unless told); closes them all."""
    with ExitStack() as opened:

        def start(target: str, headers: dict[str, str] | None = None) -> SseStream:
            headers = AUTH if headers is None else headers
            return opened.enter_context(closing(SseStream.open(watch_server.port, target, headers)))

        yield start


def _next(stream: SseStream) -> Event:
    event = stream.next_event()
    assert event is not None, "the stream ended"
    return event


def test_first_events_carry_state_and_index(
    wapi: Api, open_stream: Callable[..., SseStream]
) -> None:
    known, unknown = unique_name("wk"), unique_name("wu")
    wapi.register_ok(instance_body(known, "i1"))
    stream = open_stream(f"/v1/discovery/watch?service={known}&service={unknown}")
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    first = [_next(stream), _next(stream)]
    by_name = {event.json()["service_name"]: event for event in first}
    assert set(by_name) == {known, unknown}
    assert all(event.event == "service" for event in first)
    assert by_name[unknown].json()["instances"] == []
    body = by_name[known].json()
    assert body["index"] == wapi.service_index(known)
    service = wapi.service(known).json()
    assert body["instances"] == service["instances"]
    # Ordered by index; the last first event carries the id.
    assert first[-1].id is not None
    assert [e.json()["index"] for e in first] == sorted(e.json()["index"] for e in first)


def test_each_index_rise_is_one_event(wapi: Api, open_stream: Callable[..., SseStream]) -> None:
    name = unique_name("wr")
    stream = open_stream(f"/v1/discovery/watch?service={name}")
    _next(stream)
    wapi.register_ok(instance_body(name, "i1"))
    event = _next(stream)
    assert event.json()["service_name"] == name
    assert [i["instance_id"] for i in event.json()["instances"]] == ["i1"]
    assert event.id == str(event.json()["index"]) == str(wapi.service_index(name))
    wapi.unregister(name, "i1")
    gone = _next(stream)
    assert gone.json()["instances"] == []
    assert int(gone.id or 0) > int(event.id or 0)


def test_other_services_send_nothing_but_keepalives(
    wapi: Api, open_stream: Callable[..., SseStream]
) -> None:
    name, other = unique_name("wq"), unique_name("wo")
    stream = open_stream(f"/v1/discovery/watch?service={name}")
    _next(stream)
    wapi.register_ok(instance_body(other, "i1"))
    wapi.register_ok(instance_body(name, "i1"))
    event = _next(stream)  # the first event after the start is this service's
    assert event.json()["service_name"] == name
    stream.wait_comment()
    assert stream.comments > 0, "no keep-alive comment"


def test_every_service(wapi: Api, open_stream: Callable[..., SseStream]) -> None:
    name = unique_name("wall")
    stream = open_stream(f"/v1/discovery/watch?service=*&index={wapi.global_index()}")
    wapi.register_ok(instance_body(name, "i1"))
    event = _next(stream)
    assert event.json()["service_name"] == name


@pytest.mark.parametrize("how", ["last-event-id", "index"])
def test_resume_misses_no_change(
    wapi: Api, open_stream: Callable[..., SseStream], how: str
) -> None:
    quiet, changed = unique_name("wsq"), unique_name("wsc")
    stream = open_stream(f"/v1/discovery/watch?service={quiet}&service={changed}")
    last = [_next(stream), _next(stream)][-1].id
    assert last is not None
    stream.close()
    wapi.register_ok(instance_body(changed, "i1"))  # while disconnected
    target = f"/v1/discovery/watch?service={quiet}&service={changed}"
    headers = dict(AUTH)
    if how == "index":
        target += f"&index={last}"
    else:
        target += "&index=0"  # the header wins over the first request's index
        headers["Last-Event-ID"] = last
    resumed = open_stream(target, headers)
    event = _next(resumed)
    assert event.json()["service_name"] == changed  # the quiet one is not sent again
    assert [i["instance_id"] for i in event.json()["instances"]] == ["i1"]
    wapi.register_ok(instance_body(quiet, "i2"))
    assert _next(resumed).json()["service_name"] == quiet


def test_read_only_token_is_enough(watch_server: ServerProcess) -> None:
    stream = SseStream.open(
        watch_server.port,
        f"/v1/discovery/watch?service={unique_name('wt')}",
        {"Authorization": f"Bearer {READ_TOKEN}"},
    )
    try:
        assert stream.status == 200
        assert _next(stream).json()["instances"] == []
    finally:
        stream.close()


@pytest.mark.parametrize(
    ("headers", "target", "status", "code"),
    [
        ({}, "/v1/discovery/watch?service=a", 401, "unauthorized"),
        ({"Authorization": "Bearer wrong"}, "/v1/discovery/watch?service=a", 401, "unauthorized"),
        (AUTH, "/v1/discovery/watch", 422, "validation_error"),
        (AUTH, "/v1/discovery/watch?service=a&index=x", 422, "validation_error"),
        (AUTH, "/v1/discovery/watch?service=%00&service=..%2F..", 422, "validation_error"),
        (
            AUTH,
            "/v1/discovery/watch?" + "&".join(f"service=s{n}" for n in range(257)),
            422,
            "validation_error",
        ),
    ],
)
def test_refused_before_the_stream_starts(
    watch_server: ServerProcess, headers: dict[str, str], target: str, status: int, code: str
) -> None:
    stream = SseStream.open(watch_server.port, target, headers)
    try:
        assert stream.status == status
        assert stream.headers["content-type"] == "application/json"
        assert f'"error":"{code}"' in stream.body.decode()
    finally:
        stream.close()


def test_open_streams_are_limited(launch: Launcher) -> None:
    server = launch({"SERVICE_DISCOVERY_MAX_WATCH_STREAMS": "1"})
    target = "/v1/discovery/watch?service=limited"
    first = SseStream.open(server.port, target, AUTH)
    try:
        assert first.status == 200
        second = SseStream.open(server.port, target, AUTH)
        assert second.status == 503
        assert second.headers.get("retry-after") == "1"
        assert '"error":"overloaded"' in second.body.decode()
        second.close()
    finally:
        first.close()
    # A stream the client closed gives its slot back.
    deadline = time.monotonic() + 10
    while True:
        again = SseStream.open(server.port, target, AUTH)
        again.close()
        if again.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert again.status == 200


def test_slow_reader_is_dropped(launch: Launcher) -> None:
    server = launch({"HEALTH_CHECK_INTERVAL_SECONDS": QUIET_INTERVAL})
    name = unique_name("wslow")
    padding = {f"k{n}": "x" * 200 for n in range(19)}  # under the 4 KiB metadata cap
    with api_for(server.url, SECRET) as api:
        for number in range(20):
            api.register_ok(instance_body(name, f"i{number}", metadata=padding))
        stream = SseStream.open(
            server.port, f"/v1/discovery/watch?service={name}", AUTH, rcvbuf=4096
        )
        try:
            assert stream.status == 200
            # ~80 KiB per event, never read: far past the 1 MiB bound and every buffer.
            for round_ in range(200):
                api.register_ok(instance_body(name, "i0", metadata={**padding, "r": str(round_)}))
                if "watch_stream_dropped" in server.stderr():
                    break
            assert "watch_stream_dropped" in server.stderr()
            stream.read_to_end()  # the server ends the connection: this returns
            assert stream.closed or stream.ended
        finally:
            stream.close()


def test_shutdown_ends_streams_cleanly(launch: Launcher) -> None:
    server = launch()
    stream = SseStream.open(server.port, "/v1/discovery/watch?service=*", AUTH)
    try:
        assert stream.status == 200
        server.terminate()
        stream.read_to_end()
        assert stream.ended, "the stream did not end with its last chunk"
        assert server.wait_exit(15) == 0
    finally:
        stream.close()
