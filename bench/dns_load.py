"""DNS queries per second for a cached answer, against each frontend, beside a UDP echo server.

    python -m bench.dns_load [--frontend quart|trio|both] [--quick] [--reps N] [--no-pin]

A registry (its server pinned to one CPU) with the DNS interface on and one
service of 10 instances, then a small asyncio load generator on the other CPUs:
`--window` queries in flight over UDP, each answer answered by the next query
(the same bytes: the registry serves it from its cache). Then, in this process,
what an answer that misses the cache costs the core, by service size. The baseline is the
same socket handling as the registry's with no DNS in it (an asyncio echo server
reading in batches), pinned the same way and driven by the same generator: the
ratio says what the answer itself costs. The generator is Python too, so a
figure near the echo server's may be the generator's limit, not the server's.
The issue's goal: 20,000 queries/s on one core.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import dns.exception
import dns.message
import dns.query
import httpx

from sd_core import RegisterRequest, RegistryConfig
from sd_core.dns import DnsAnswerer, DnsConfig
from sd_core.models import CheckSpec
from sd_core.testing import SimulatedRegistry

from .common import AUTH, BenchError, Stat, print_table, verdict
from .processes import PIN, Run, free_port, start_registry
from .scenario_cli import base_parser, chosen_frontends, scenario

NAME = "bench.service.discovery."
GOAL = 20_000
ECHO = (  # the registry's own way to read UDP (`runtime.dns_server`), minus the answer
    "import asyncio, socket, sys\n"
    "def drain(s):\n"
    "    for _ in range(64):\n"
    "        try: d, a = s.recvfrom(4096)\n"
    "        except BlockingIOError: return\n"
    "        s.sendto(d, a)\n"
    "async def main():\n"
    "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "    s.bind(('127.0.0.1', int(sys.argv[1]))); s.setblocking(False)\n"
    "    asyncio.get_running_loop().add_reader(s.fileno(), drain, s)\n"
    "    await asyncio.Event().wait()\n"
    "asyncio.run(main())\n"
)


class Flood:
    """`window` queries in flight over a connected UDP socket; each answer sends the next,
    read in batches as the servers do. Lost ones are resent when nothing comes back."""

    def __init__(self, port: int, query: bytes, window: int) -> None:
        self.query, self.window, self.answers = query, window, 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)

    def refill(self) -> None:
        for _ in range(self.window):
            self.sock.send(self.query)

    def drain(self) -> None:
        recv, send, query = self.sock.recv, self.sock.send, self.query
        for _ in range(64):
            try:
                recv(4096)
            except (BlockingIOError, ConnectionRefusedError):
                return
            self.answers += 1
            send(query)


async def queries_per_second(port: int, query: bytes, seconds: float, window: int) -> float:
    loop = asyncio.get_running_loop()
    flood = Flood(port, query, window)
    loop.add_reader(flood.sock.fileno(), flood.drain)
    try:
        flood.refill()
        await asyncio.sleep(0.5)  # warm-up
        start, count = time.perf_counter(), flood.answers
        end = start + seconds
        while (now := time.perf_counter()) < end:
            before = flood.answers
            await asyncio.sleep(0.05)
            if flood.answers == before:  # every query in flight was lost: start again
                flood.refill()
        return (flood.answers - count) / (now - start)
    finally:
        loop.remove_reader(flood.sock.fileno())
        flood.sock.close()


def check_answer(port: int) -> bytes:
    """The query used, after checking that it is answered with the 10 instances."""
    query = dns.message.make_query(NAME, "A")
    for _ in range(100):
        answer = _ask(query, port)
        if answer is not None and answer.answer and len(answer.answer[0]) == 10:
            return query.to_wire()
        time.sleep(0.05)
    raise BenchError("the registry does not answer the 10 instances over DNS")


def _ask(query: dns.message.Message, port: int) -> dns.message.Message | None:
    try:
        return dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    except (OSError, dns.exception.Timeout):
        return None


def miss_costs(sizes: tuple[int, ...], reps: int) -> None:
    """In process, the core only: ms per answer that misses the cache (no cache at all)."""
    kinds = (("A", False), ("SRV", False), ("A", True), ("SRV", True))
    rows = []
    for size in sizes:
        sim = SimulatedRegistry(RegistryConfig(first_probes_per_second=0))
        for n in range(size):
            host = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
            request = RegisterRequest(service_name="bench", instance_id=f"b{n}", host=host,
                                      port=8080, check=CheckSpec(type="ttl"))  # fmt: skip
            sim.registry.register(request, sim.clock.now)
        answerer = DnsAnswerer(sim.registry, DnsConfig(cache_bytes=0))
        cells = []
        for rdtype, tcp in kinds:
            wire = dns.message.make_query(NAME, rdtype).to_wire()
            answerer.answer(wire, tcp=tcp)
            start = time.perf_counter()
            for _ in range(reps):
                answerer.answer(wire, tcp=tcp)
            cells.append(f"{(time.perf_counter() - start) * 1000 / reps:.1f}")
        rows.append([f"{size:,}", *cells])
    heads = ["instances", *(f"{t} over {'TCP' if tcp else 'UDP'}" for t, tcp in kinds)]
    print_table("Cache misses (core only, rendered by dnspython), ms per answer", heads, rows)


def registry_port(run: Run, frontend: str) -> int:
    port = free_port()
    proc = start_registry(run, frontend, env={"SERVICE_DISCOVERY_DNS_PORT": str(port)})
    for n in range(10):
        body = {"service_name": "bench", "instance_id": f"b{n}", "host": f"10.0.0.{n + 1}",
                "port": 8080, "check": {"type": "ttl"}}  # fmt: skip
        httpx.post(proc.url("/v1/discovery/register"), json=body, headers={"Authorization": AUTH})
    return port


def echo_port(run: Run) -> int:
    port = free_port()
    run.spawn("udp-echo", [sys.executable, "-c", ECHO, str(port)], port=port, cpus=PIN.server)
    return port


def main() -> int:
    parser = base_parser(__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--window", type=int, default=64, help="queries in flight (default 64)")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 3.0
    reps = args.reps or (1 if args.quick else 3)
    with scenario(args, "DNS: cached answers over UDP") as run:
        query = dns.message.make_query(NAME, "A").to_wire()
        echo = echo_port(run)
        targets = [("udp echo (baseline)", echo)]
        targets += [
            (f"{kind} registry", registry_port(run, kind)) for kind in chosen_frontends(args)
        ]
        for _, port in targets[1:]:
            check_answer(port)
        rates: dict[int, list[float]] = {port: [] for _, port in targets}
        for _ in range(reps):  # round-robin, so a busy moment of the machine hits all alike
            for _, port in targets:
                rates[port].append(
                    asyncio.run(queries_per_second(port, query, seconds, args.window))
                )
        base = Stat.of(rates[echo]).median
        rows = []
        for label, port in targets:
            qps = Stat.of(rates[port])
            goal = "-" if port == echo else f">={GOAL:,}/s: {verdict(qps.median >= GOAL)}"
            rows.append([label, qps.fmt(), f"{qps.median / base:.2f}", goal])
        heads = "server | queries/s, median (min-max) | of the echo server | goal"
        print_table(f"{reps} x {seconds:g} s, {args.window} queries in flight", heads, rows)
        miss_costs((10, 100) if args.quick else (10, 100, 1000), 3 if args.quick else 10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
