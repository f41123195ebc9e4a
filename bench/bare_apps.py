"""Baselines: the same stacks as the registry's frontends, doing only JSON in and out.

- `serve quart`: bare Quart on hypercorn's asyncio worker (`--loop asyncio|uvloop`).
- `serve trio`: a bare ASGI callable on hypercorn's trio worker.

Both run with the registry's own hypercorn configuration
(`frontends.servers.hypercorn.config.hypercorn_config`) and answer:

- `POST` any path: `json.loads` of the body, then `json.dumps` of the
  registry's heartbeat answer. With `--store`, a body POSTed to a path
  ending in `/register` is also kept in a dict by service and instance (the
  stack's floor for memory per record).
- `GET` any path: `json.dumps` of a document shaped like the registry's
  answer for that path (a 10-instance service for `/services/{name}`,
  `/healthy`, `/instances`); with `--store`, `/v1/discovery/services` and
  `/v1/discovery/prometheus` serialise every stored record.

No auth, validation, routing or caching: what the stack costs at best.

For the watch scenario, `GET /wait` parks (with a 5-minute timer, as a
blocking query has) until `POST /fire`, then answers the 10-instance
document; `GET /_parked` says how many are parked.

`probe asyncio|trio` is the probe baseline: httpx (configured exactly as the
registry's probe client) fetching health URLs as fast as `--concurrency`
workers can, `--reps` times `--seconds`; prints `{"probes_per_second": [...]}`.
`--client raw` uses one plain keep-alive connection per worker instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

WAIT_SECONDS = 300.0
HEARTBEAT_ANSWER = {"success": True, "message": "Heartbeat updated successfully"}
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _instance(service: str, n: int) -> dict[str, Any]:
    return {
        "service_name": service,
        "instance_id": f"i-{n:02d}",
        "host": "127.0.0.1",
        "port": 9000,
        "health_endpoint": f"/h/{n}",
        "status": "healthy",
        "last_health_check": "2024-01-15T10:30:00.000000Z",
        "last_heartbeat": "2024-01-15T10:29:45.000000Z",
        "load_percentage": 0.0,
        "metadata": {"version": "1.0.0", "zone": "a"},
        "registered_at": "2024-01-15T10:00:00.000000Z",
    }


def _target_group(record: dict[str, Any]) -> dict[str, Any]:
    labels = {
        "instance": record["instance_id"],
        "service_name": record["service_name"],
        "status": record.get("status", "unknown"),
        "load_percentage": "0.0",
    }
    labels.update(record.get("metadata") or {})
    return {"targets": [f"{record['host']}:{record['port']}"], "labels": labels}


class Documents:
    """What each GET serialises (built once; serialised on every request)."""

    def __init__(self, store: bool) -> None:
        instances = [_instance("hot", n) for n in range(10)]
        self.service = {"service_name": "hot", "instances": instances}
        self.healthy = {"service_name": "hot", "healthy_instances": instances}
        self.targets = [_target_group(i) for i in instances]
        self.store: dict[tuple[str, str], dict[str, Any]] | None = {} if store else None

    def get(self, path: str) -> bytes:
        store = self.store
        if store is not None and path == "/v1/discovery/services":
            services: dict[str, list[dict[str, Any]]] = {}
            for key in sorted(store):
                services.setdefault(key[0], []).append(store[key])
            return _dumps({"services": services}).encode()
        if store is not None and path == "/v1/discovery/prometheus":
            return _dumps([_target_group(store[key]) for key in sorted(store)]).encode()
        if path.endswith("/healthy"):
            return _dumps(self.healthy).encode()
        if path.endswith("/instances"):
            return _dumps(self.targets).encode()
        return _dumps(self.service).encode()

    def post(self, path: str, body: bytes) -> bytes:
        document = json.loads(body)
        if self.store is not None and path.endswith("/register") and isinstance(document, dict):
            name, iid = document.get("service_name"), document.get("instance_id")
            if isinstance(name, str) and isinstance(iid, str):
                self.store[(name, iid)] = document
        return _dumps(HEARTBEAT_ANSWER).encode()


def _config(fd: int) -> Any:
    from frontends.runtime.settings import load_settings
    from frontends.servers.hypercorn.config import hypercorn_config
    from frontends.servers.hypercorn.install import install

    install(None)
    return hypercorn_config(load_settings({"SERVICE_DISCOVERY_SECRET": "bare"}, fd=fd))


# -------------------------------------------------------------------- quart


def quart_app(documents: Documents) -> Any:
    from quart import Quart, Response, request

    app = Quart("bare")
    app.config["RESPONSE_TIMEOUT"] = None  # a parked long poll may outlast Quart's 60 s
    fired = asyncio.Event()
    parked = 0

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @app.route("/<path:path>", methods=["GET", "POST"])
    async def any_path(path: str) -> Response:
        nonlocal fired, parked
        if request.method == "POST":
            if request.path == "/fire":
                event, fired = fired, asyncio.Event()
                event.set()
            data = await request.get_data()
            body = documents.post(request.path, data if isinstance(data, bytes) else data.encode())
        elif request.path == "/wait":
            event = fired
            parked += 1
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(WAIT_SECONDS):
                        await event.wait()
            finally:
                parked -= 1
            body = documents.get(request.path)
        elif request.path == "/_parked":
            body = _dumps({"parked": parked}).encode()
        else:
            body = documents.get(request.path)
        return Response(body, content_type="application/json")

    return app


def serve_quart(fd: int, loop: str, documents: Documents) -> None:
    """Bare Quart on hypercorn's asyncio worker (asyncio or uvloop) until SIGTERM or SIGINT."""
    from hypercorn.asyncio import serve

    async def main() -> None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await serve(quart_app(documents), _config(fd), shutdown_trigger=stop.wait)

    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


# --------------------------------------------------------------------- trio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: acknowledge startup, then shutdown."""
    if (await receive())["type"] == "lifespan.startup":
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


async def _request_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def asgi_app(documents: Documents) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    import trio

    fired = trio.Event()
    parked = 0

    async def wait() -> None:
        nonlocal parked
        event = fired
        parked += 1
        try:
            with trio.move_on_after(WAIT_SECONDS):
                await event.wait()
        finally:
            parked -= 1

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal fired
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        if scope["type"] != "http":
            return
        data = await _request_body(receive)
        if data is None:
            return
        path = scope["path"]
        if scope["method"] == "POST":
            if path == "/fire":
                event, fired = fired, trio.Event()
                event.set()
            body = documents.post(path, data)
        elif path == "/wait":
            await wait()
            body = documents.get(path)
        elif path == "/_parked":
            body = _dumps({"parked": parked}).encode()
        else:
            body = documents.get(path)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def serve_trio(fd: int, documents: Documents) -> None:
    import trio
    from hypercorn.trio import serve

    async def main() -> None:
        async def shutdown() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    return

        await serve(asgi_app(documents), _config(fd), shutdown_trigger=shutdown)  # type: ignore[arg-type]

    trio.run(main)


# ------------------------------------------------------------------- prober


class _RawClient:
    """One keep-alive HTTP/1.1 connection per worker over anyio streams: a GET, no pool."""

    def __init__(self) -> None:
        self._stream: Any = None
        self._buffer = b""

    async def get(self, url: str) -> int:
        import anyio

        netloc, _, path = url.removeprefix("http://").partition("/")
        host, _, port = netloc.rpartition(":")
        if self._stream is None:
            self._stream = await anyio.connect_tcp(host, int(port))
        request = f"GET /{path} HTTP/1.1\r\nhost: {netloc}\r\naccept-encoding: identity\r\n\r\n"
        await self._stream.send(request.encode())
        buffer = self._buffer
        while b"\r\n\r\n" not in buffer:
            buffer += await self._stream.receive()
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(buffer) < length:
            buffer += await self._stream.receive()
        body, self._buffer = buffer[:length], buffer[length:]
        json.loads(body)
        return int(head.split(b" ", 2)[1])


async def _probe_loop(args: argparse.Namespace) -> list[float]:
    """Shared by both loops through anyio: `--concurrency` workers; probes/s of each rep."""
    import anyio

    from frontends.outbound.probing.httpx_client import make_probe_client

    urls = itertools.cycle([f"{args.base}{n}" for n in range(args.count)])
    done = 0
    counting = False
    async with make_probe_client(timeout=5.0, concurrency=args.concurrency) as client:

        async def worker() -> None:
            nonlocal done
            raw = _RawClient() if args.client == "raw" else None
            while True:
                url = next(urls)
                status = await raw.get(url) if raw else (await client.get(url)).status_code
                if status != 200:
                    raise RuntimeError(f"probe answered {status}")
                if counting:
                    done += 1

        rates = []
        async with anyio.create_task_group() as group:
            for _ in range(args.concurrency):
                group.start_soon(worker)
            await anyio.sleep(min(1.0, args.seconds))  # warm-up: open the pooled connections
            counting = True
            for _ in range(args.reps):
                done = 0
                started = time.monotonic()
                await anyio.sleep(args.seconds)
                rates.append(done / (time.monotonic() - started))
            group.cancel_scope.cancel()
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="a bare HTTP app on one stack")
    serve.add_argument("stack", choices=("quart", "trio"))
    serve.add_argument("--fd", type=int, required=True, help="an inherited listening socket")
    serve.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    serve.add_argument("--store", action="store_true", help="keep POSTed records")
    prober = commands.add_parser("probe", help="httpx probing as fast as it goes")
    prober.add_argument("stack", choices=("asyncio", "trio"))
    prober.add_argument("--base", required=True, help="URL prefix; an index is appended")
    prober.add_argument("--count", type=int, default=1000)
    prober.add_argument("--concurrency", type=int, default=100)
    prober.add_argument("--seconds", type=float, default=5.0, help="per repetition")
    prober.add_argument("--reps", type=int, default=3)
    prober.add_argument(
        "--client",
        choices=("httpx", "raw"),
        default="httpx",
        help="httpx as the registry uses it, or a plain keep-alive GET per worker (no pool)",
    )
    args = parser.parse_args(argv)
    if args.command == "probe":
        if args.stack == "trio":
            import trio

            rates = trio.run(_probe_loop, args)
        else:
            rates = asyncio.run(_probe_loop(args))
        print(json.dumps({"probes_per_second": rates}))
        return
    documents = Documents(args.store)
    if args.stack == "quart":
        serve_quart(args.fd, args.loop, documents)
    else:
        serve_trio(args.fd, documents)
    sys.exit(0)


if __name__ == "__main__":
    main()
