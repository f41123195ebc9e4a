"""Scenario 1: hot paths over HTTP, per frontend, beside a bare app and etcd.

    python -m bench.http_hot_paths [--frontend quart|trio|both]
                                   [--loop asyncio|uvloop|both] [--quick]

For each frontend (Quart on asyncio, and on uvloop; trio), wrk (`-t1 -c64`)
drives, one endpoint at a time:

- `POST /v1/discovery/heartbeat` over the 10 instances of service `hot`
- `POST /v1/discovery/register`, re-registering those 10 unchanged
- `GET /v1/discovery/services/hot`, `.../hot/healthy`, `.../hot/instances`
  (all 10 healthy: probed by `bench.fake_instances`; cached bodies)

and the same requests against the bare app on the same stack
(`bench/bare_apps.py`: JSON parse and serialise only) in the same repetition,
then the analogous etcd 3.4 calls through its JSON gateway: lease keepalive,
put with a lease, prefix range of the 10 keys. Every server runs pinned to
one CPU, wrk to the other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sd_etcd.codec import b64

from .common import SECRET, BenchError, Stat, log, print_table, ratio_stat, verdict, wait_until
from .http_client import (
    heartbeat_body,
    http_get,
    post_all,
    register_body,
    run_async,
)
from .processes import (
    Proc,
    Run,
    etcd_post,
    etcd_version,
    start_bare,
    start_etcd,
    start_fake_instances,
    start_registry,
)
from .scenario_cli import base_parser, chosen_frontends, scenario
from .wrk_load import WrkResult, compared, wrk

SERVICE = "hot"
INSTANCES = 10
TARGET = 0.85


@dataclass(frozen=True)
class Endpoint:
    key: str
    label: str
    method: str
    path: str
    etcd: str
    target: bool


_READ = f"/v1/discovery/services/{SERVICE}"
ENDPOINTS = (
    Endpoint("heartbeat", "heartbeat", "POST", "/v1/discovery/heartbeat", "keepalive", True),
    Endpoint("register", "re-register", "POST", "/v1/discovery/register", "put", False),
    Endpoint("service", "GET /services/{name}", "GET", _READ, "range", True),
    Endpoint("healthy", "GET .../healthy", "GET", f"{_READ}/healthy", "range", True),
    Endpoint("instances", "GET .../instances", "GET", f"{_READ}/instances", "range", True),
    # Consul's health read of the same 10 instances: measured against our own
    # `GET /services/{name}` on the same server (the last table).
    Endpoint("consul", "GET /health/service/{name}", "GET", f"/v1/health/service/{SERVICE}",
             "range", False),
)  # fmt: skip
QUART_LOOPS = ("quart (asyncio)", "quart (uvloop)")
#: A Consul health read costs no more than our own read: within 10 % in req/s.
CONSUL_TARGET = 0.9
ETCD_OPS = {
    "keepalive": "lease keepalive",
    "put": "put with lease",
    "range": "range (prefix, 10 keys)",
}


@dataclass(frozen=True)
class Config:
    label: str
    frontend: str
    loop: str


def _b64(text: str) -> str:
    return b64(text.encode())


def prepare_registry(proc: Proc, fake: Proc) -> None:
    bodies = [register_body(SERVICE, f"i-{n:02d}", fake.port, f"/h/{n}") for n in range(INSTANCES)]
    run_async(post_all(proc.port, "/v1/discovery/register", bodies, connections=1, depth=1))
    wait_healthy(proc, INSTANCES, timeout=30)


def wait_healthy(proc: Proc, count: int, timeout: float = 60.0) -> None:
    """Until `count` instances of `SERVICE` are healthy on `proc` (probed, or seen so)."""

    def healthy() -> bool:
        status, body = http_get(proc.port, f"/v1/discovery/services/{SERVICE}/healthy", auth=True)
        return status == 200 and len(json.loads(body)["healthy_instances"]) == count

    wait_until(healthy, f"{count} healthy instances of {SERVICE} on {proc.name}", timeout)


def request_files(run: Run, fake: Proc) -> tuple[Path, Path]:
    """wrk's request bodies: heartbeats and re-registrations of the 10 instances of `hot`."""
    heartbeats = run.write_lines(
        "heartbeat.txt",
        (heartbeat_body(SERVICE, f"i-{n:02d}").decode() for n in range(INSTANCES)),
    )
    bodies = (register_body(SERVICE, f"i-{n:02d}", fake.port, f"/h/{n}") for n in range(INSTANCES))
    registers = run.write_lines("register.txt", (body.decode() for body in bodies))
    return heartbeats, registers


def drive_endpoint(
    proc: Proc, endpoint: Endpoint, seconds: int, connections: int, files: tuple[Path, Path]
) -> WrkResult:
    """One wrk run of `endpoint` against `proc` (a registry prepared by `prepare_registry`),
    its POST bodies from `files` (`request_files`: heartbeats, registrations)."""
    if endpoint.method == "POST":
        bodies = files[0] if endpoint.key == "heartbeat" else files[1]
        script, script_args = "post_json.lua", [endpoint.path, str(bodies), SECRET]
    else:
        script, script_args = "get.lua", [SECRET, endpoint.path]
    result = wrk(
        proc.url(), script, script_args, duration=seconds, connections=connections, server=proc
    )
    proc.check_alive()
    return result


def prepare_etcd(run: Run, etcd: Proc) -> dict[str, list[str]]:
    """Grant 10 leases, put 10 keys; return the wrk arguments of each etcd operation."""

    leases, puts = [], []  # wrk sends the same puts again
    for n in range(INSTANCES):
        lease = etcd_post(etcd, "/v3/lease/grant", {"TTL": 3600})["ID"]
        leases.append(lease)
        value = register_body(SERVICE, f"i-{n:02d}", 9000, f"/h/{n}").decode()
        put = {"key": _b64(f"svc/{SERVICE}/i-{n:02d}"), "value": _b64(value), "lease": lease}
        etcd_post(etcd, "/v3/kv/put", put)
        puts.append(json.dumps(put))
    prefix = {"key": _b64(f"svc/{SERVICE}/"), "range_end": _b64(f"svc/{SERVICE}0")}
    answer = etcd_post(etcd, "/v3/kv/range", prefix)
    if answer.get("count") != str(INSTANCES):
        raise BenchError(f"etcd range: {answer}")
    keepalive = run.write_lines("etcd-keepalive.txt", (json.dumps({"ID": id_}) for id_ in leases))
    put_file = run.write_lines("etcd-put.txt", puts)
    ranges = run.write_lines("etcd-range.txt", [json.dumps(prefix)])
    return {
        "keepalive": ["/v3/lease/keepalive", str(keepalive), "-"],
        "put": ["/v3/kv/put", str(put_file), "-"],
        "range": ["/v3/kv/range", str(ranges), "-"],
    }


def _configs(frontends: list[str], loops: list[str]) -> list[Config]:
    configs: list[Config] = []
    for frontend in frontends:
        if frontend == "quart":
            configs += [Config(f"quart ({loop})", "quart", loop) for loop in loops]
        else:
            configs.append(Config("trio", "trio", "trio"))
    return configs


def _start_pairs(run: Run, configs: list[Config], fake: Proc) -> dict[str, tuple[Proc, Proc]]:
    """Each registry, ready to be measured, and its bare app: (ours, bare) by label."""
    env = {"HEALTH_CHECK_INTERVAL_SECONDS": "2", "HEALTH_CHECK_TIMEOUT_SECONDS": "1"}
    servers: dict[str, tuple[Proc, Proc]] = {}
    for config in configs:
        log(f"starting {config.label} and its bare app")
        ours = start_registry(run, config.frontend, loop=config.loop, env=env)
        prepare_registry(ours, fake)
        stack = "quart" if config.frontend == "quart" else "trio"
        bare = start_bare(run, stack, loop=config.loop if stack == "quart" else "asyncio")
        servers[config.label] = (ours, bare)
    return servers


def _rep_against_bare(
    results: Results,
    rep: int,
    reps: int,
    configs: list[Config],
    endpoints: list[Endpoint],
    servers: dict[str, tuple[Proc, Proc]],
    drive: Callable[[Proc, Endpoint], WrkResult],
) -> None:
    """One repetition of every endpoint, on each registry and its bare app back to back."""
    for config in configs:
        ours, bare = servers[config.label]
        for endpoint in endpoints:
            log(f"rep {rep + 1}/{reps}: {config.label} {endpoint.label}")
            # Alternate which goes first, so a drift in the machine's load
            # does not always favour the same side.
            pair = [("ours", ours), ("bare", bare)]
            for side, proc in pair if rep % 2 == 0 else pair[::-1]:
                results.setdefault((config.label, endpoint.key, side), []).append(
                    drive(proc, endpoint)
                )


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop", "both"), default=None, help="quart's event loop"
    )
    parser.add_argument("--duration", type=int, default=None, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--no-etcd", action="store_true")
    args = parser.parse_args(argv)
    reps = args.reps or (3 if args.quick else 5)
    duration = args.duration or (1 if args.quick else 3)
    loops = {"asyncio": ["asyncio"], "uvloop": ["uvloop"], "both": ["asyncio", "uvloop"]}[
        args.loop or ("asyncio" if args.quick else "both")
    ]
    quick = ("heartbeat", "service", "consul")
    endpoints = [e for e in ENDPOINTS if not args.quick or e.key in quick]
    configs = _configs(chosen_frontends(args), loops)
    conns = args.connections

    with scenario(args, "Scenario 1: hot paths over HTTP") as run:
        print(
            f"wrk -t1 -c{conns} -d{duration}s per figure, {reps} repetitions; "
            f"etcd {etcd_version()}\n"
        )
        fake = start_fake_instances(run)
        files = request_files(run, fake)
        servers = _start_pairs(run, configs, fake)
        etcd_args: dict[str, list[str]] = {}
        etcd: Proc | None = None
        if not args.no_etcd:
            etcd = start_etcd(run)
            etcd_args = prepare_etcd(run, etcd)
        etcd_ops = sorted({e.etcd for e in endpoints}, key=list(ETCD_OPS).index)

        def drive(proc: Proc, endpoint: Endpoint, seconds: int = duration) -> WrkResult:
            return drive_endpoint(proc, endpoint, seconds, conns, files)

        if not args.quick:
            log("warm-up")
            for ours, bare in servers.values():
                for endpoint in (ENDPOINTS[0], ENDPOINTS[2]):
                    drive(ours, endpoint, 1)
                    drive(bare, endpoint, 1)

        results = Results()
        for rep in range(reps):
            _rep_against_bare(results, rep, reps, configs, endpoints, servers, drive)
            if etcd is not None:
                for op in etcd_ops:
                    log(f"rep {rep + 1}/{reps}: etcd {op}")
                    load = wrk(
                        etcd.url(), "post_json.lua", etcd_args[op], duration=duration,
                        connections=conns, server=etcd,
                    )  # fmt: skip
                    results.setdefault(("etcd", op, "etcd"), []).append(load)
        report(results, configs, endpoints, etcd_ops, servers)


Key = tuple[str, str, str]  # (frontend label or "etcd", endpoint or etcd op, side)


class Results(dict[Key, list[WrkResult]]):
    """Every wrk run, by (frontend, endpoint, side); the figures the tables take."""

    def rps(self, key: Key) -> list[float]:
        return [r.rps for r in self[key]]

    def cpu(self, key: Key) -> list[float]:
        return [r.cpu_us for r in self[key]]


def _against_bare(
    config: Config,
    endpoint: Endpoint,
    ours: list[float],
    bare: list[float],
    ratio: Stat,
    extra: str,
) -> list[str]:
    """A row of ours beside the bare app: both, their ratio, the target if any, one more figure."""
    target = f">={TARGET:.0%}: {verdict(ratio.median >= TARGET)}" if endpoint.target else "-"
    figures = [Stat.of(ours).fmt(), Stat.of(bare).fmt(), ratio.fmt(".0%"), target, extra]
    return [config.label, endpoint.label, *figures]


def _versus_etcd_row(
    results: Results, config: Config, endpoint: Endpoint, ours_key: Key, etcd_key: Key
) -> list[str]:
    rps, cpu = results.rps, results.cpu
    ours, etcd = Stat.of(rps(ours_key)), Stat.of(rps(etcd_key))
    ratio = ratio_stat(rps(ours_key), rps(etcd_key)).fmt(".2f", "x")
    us = f"{Stat.of(cpu(ours_key)).median:,.0f} vs {Stat.of(cpu(etcd_key)).median:,.0f}"
    etcd_op = f"{ETCD_OPS[endpoint.etcd]}: {etcd.fmt()}"
    return [config.label, endpoint.label, ours.fmt(), etcd_op, ratio, us]


def report(
    results: Results,
    configs: list[Config],
    endpoints: list[Endpoint],
    etcd_ops: list[str],
    servers: dict[str, tuple[Proc, Proc]],
) -> None:
    rps, cpu = results.rps, results.cpu
    throughput = []
    cost = []
    versus_etcd = []
    for config in configs:
        for endpoint in endpoints:
            ours_key = (config.label, endpoint.key, "ours")
            bare_key = (config.label, endpoint.key, "bare")
            p99 = Stat.of(r.p99_ms for r in results[ours_key]).fmt(".0f")
            ratio = ratio_stat(rps(ours_key), rps(bare_key))
            throughput.append(
                _against_bare(config, endpoint, rps(ours_key), rps(bare_key), ratio, p99)
            )
            # Capacity from CPU cost: a saturated core serves 1/cost requests a second.
            capacity = ratio_stat(cpu(bare_key), cpu(ours_key))
            waited = Stat.of(r.wait_share * 100 for r in results[ours_key]).fmt(".0f", "%")
            cost.append(
                _against_bare(config, endpoint, cpu(ours_key), cpu(bare_key), capacity, waited)
            )
            etcd_key = ("etcd", endpoint.etcd, "etcd")
            if etcd_key in results:
                versus_etcd.append(_versus_etcd_row(results, config, endpoint, ours_key, etcd_key))
    print_table(
        "Throughput: requests/s, median (min-max); ours/bare per repetition (run back to back)",
        "frontend | endpoint | ours req/s | bare app req/s | ours/bare | target | p99 ms",
        throughput,
    )
    print_table(
        "Server CPU per request (user+system, us): the same runs, steadier on a shared machine",
        "frontend | endpoint | ours us/req | bare app us/req | bare/ours | target"
        " | ours waited for CPU",
        cost,
    )
    if versus_etcd:
        print_table(
            "Against etcd 3.4 through its JSON gateway (pinned to the same single CPU)",
            "frontend | endpoint | ours req/s | etcd req/s | ours/etcd | CPU us/req",
            versus_etcd,
        )
    if all(label in servers for label in QUART_LOOPS):
        _uvloop_table(results, endpoints)
    if any(e.key == "consul" for e in endpoints):
        rows = []
        for config in configs:
            consul = rps((config.label, "consul", "ours"))
            own = rps((config.label, "service", "ours"))
            ratio = ratio_stat(consul, own)
            target = f">={CONSUL_TARGET:.0%}: {verdict(ratio.median >= CONSUL_TARGET)}"
            rows.append(
                [config.label, Stat.of(consul).fmt(), Stat.of(own).fmt(), ratio.fmt(".0%"), target]
            )
        print_table(
            "Consul's health read of the 10 instances against our own read, on the same server",
            "frontend | consul req/s | GET /services/{name} req/s | consul/ours | target",
            rows,
        )


def _uvloop_table(results: Results, endpoints: list[Endpoint]) -> None:
    gains = []
    for endpoint in endpoints:
        on_asyncio, on_uvloop = (results[label, endpoint.key, "ours"] for label in QUART_LOOPS)
        gains.append([endpoint.label, *compared(on_asyncio, on_uvloop)[0]])
    print_table(
        "uvloop for the Quart frontend",
        "endpoint | asyncio req/s | uvloop req/s | uvloop/asyncio | CPU us/req",
        gains,
    )


if __name__ == "__main__":
    main()
