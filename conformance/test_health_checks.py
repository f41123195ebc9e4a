"""Active health checks against real instances the test controls.

Runs on the probing server: every 0.5 s, timeout 0.4 s, success and failure
thresholds both 2. Every outcome docs/api.md lists is one registered fake
instance; they are all registered at once and watched together (one module
fixture), so the whole matrix costs a few probe periods, not one per case.

The hysteresis tests rely on the fake recording each probe *before* it
answers: whenever the registry shows a status, every probe that status can
depend on is already in the fake's log, so "unhealthy implies at least two
failures logged" is a race-free check.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from conformance.client import Api, api_for, assert_timestamp, instance_body, poll_until
from conformance.common import PROBE_INTERVAL, SECRET, unique_name
from conformance.fake_instances import (
    OK_LOAD,
    FakeInstance,
    ipv6_loopback_available,
    refused_port,
)
from conformance.fixture_types import MakeFake, Names
from conformance.server_process import ServerProcess

#: Generous bound for reaching a status that needs two probes 0.5 s apart.
SETTLE_SECONDS = 10.0


@dataclass(frozen=True)
class ProbeCase:
    """One probe outcome: where the instance answers and what it must become."""

    endpoint: str | None  # None: a refused port
    expected: str
    host: str = "127.0.0.1"
    load: float | None = None  # expected load_percentage afterwards


PROBE_CASES: dict[str, ProbeCase] = {
    "ok-json": ProbeCase("/ok?probe=1", "healthy", load=OK_LOAD),
    "plain-text": ProbeCase("/plain", "healthy", load=0.0),
    "204-no-body": ProbeCase("/no-content", "healthy"),
    "status-OK-any-case": ProbeCase("/json-upper-ok", "healthy"),
    "status-Up": ProbeCase("/json-up", "healthy"),
    "json-without-status": ProbeCase("/json-nostatus", "healthy"),
    "json-array": ProbeCase("/json-array", "healthy"),
    "non-numeric-load-ignored": ProbeCase("/json-load-string", "healthy", load=0.0),
    "load-clamped": ProbeCase("/json-load-clamp", "healthy", load=1.0),
    "status-unhealthy": ProbeCase("/json-unhealthy", "unhealthy"),
    "status-down": ProbeCase("/json-down", "unhealthy"),
    "status-fail": ProbeCase("/json-fail", "unhealthy"),
    "status-not-a-string": ProbeCase("/json-status-number", "unhealthy"),
    "http-500": ProbeCase("/500", "unhealthy"),
    "http-503": ProbeCase("/503", "unhealthy"),
    "http-404": ProbeCase("/missing", "unhealthy"),
    "redirect-not-followed": ProbeCase("/redirect", "unhealthy"),
    "hang-times-out": ProbeCase("/hang", "unhealthy"),
    "huge-body": ProbeCase("/huge", "unhealthy"),
    "connection-refused": ProbeCase(None, "unhealthy"),
}
if ipv6_loopback_available():
    PROBE_CASES["ipv6-bare"] = ProbeCase("/ok", "healthy", host="::1", load=OK_LOAD)
    PROBE_CASES["ipv6-bracketed"] = ProbeCase("/ok", "healthy", host="[::1]", load=OK_LOAD)


@dataclass
class Observed:
    """What the matrix fixture saw of one instance."""

    fake: FakeInstance | None
    registered_at: float
    history: list[str] = field(default_factory=list)
    first_probe_after: float | None = None
    last: dict[str, Any] | None = None


@pytest.fixture(scope="module")
def probe_matrix(probe_server: ServerProcess) -> Iterator[dict[str, Observed]]:
    """Register every case at once and watch them all until they settle.

    The service is read right after each registration too: registering all
    the cases takes a while on a loaded machine (cluster mode writes each to
    etcd), long enough for the first ones to reach their outcome before a
    loop that starts only afterwards could see them `unknown`.
    """
    service = unique_name("probe-matrix")
    fakes: list[FakeInstance] = []
    observed: dict[str, Observed] = {}

    def observe(api: Api) -> None:
        response = api.service(service)
        assert response.status_code == 200, response.text
        now = time.monotonic()
        for instance in response.json()["instances"]:
            seen = observed[instance["instance_id"]]
            seen.last = instance
            if not seen.history or seen.history[-1] != instance["status"]:
                seen.history.append(instance["status"])
            if instance["last_health_check"] is not None and seen.first_probe_after is None:
                seen.first_probe_after = now - seen.registered_at

    with api_for(probe_server.url, SECRET) as api:
        try:
            for case_id, case in PROBE_CASES.items():
                fake: FakeInstance | None = None
                if case.endpoint is None:
                    port, endpoint = refused_port(), "/health"
                else:
                    fake = FakeInstance(case.host.strip("[]"), hang_seconds=5.0).start()
                    fakes.append(fake)
                    port, endpoint = fake.port, case.endpoint
                observed[case_id] = Observed(fake, time.monotonic())
                api.register_ok(
                    instance_body(
                        service, case_id, host=case.host, port=port, health_endpoint=endpoint
                    )
                )
                observe(api)
            deadline = time.monotonic() + SETTLE_SECONDS
            while time.monotonic() < deadline:
                observe(api)
                if all(
                    seen.history and seen.history[-1] == PROBE_CASES[case_id].expected
                    for case_id, seen in observed.items()
                ):
                    break
                time.sleep(0.05)
            yield observed
        finally:
            for fake in fakes:
                fake.stop()


@pytest.mark.parametrize("case_id", PROBE_CASES)
def test_probe_outcome(probe_matrix: dict[str, Observed], case_id: str) -> None:
    case = PROBE_CASES[case_id]
    seen = probe_matrix[case_id]
    assert seen.history == ["unknown", case.expected], (
        f"status history {seen.history}, expected unknown -> {case.expected}"
    )
    assert seen.last is not None
    assert_timestamp(seen.last["last_health_check"])
    assert seen.first_probe_after is not None and seen.first_probe_after < PROBE_INTERVAL + 2.0, (
        f"first probe seen {seen.first_probe_after} s after registration"
    )
    if case.load is not None:
        assert seen.last["load_percentage"] == case.load
    if seen.fake is not None and case.endpoint is not None:
        path = case.endpoint.split("?")[0]
        assert seen.fake.hits(path) >= 2, f"the probe never reached {case.endpoint}"


def test_probe_uses_the_endpoint_with_its_query_string(probe_matrix: dict[str, Observed]) -> None:
    fake = probe_matrix["ok-json"].fake
    assert fake is not None
    assert set(fake.requests()) == {"/ok?probe=1"}


def test_redirect_is_not_followed(probe_matrix: dict[str, Observed]) -> None:
    fake = probe_matrix["redirect-not-followed"].fake
    assert fake is not None
    assert fake.hits("/ok") == 0, "the probe followed the redirect"


def test_healthy_endpoint_lists_the_healthy_ones(
    probe_matrix: dict[str, Observed], probe_api: Api
) -> None:
    service = next(iter(probe_matrix.values())).last
    assert service is not None
    name = service["service_name"]
    healthy = probe_api.healthy(name).json()
    assert healthy["service_name"] == name
    ids = [i["instance_id"] for i in healthy["healthy_instances"]]
    expected = sorted(k for k, c in PROBE_CASES.items() if c.expected == "healthy")
    assert ids == expected
    assert all(i["status"] == "healthy" for i in healthy["healthy_instances"])
    sd = probe_api.sd_instances(name).json()
    assert {g["labels"]["instance"]: g["labels"]["status"] for g in sd} == {
        k: c.expected for k, c in PROBE_CASES.items()
    }, "the SD list has every instance, healthy or not, with its status"


# -- hysteresis -------------------------------------------------------------------


def _register_toggle(api: Api, fake: FakeInstance, service: str) -> None:
    api.register_ok(instance_body(service, "t", port=fake.port, health_endpoint="/toggle"))


def _wait_for_status(api: Api, service: str, status: str) -> None:
    poll_until(
        lambda: True if api.status(service, "t") == status else None,
        SETTLE_SECONDS,
        f"{service} to become {status}",
    )


def _status_holds(
    api: Api, instance: FakeInstance, service: str, status: str, probes: int, mark: int = 0
) -> list[bool]:
    """Watch until ``probes`` toggle outcomes since ``mark``; the status must stay ``status``.

    Returns the outcomes seen, so the caller can check they were the scripted ones.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    while len(instance.toggle_outcomes(mark)) < probes:
        assert api.status(service, "t") == status, instance.toggle_outcomes(mark)
        assert time.monotonic() < deadline, "probes stopped"
        time.sleep(0.02)
    return instance.toggle_outcomes(mark)


def _turns(
    api: Api, instance: FakeInstance, service: str, mark: int, before: str, after: str
) -> None:
    """Watch the status go from ``before`` to ``after``, on no fewer than two probes since ``mark``.

    The fake logs each probe before answering it, so when ``after`` shows, every
    probe it can rest on is already in the log.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        status = api.status(service, "t")
        probes = len(instance.toggle_outcomes(mark))
        if status == after:
            assert probes >= 2, f"{after} after a single probe since the switch"
            return
        assert status == before, status
        assert time.monotonic() < deadline, f"never became {after}"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("settled", "blip"),
    [("healthy", False), ("unhealthy", True)],
    ids=["one-failure-keeps-healthy", "one-pass-keeps-unhealthy"],
)
def test_one_contrary_probe_keeps_the_status(
    probe_api: Api, fake: MakeFake, unique: Names, settled: str, blip: bool
) -> None:
    """One probe against the settled status, then the settled outcome again: no change."""
    instance = fake()
    instance.set_toggle(not blip)
    service = unique(f"hyst-one-{settled}")
    _register_toggle(probe_api, instance, service)
    _wait_for_status(probe_api, service, settled)
    mark = instance.queue_toggle(blip)
    outcomes = _status_holds(probe_api, instance, service, settled, 3, mark)
    assert outcomes[:3] == [blip, not blip, not blip]
    assert probe_api.status(service, "t") == settled


def test_two_failures_make_unhealthy_and_two_passes_make_healthy(
    probe_api: Api, fake: MakeFake, unique: Names
) -> None:
    instance = fake()
    service = unique("hyst-two")
    _register_toggle(probe_api, instance, service)
    _wait_for_status(probe_api, service, "healthy")
    _turns(probe_api, instance, service, instance.set_toggle(False), "healthy", "unhealthy")
    _turns(probe_api, instance, service, instance.set_toggle(True), "unhealthy", "healthy")


def test_alternating_outcomes_leave_unknown_unknown(
    probe_api: Api, fake: MakeFake, unique: Names
) -> None:
    """Thresholds count *consecutive* probes; until one is met the status stays."""
    instance = fake()
    instance.queue_toggle(*([True, False] * 10))
    service = unique("hyst-alternate")
    _register_toggle(probe_api, instance, service)
    _status_holds(probe_api, instance, service, "unknown", 5)
    item = probe_api.instance(service, "t")
    assert item is not None and item["status"] == "unknown"
    assert_timestamp(item["last_health_check"])


# -- re-registration and probe state ------------------------------------------------


def _registered_until(
    probe_api: Api, fake: MakeFake, unique: Names, endpoint: str, status: str
) -> tuple[str, dict[str, Any]]:
    """A new service's instance `t` on a fake at `endpoint`, once it reads `status`."""
    service = unique(f"rereg-{status}")
    body = instance_body(service, "t", port=fake().port, health_endpoint=endpoint)
    probe_api.register_ok(body)
    _wait_for_status(probe_api, service, status)
    return service, body


def test_reregistration_at_the_same_address_keeps_the_status(
    probe_api: Api, fake: MakeFake, unique: Names
) -> None:
    service, body = _registered_until(probe_api, fake, unique, "/ok", "healthy")
    before = probe_api.instance(service, "t")
    probe_api.register_ok({**body, "metadata": {"v": "2"}})
    after = probe_api.instance(service, "t")
    assert before is not None and after is not None
    assert after["status"] == "healthy"
    assert after["registered_at"] == before["registered_at"]
    assert after["metadata"] == {"v": "2"}


def test_reregistration_of_an_unhealthy_instance_starts_a_new_run(
    probe_api: Api, fake: MakeFake, unique: Names
) -> None:
    """A service that restarts registers again: its old `unhealthy` goes with the old run."""
    service, body = _registered_until(probe_api, fake, unique, "/503", "unhealthy")
    probe_api.register_ok(body)
    # The probe streak restarted: two new failures are needed before `unhealthy` again.
    assert probe_api.status(service, "t") == "unknown"


@pytest.mark.parametrize("changed", ["port", "health_endpoint", "host"])
def test_changed_address_resets_status_to_unknown(
    probe_api: Api, fake: MakeFake, unique: Names, changed: str
) -> None:
    first, second = fake(), fake()
    service = unique(f"rereg-{changed.replace('_', '-')}")
    body: dict[str, Any] = instance_body(service, "t", port=first.port, health_endpoint="/ok")
    probe_api.register_ok(body)
    _wait_for_status(probe_api, service, "healthy")
    before = probe_api.instance(service, "t")
    new_value: Any = {"port": second.port, "health_endpoint": "/plain", "host": "127.0.0.2"}[
        changed
    ]
    probe_api.register_ok({**body, changed: new_value})
    after = probe_api.instance(service, "t")
    assert before is not None and after is not None
    assert after["status"] == "unknown", f"changing {changed} must reset the status"
    assert after["registered_at"] == before["registered_at"]
    assert after[changed] == new_value
    if changed == "port":
        _wait_for_status(probe_api, service, "healthy")
        assert second.hits("/ok") >= 2, "probes must follow the new port"
    elif changed == "health_endpoint":
        _wait_for_status(probe_api, service, "healthy")
        assert first.hits("/plain") >= 2, "probes must follow the new endpoint"
