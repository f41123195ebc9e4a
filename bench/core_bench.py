"""Benchmark of the Sans-I/O core through the shared HTTP mapping, as a frontend drives it.

Every operation goes through `HttpApi.handle` (bytes in, bytes out, with the
Authorization header) followed by `Registry.drain_effects()`, which is exactly
the work a frontend asks of the core per request; sockets, HTTP parsing and the
event loop are not included. All figures are measured in this run, next to a
bare dict-update loop measured in the same run, so they can be compared across
machines.

    python -m bench.core_bench            # full run (under a minute)
    python -m bench.core_bench --quick    # a few seconds, smaller fleet
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sd_core import HttpApi, HttpRequest, HttpResponse, Registry, RegistryConfig, __version__

from .common import AUTH, SECRET, Stat, print_table, verdict
from .http_client import heartbeat_body
from .scenario_cli import machine_line

JSON = "application/json"
REGISTER = "/v1/discovery/register"
HEARTBEAT = "/v1/discovery/heartbeat"
READ_SERVICE = "read-svc"
SERVICES_IN_FLEET = 100

TARGET_HEARTBEAT = 150_000.0  # ops/s
TARGET_READ = 300_000.0  # ops/s
TARGET_SCALING = 1.2  # heartbeat cost at 100,000 instances / at 1,000
TARGET_BYTES = 1024.0  # per instance, beyond its metadata dict


@dataclass(frozen=True)
class Plan:
    repetitions: int
    ops: int  # operations per timed repetition
    big_fleet: int
    small_fleet: int = 1_000


FULL = Plan(repetitions=5, ops=50_000, big_fleet=100_000)
QUICK = Plan(repetitions=3, ops=10_000, big_fleet=20_000)


# ------------------------------------------------------------------ fleet


def instance_key(n: int) -> tuple[str, str]:
    return f"svc-{n % SERVICES_IN_FLEET:03d}", f"instance-{n:06d}"


def ipv4_host(n: int) -> str:
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def name_host(n: int) -> str:
    return f"game-{n}.fleet.internal"


def register_body(
    service: str, instance: str, n: int, host: Callable[[int], str] = ipv4_host
) -> bytes:
    metadata = {"version": "1.4.2", "zone": f"zone-{n % 3}"}
    doc: dict[str, object] = {"service_name": service, "instance_id": instance, "host": host(n)}
    doc |= {"port": 8000 + n % 1000, "health_endpoint": "/health", "metadata": metadata}
    return json.dumps(doc).encode()


class Frontend:
    """The calls a frontend makes for one request: handle, then drain the effects."""

    def __init__(self) -> None:
        # Probes and expiry never fall due during the run: the clock stays inside the
        # first probe interval, and on_timer is never called.
        config = RegistryConfig(
            max_instances=200_000,
            health_check_interval=3600,
            health_check_timeout=5,
            registration_ttl=7200,
        )
        self.now = 0.0
        self.registry = Registry(config, now=self.now, wall_offset=1_700_000_000.0)
        self.api = HttpApi(self.registry, secret=SECRET, frontend="bench", version=__version__)

    def post(self, path: str, body: bytes) -> HttpResponse:
        self.now += 1e-6
        result = self.api.handle(HttpRequest("POST", path, b"", AUTH, JSON, body), self.now)
        self.registry.drain_effects()
        assert isinstance(result, HttpResponse)
        return result

    def populate(self, count: int, host: Callable[[int], str] = ipv4_host) -> list[tuple[str, str]]:
        keys = [instance_key(n) for n in range(count)]
        bodies = [register_body(s, i, n, host) for n, (s, i) in enumerate(keys)]
        for body in bodies:
            response = self.post(REGISTER, body)
            assert response.status == 200, response.body
        return keys


# --------------------------------------------------------------- measuring


def timed(repetitions: int, ops: int, run: Callable[[], None]) -> Stat:
    samples = []
    for _ in range(repetitions):
        gc.collect()
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
        samples.append(ops / elapsed)
    return Stat(tuple(samples))


def measure_baseline(plan: Plan) -> Stat:
    keys = [f"instance-{n:06d}" for n in range(plan.small_fleet)]
    table = dict.fromkeys(keys, 0.0)
    order = [keys[n % len(keys)] for n in range(plan.ops)]

    def run() -> None:
        value = 1.0
        for key in order:
            table[key] = value

    return timed(plan.repetitions, plan.ops, run)


def _shuffled(keys: list[tuple[str, str]], seed: int) -> list[tuple[int, tuple[str, str]]]:
    numbered = list(enumerate(keys))
    random.Random(seed).shuffle(numbered)
    return numbered


def _poster(fleet: Frontend, path: str, bodies: list[bytes]) -> Callable[[], None]:
    """A timed loop: POST each of `bodies` to `path`, in order."""

    def run() -> None:
        post = fleet.post
        for body in bodies:
            post(path, body)

    return run


def _timed_posts(plan: Plan, fleet: Frontend, path: str, bodies: list[bytes], count: int) -> Stat:
    """`count` POSTs of `bodies` in turn; none may move the index (no watcher woken)."""
    ops = [bodies[n % len(bodies)] for n in range(count)]
    index_before = fleet.registry.global_index
    rate = timed(plan.repetitions, len(ops), _poster(fleet, path, ops))
    assert fleet.registry.global_index == index_before
    return rate


def measure_register(plan: Plan, host: Callable[[int], str]) -> Stat:
    """Re-registration of existing, unchanged instances (the update path)."""
    fleet = Frontend()
    keys = fleet.populate(plan.small_fleet, host)
    bodies = [register_body(s, i, n, host) for n, (s, i) in _shuffled(keys, 5)]
    return _timed_posts(plan, fleet, REGISTER, bodies, plan.ops // 5)


def measure_heartbeat(plan: Plan, fleet: Frontend, keys: list[tuple[str, str]]) -> Stat:
    bodies = [heartbeat_body(s, i) for _, (s, i) in _shuffled(keys, 7)]
    return _timed_posts(plan, fleet, HEARTBEAT, bodies, plan.ops)


def measure_cached_read(plan: Plan, fleet: Frontend) -> Stat:
    for n in range(10):
        body = register_body(READ_SERVICE, f"reader-{n}", n)
        assert fleet.post(REGISTER, body).status == 200
    path = f"/v1/discovery/services/{READ_SERVICE}"
    api, registry = fleet.api, fleet.registry
    read = HttpRequest("GET", path, authorization=AUTH)
    first = api.handle(read, fleet.now)
    assert isinstance(first, HttpResponse) and first.status == 200
    assert len(json.loads(bytes(first.body))["instances"]) == 10

    def run() -> None:
        now = fleet.now
        handle, drain = api.handle, registry.drain_effects
        for _ in range(plan.ops):
            handle(read, now)
            drain()

    rate = timed(plan.repetitions, plan.ops, run)
    again = api.handle(read, fleet.now)
    assert isinstance(again, HttpResponse) and again.body is first.body  # served from cache
    return rate


def measure_scaling(
    plan: Plan, small: Frontend, big: Frontend, big_keys: list[tuple[str, str]]
) -> tuple[Stat, Stat, float]:
    """Heartbeats to instances drawn at random from the whole of each fleet.

    The two fleets take turns, and the cost ratio is the median of the ratios of
    each pair of turns, so a load change on the machine hits both sides alike.
    """
    rng = random.Random(11)
    small_keys = [instance_key(n) for n in range(plan.small_fleet)]
    small_bodies = [heartbeat_body(s, i) for s, i in small_keys]
    big_bodies = [heartbeat_body(s, i) for s, i in big_keys]
    # Every op gets its own bytes object, as a request read from a socket would: the
    # small fleet's requests must not enjoy a hot cache that the big fleet's cannot.
    small_ops = [bytes(bytearray(rng.choice(small_bodies))) for _ in range(plan.ops)]
    big_ops = [bytes(bytearray(rng.choice(big_bodies))) for _ in range(plan.ops)]

    small_samples: list[float] = []
    big_samples: list[float] = []
    for _ in range(plan.repetitions):
        small_samples += timed(1, plan.ops, _poster(small, HEARTBEAT, small_ops)).values
        big_samples += timed(1, plan.ops, _poster(big, HEARTBEAT, big_ops)).values
    ratio = statistics.median(a / b for a, b in zip(small_samples, big_samples, strict=True))
    return Stat(tuple(small_samples)), Stat(tuple(big_samples)), ratio


@dataclass(frozen=True)
class Memory:
    instances: int
    total_per_instance: float
    metadata_per_instance: float
    rendered_per_instance: float

    @property
    def beyond_metadata(self) -> float:
        return self.total_per_instance - self.metadata_per_instance


def build_big_fleet(count: int) -> tuple[Frontend, list[tuple[str, str]], Memory]:
    """Register `count` instances under tracemalloc; the bodies are built beforehand.

    Host names rather than IP literals: each instance still holds its own host
    string, and the run avoids the pure-Python `ipaddress` parsing that would
    make registering 100,000 instances under tracemalloc take minutes.
    """
    fleet = Frontend()
    keys = [instance_key(n) for n in range(count)]
    bodies = [register_body(s, i, n, name_host) for n, (s, i) in enumerate(keys)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for body in bodies:
        fleet.post(REGISTER, body)
    gc.collect()
    registered = tracemalloc.get_traced_memory()[0]
    # Read ten services once: their bodies and instance fragments stay cached.
    shown = 0
    for n in range(10):
        page = fleet.registry.views.service_instances(instance_key(n)[0])
        assert page is not None
        shown += page.count(b'"instance_id":')
    gc.collect()
    rendered = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert fleet.registry.instance_count == count
    del bodies
    metadata = _metadata_bytes(fleet, keys)
    memory = Memory(count, (registered - before) / count, metadata, (rendered - registered) / shown)
    return fleet, keys, memory


def _metadata_bytes(fleet: Frontend, keys: list[tuple[str, str]]) -> float:
    """Mean size of an instance's metadata dict, shared strings counted once."""
    snapshots = [fleet.registry.instance_snapshot(s, i) for s, i in keys]
    users: Counter[int] = Counter()
    for instance in snapshots:
        assert instance is not None
        for key, value in instance.metadata.items():
            users[id(key)] += 1
            users[id(value)] += 1
    total = 0.0
    for instance in snapshots:
        assert instance is not None
        total += sys.getsizeof(instance.metadata)
        for key, value in instance.metadata.items():
            total += sys.getsizeof(key) / users[id(key)] + sys.getsizeof(value) / users[id(value)]
    return total / len(snapshots)


# ----------------------------------------------------------------- report


Row = tuple[str, Stat, float | None]  # operation, ops/s, target (ops/s at least)


def _print_rates(rows: list[Row], base: float) -> bool:
    """The table of rates against the dict update; True when a target was missed."""
    cells = []
    for name, rate, goal in rows:
        target = "-" if goal is None else f">= {goal:,.0f}/s: {verdict(rate.median >= goal)}"
        cost = [f"{rate.spread:.0%}", f"{1e6 / rate.median:.2f}", f"{base / rate.median:.1f}"]
        cells.append([name, f"{rate.median:,.0f}", *cost, target])
    heads = "operation | median ops/s | spread | us/op | x dict update | target"
    print_table("Operations through HttpApi.handle + drain_effects()", heads, cells)
    print()
    return any(goal is not None and rate.median < goal for _, rate, goal in rows)


def _print_scaling_and_memory(plan: Plan, scaling: float, memory: Memory) -> bool:
    """Heartbeat cost at scale and bytes per instance; True when a target was missed."""
    scaling_ok = scaling <= TARGET_SCALING  # median of paired per-turn ratios
    memory_ok = memory.beyond_metadata <= TARGET_BYTES
    print(
        f"heartbeat cost, {plan.big_fleet:,} vs {plan.small_fleet:,} instances: "
        f"{scaling:.2f}x   (target <= {TARGET_SCALING}x: {verdict(scaling_ok)})"
    )
    print(
        f"memory per instance, {memory.instances:,} registered (tracemalloc): "
        f"{memory.total_per_instance:,.0f} B in all, {memory.metadata_per_instance:,.0f} B of "
        f"it the metadata dict (2 entries)"
    )
    print(
        f"  beyond the metadata dict: {memory.beyond_metadata:,.0f} B "
        f"(target <= {TARGET_BYTES:,.0f} B: {verdict(memory_ok)}); "
        f"a read caches {memory.rendered_per_instance:,.0f} B more per instance it shows"
    )
    return not scaling_ok or not memory_ok


def _print_banner(plan: Plan, quick: bool, load_at_start: float) -> None:
    print(f"sd_core {__version__} core benchmark ({'quick' if quick else 'full'} run), ", end="")
    print(f"median of {plan.repetitions} repetitions; {machine_line()}")
    print(f"load average {load_at_start:.1f} at start (a busy machine's figures are low, spread)")
    print("each op = HttpApi.handle(bytes, Authorization header) + drain_effects()\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast run with a smaller fleet")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    small = Frontend()
    small_keys = small.populate(plan.small_fleet)
    baseline = measure_baseline(plan)
    register_ipv4 = measure_register(plan, ipv4_host)
    register_name = measure_register(plan, name_host)
    heartbeat = measure_heartbeat(plan, small, small_keys)
    read = measure_cached_read(plan, small)
    big, big_keys, memory = build_big_fleet(plan.big_fleet)
    scale_small, scale_big, scaling = measure_scaling(plan, small, big, big_keys)

    fleet = f"{plan.small_fleet:,} inst."
    rows: list[Row] = [
        ("dict update (baseline)", baseline, None),
        (f"register, re-register ({fleet}, IPv4 host)", register_ipv4, None),
        (f"register, re-register ({fleet}, host name)", register_name, None),
        (f"heartbeat ({fleet})", heartbeat, TARGET_HEARTBEAT),
        ("cached read (10-instance service)", read, TARGET_READ),
        (f"heartbeat, random of {plan.small_fleet:,}", scale_small, None),
        (f"heartbeat, random of {plan.big_fleet:,}", scale_big, None),
    ]
    _print_banner(plan, args.quick, load_at_start)
    missed = _print_rates(rows, baseline.median)
    missed |= _print_scaling_and_memory(plan, scaling, memory)
    print(f"\ntotal run time {time.perf_counter() - started:.1f} s")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
