"""Example: a plain-ASGI service on trio that registers, heartbeats and watches its peer.

Run it next to a registry (see docker-compose.yml in this directory)::

    SERVICE_DISCOVERY_URL=http://127.0.0.1:3004 SERVICE_DISCOVERY_SECRET=... \\
        SERVICE_HOST=127.0.0.1 PORT=8081 python examples/trio_service.py

Where the Quart example uses the seed-style calls, this one shows the
structured style: ``async with client.registered(...)`` owns the registration
(registered on entry, heartbeats in the background, unregistered on exit,
even on Ctrl-C), and ``watch_service`` keeps the list of peers current through
blocking queries instead of asking on every request.

Endpoints: ``GET /health`` (via ``health_asgi_app``), ``GET /hello``,
``GET /peer`` (calls a healthy ``quart-example`` instance), ``GET /peers``
(what the watch saw last), ``GET /metrics``. Settings as in quart_service.py.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from service_discovery import (
    HealthChecker,
    ServiceDiscoveryClient,
    ServiceInstanceList,
    ServiceRegistrationRequest,
    health_asgi_app,
)

log = logging.getLogger("trio-example")

SERVICE_NAME = os.environ.get("SERVICE_NAME", "trio-example")
PEER_SERVICE = os.environ.get("PEER_SERVICE", "quart-example")
SERVICE_HOST = os.environ.get("SERVICE_HOST") or socket.gethostname()

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class State:
    health: ASGIApp
    instance_id = ""
    peers: ServiceInstanceList = ServiceInstanceList()
    requests_served = 0


async def respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, status: int, payload: Any) -> None:
    await respond(send, status, json.dumps(payload).encode(), b"application/json")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The service's own routes. /health, and the lifespan events (nothing to set up
    here: the registration lives in main() around the server), are health_asgi_app's."""
    if scope["type"] != "http" or scope["path"] == "/health":
        await State.health(scope, receive, send)
        return
    path = scope["path"]
    if path == "/hello":
        State.requests_served += 1
        await respond_json(send, 200, {"service": SERVICE_NAME, "instance": State.instance_id})
    elif path == "/peers":
        await respond_json(
            send,
            200,
            {"peers": [p.model_dump(mode="json") for p in State.peers]},
        )
    elif path == "/peer":
        healthy = [p for p in State.peers if p.is_healthy]
        if not healthy:
            await respond_json(send, 503, {"error": f"no healthy {PEER_SERVICE} instance"})
            return
        peer = random.choice(healthy)
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                answer = (await http.get(f"{peer.base_url}/hello")).json()
        except httpx.HTTPError as exc:
            await respond_json(send, 502, {"error": f"{peer.base_url}: {exc}"})
            return
        await respond_json(send, 200, {"me": State.instance_id, "peer": answer})
    elif path == "/metrics":
        text = (
            "# HELP example_requests_total Requests served on /hello.\n"
            "# TYPE example_requests_total counter\n"
            f"example_requests_total {State.requests_served}\n"
            "# HELP example_known_peers Healthy peers seen by the watch.\n"
            "# TYPE example_known_peers gauge\n"
            f"example_known_peers {sum(p.is_healthy for p in State.peers)}\n"
        )
        await respond(send, 200, text.encode(), b"text/plain; version=0.0.4")
    else:
        await respond_json(send, 404, {"error": "not_found"})


async def watch_peers(client: ServiceDiscoveryClient) -> None:
    """Keep State.peers current: one held request at a time, woken by each change."""
    async for peers in client.watch_service(PEER_SERVICE, healthy_only=False):
        State.peers = peers
        log.info("%s instances: %s", PEER_SERVICE, [(p.instance_id, p.status.value) for p in peers])


async def until_signalled() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


async def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((os.environ.get("BIND_HOST", "0.0.0.0"), int(os.environ.get("PORT", "8081"))))
    sock.listen(128)
    port = sock.getsockname()[1]  # PORT=0 works: register the port we really got
    State.instance_id = os.environ.get("INSTANCE_ID") or f"{SERVICE_NAME}-{port}"

    # Add this service's real dependencies with checker.add_check(name, fn).
    checker = HealthChecker(SERVICE_NAME)
    State.health = health_asgi_app(checker)
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) the socket
    config.accesslog = None

    request = ServiceRegistrationRequest(
        service_name=SERVICE_NAME,
        instance_id=State.instance_id,
        host=SERVICE_HOST,
        port=port,
        metadata={"version": "1.0.0", "framework": "trio"},
    )
    async with ServiceDiscoveryClient() as client, client.registered(request):
        log.info("Registered %s as %s:%s", request.instance_id, SERVICE_HOST, port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_peers, client)
            await serve(app, config, shutdown_trigger=until_signalled)  # type: ignore[arg-type]
            nursery.cancel_scope.cancel()
    log.info("Unregistered; bye")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    trio.run(main)
