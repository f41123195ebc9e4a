"""Scenario 5, second table: what re-rendering instance fragments costs the core.

    python -m bench.core_render [--instances 100000] [--reps 3]

A full listing after every instance heartbeated re-renders each instance's
JSON fragment (a heartbeat moves `last_heartbeat`). This times the core's
`instance_json` for a new instance and after a heartbeat, beside what a plain
implementation pays in the same run (`json.dumps` of the record with
`datetime` timestamps), then the core's whole `GET /v1/discovery/services`
in that state. No server, no sockets: the core's own functions.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sd_core import HttpRequest
from sd_core.instance import Instance
from sd_core.render import instance_json
from sd_core.testing import SimulatedRegistry

from .common import Stat
from .http_client import heartbeat_body
from .scenario_cli import machine_line

_OFFSET = 1.7e9  # monotonic to wall clock, as the registry renders timestamps


def _names(n: int) -> tuple[str, str]:
    return f"svc-{n // 100:04d}", f"i-{n % 100:03d}"


def _fleet(count: int) -> list[Instance]:
    meta = {"version": "1.0.0", "zone": "a"}
    return [
        Instance(*_names(n), "127.0.0.1", 9, "/health", meta, 0.0, 1000.0 + n * 0.001)
        for n in range(count)
    ]


def _stamp(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _plain(i: Instance) -> bytes:
    """The baseline: the record as a dict, `datetime` timestamps, `json.dumps`."""
    checked = i.last_health_check
    document = {
        "service_name": i.service_name,
        "instance_id": i.instance_id,
        "host": i.host,
        "port": i.port,
        "health_endpoint": i.health_endpoint,
        "status": i.status.value,
        "last_health_check": None if checked is None else _stamp(checked + _OFFSET),
        "last_heartbeat": _stamp(i.last_heartbeat + _OFFSET),
        "load_percentage": i.load,
        "metadata": i.metadata,
        "registered_at": _stamp(i.registered_at + _OFFSET),
        "check": {"type": i.check.value},
        "maintenance": None
        if i.maintenance is None
        else {"reason": i.maintenance.reason, "since": _stamp(i.maintenance.since + _OFFSET)},
    }
    return json.dumps(document, separators=(",", ":")).encode()


def _print_medians(rows: dict[str, list[float]], count: int, reps: int) -> None:
    print(f"\nus per instance fragment, {count:,} instances, median (min-max) of {reps}:\n")
    base = Stat.of(rows["baseline: json.dumps + datetime"]).median
    for name, values in rows.items():
        stat = Stat.of(values)
        print(f"  {stat.fmt('.1f'):>18}  {stat.median / base:5.2f}x  {name}")


def render_split(count: int, reps: int) -> None:
    """Cost of re-rendering instance fragments, as a full listing does after every
    instance heartbeated (each heartbeat moves `last_heartbeat`), next to the
    baseline a plain implementation pays in the same run: `json.dumps` of the
    record with `datetime` timestamps. No server; the core's own functions."""
    rows: dict[str, list[float]] = {}

    def timed(label: str, render: Callable[[Instance], object], instances: list[Instance]) -> None:
        started = time.perf_counter()
        for instance in instances:
            render(instance)
        rows.setdefault(label, []).append((time.perf_counter() - started) / count * 1e6)

    for _ in range(reps):
        instances = _fleet(count)
        timed("baseline: json.dumps + datetime", _plain, instances)
        timed("instance_json, new instance", lambda i: instance_json(i, _OFFSET), instances)
        for i in instances:  # what a heartbeat does to the fragment
            i.last_heartbeat += 1.0
            i.forget_rendered(targets=False)
        timed("instance_json, after a heartbeat", lambda i: instance_json(i, _OFFSET), instances)
        assert all(_plain(i) == instance_json(i, _OFFSET) for i in instances[:1000])
    _print_medians(rows, count, reps)
    stale_listing(count, reps)


def stale_listing(count: int, reps: int) -> None:
    """The full listing's body once every instance heartbeated since the last one: the
    steady state of a live fleet, where the scale scenario's listings after one
    heartbeat re-render a single fragment. The core alone, through its HTTP mapping."""
    sim = SimulatedRegistry()
    for n in range(count):
        service, instance = _names(n)
        body = {"service_name": service, "instance_id": instance, "host": "127.0.0.1", "port": 9}
        body |= {"health_endpoint": "/health", "metadata": {"version": "1.0.0", "zone": "a"}}
        assert sim.request("POST", "/v1/discovery/register", json_body=body).status == 200
    token = f"Bearer {sim.secret}"
    heartbeats = [
        HttpRequest("POST", "/v1/discovery/heartbeat", b"", token, "application/json", body)
        for body in (heartbeat_body(*_names(n)) for n in range(count))
    ]
    seconds: list[float] = []
    size = 0
    for _ in range(reps):
        sim.advance(1.0)
        for request in heartbeats:
            sim.api.handle(request, sim.clock.now)
        started = time.perf_counter()
        answer = sim.send("GET", "/v1/discovery/services", authorization=token)
        seconds.append(time.perf_counter() - started)
        assert answer.status == 200
        size = len(answer.body)
    print(
        f"\nGET /v1/discovery/services after every one of {count:,} instances heartbeated "
        f"(core only, {size / 2**20:.0f} MiB), s, median (min-max) of {reps}: "
        f"{Stat.of(seconds).fmt('.3f')}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"## Scenario 5: re-rendering instance fragments\n\n{machine_line()}")
    render_split(args.instances, args.reps)


if __name__ == "__main__":
    main()
