"""Example: a Quart service (asyncio) that registers, heartbeats and calls its peer.

Run it next to a registry (see docker-compose.yml in this directory)::

    SERVICE_DISCOVERY_URL=http://127.0.0.1:3004 SERVICE_DISCOVERY_SECRET=... \\
        SERVICE_HOST=127.0.0.1 PORT=8080 python examples/quart_service.py

Endpoints: ``GET /health`` (probed by the registry), ``GET /hello``,
``GET /peer`` (picks a healthy ``trio-example`` instance and calls its
``/hello``, moving on to another instance if that one cannot be reached),
``GET /metrics`` (scraped by Prometheus through the registry).

Settings (environment): ``SERVICE_DISCOVERY_URL``, ``SERVICE_DISCOVERY_SECRET``,
``SERVICE_HEARTBEAT_INTERVAL`` (read by the SDK); ``PORT`` (0 picks a free
one; the port actually bound is the one registered), ``BIND_HOST`` (default
``0.0.0.0``), ``SERVICE_HOST`` (the address peers use, default the hostname),
``SERVICE_NAME``, ``INSTANCE_ID``, ``PEER_SERVICE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
from typing import Any

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart

from service_discovery import (
    NoHealthyInstancesError,
    RegistryUnavailableError,
    ServiceDiscoveryClient,
    ServiceDiscoveryError,
    ServiceInstance,
    ServiceRegistrationRequest,
    setup_service_health_checks,
)

log = logging.getLogger("quart-example")

SERVICE_NAME = os.environ.get("SERVICE_NAME", "quart-example")
PEER_SERVICE = os.environ.get("PEER_SERVICE", "trio-example")
SERVICE_HOST = os.environ.get("SERVICE_HOST") or socket.gethostname()

app = Quart(__name__)
client = ServiceDiscoveryClient()  # URL, secret and interval from the environment
health_checker = setup_service_health_checks(app=app, service_name=SERVICE_NAME)
requests_served = 0


@health_checker.check("disk", timeout=2)
def disk_has_room() -> bool:
    """A sync check: it runs in a worker thread, so it may block."""
    usage = shutil.disk_usage("/")
    return usage.free / usage.total > 0.02


@app.get("/hello")
async def hello() -> dict[str, Any]:
    global requests_served
    requests_served += 1
    return {"service": SERVICE_NAME, "instance": app.config["INSTANCE_ID"]}


@app.get("/peer")
async def call_peer() -> tuple[dict[str, Any], int]:
    async def hello_from(peer: ServiceInstance) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=2.0) as http:
            answer = (await http.get(f"{peer.base_url}/hello")).json()
        return {"peer": answer, "peer_load": peer.load_percentage}

    try:
        # A peer that died since the registry last said so (or one still in
        # the stale list while the registry is down) costs one connection
        # error: the call moves on to another instance.
        called = await client.call_with_failover(PEER_SERVICE, hello_from)
    except NoHealthyInstancesError:
        return {"error": f"no healthy {PEER_SERVICE} instance"}, 503
    except RegistryUnavailableError as exc:  # and nothing cached yet
        return {"error": str(exc)}, 503
    except httpx.HTTPError as exc:
        return {"error": f"every {PEER_SERVICE} instance tried failed: {exc}"}, 502
    return {"me": app.config["INSTANCE_ID"], **called}, 200


@app.get("/metrics")
async def metrics() -> tuple[str, int, dict[str, str]]:
    text = (
        "# HELP example_requests_total Requests served on /hello.\n"
        "# TYPE example_requests_total counter\n"
        f"example_requests_total {requests_served}\n"
    )
    return text, 200, {"Content-Type": "text/plain; version=0.0.4"}


@app.before_serving
async def register() -> None:
    request = ServiceRegistrationRequest(
        service_name=SERVICE_NAME,
        instance_id=app.config["INSTANCE_ID"],
        host=SERVICE_HOST,
        port=app.config["PORT"],
        health_endpoint="/health",
        metadata={"version": "1.0.0", "framework": "quart"},
    )
    try:
        await client.register_service(request)
    except RegistryUnavailableError as exc:
        # Not fatal: the heartbeat loop registers as soon as the registry answers.
        log.warning("Registry not reachable yet (%s); will keep trying", exc)
    await client.start_heartbeat_loop()
    log.info("Registered %s as %s:%s", request.instance_id, SERVICE_HOST, request.port)


@app.after_serving
async def unregister() -> None:
    await client.stop_heartbeat_loop()
    with contextlib.suppress(ServiceDiscoveryError):
        await client.unregister_service()
    await client.aclose()


def listening_socket() -> socket.socket:
    """Bind first, so the port we register is the port we got (PORT=0 works)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((os.environ.get("BIND_HOST", "0.0.0.0"), int(os.environ.get("PORT", "8080"))))
    sock.listen(128)
    return sock


async def main() -> None:
    sock = listening_socket()
    port = sock.getsockname()[1]
    app.config["PORT"] = port
    app.config["INSTANCE_ID"] = os.environ.get("INSTANCE_ID") or f"{SERVICE_NAME}-{port}"
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) the socket
    config.accesslog = None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main())
