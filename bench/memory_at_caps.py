"""What the registry's memory comes to at its default caps: RSS per instance, measured.

    python -m bench.memory_at_caps [--frontend quart|trio|quart-uvicorn] [--count N]

Registers N instances in one service on a fresh server, twice: with metadata
at the default cap (`SERVICE_DISCOVERY_MAX_METADATA_BYTES`, 4,096 bytes), and
with two small entries; then reads every list endpoint, as a dashboard and
Prometheus would. Prints the server's RSS
growth per instance (/proc, so allocator slack included) and what that comes
to at the default instance cap (`SERVICE_DISCOVERY_MAX_INSTANCES`). The
README's sizing figures are this command's output. Probes are off (a day's
interval), so nothing but the fleet and its cached bodies grows.
"""

from __future__ import annotations

import argparse

from conformance.common import list_endpoints

from .http_client import http_call, http_get, post_all, register_body, run_async
from .processes import Run, start_registry

#: 31 entries of 6 + 120 bytes: 3,906 bytes, the most that fits the default cap in this shape.
CAPPED = {f"key{n:02d}": "v" * 120 for n in range(31)}
SMALL = {"version": "1.0.0", "zone": "a"}
DEFAULT_MAX_INSTANCES = 100_000
MIB = 1024 * 1024


def _read_every_view(port: int, service: str) -> None:
    for path in list_endpoints(service):
        http_call(port, "GET", path).ok(f"GET {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frontend", default="quart", choices=("quart", "trio", "quart-uvicorn"))
    parser.add_argument("--count", type=int, default=3000)
    args = parser.parse_args()
    env = {"HEALTH_CHECK_INTERVAL_SECONDS": "86400", "HEALTH_CHECK_FIRST_PROBES_PER_SECOND": "0"}
    for label, metadata in (("metadata at the 4 KiB cap", CAPPED), ("2 small entries", SMALL)):
        with Run() as run:
            server = start_registry(run, args.frontend, env=env)
            for path in ("/v1/discovery/services", "/v1/discovery/prometheus"):
                http_get(server.port, path, auth=True)
            before = server.rss_kib() * 1024
            bodies = [
                register_body("svc", f"i-{n}", 9, metadata=metadata) for n in range(args.count)
            ]
            run_async(post_all(server.port, "/v1/discovery/register", bodies))
            _read_every_view(server.port, "svc")
            each = (server.rss_kib() * 1024 - before) / args.count
            at_cap = each * DEFAULT_MAX_INSTANCES / (1024 * MIB)
            print(
                f"{args.frontend}, {args.count} instances, {label}: {before / MIB:.1f} MiB at"
                f" start, {each / 1024:.1f} KiB an instance once every view was read;"
                f" {at_cap:.1f} GiB at {DEFAULT_MAX_INSTANCES:,} instances"
            )


if __name__ == "__main__":
    main()
