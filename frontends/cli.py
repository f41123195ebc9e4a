"""`service-discovery serve`: settings from the environment, then one frontend.

The console script is the SDK's operator CLI (`service_discovery.cli`), which
runs without the server extras and never imports this package. It finds
:func:`serve` through the entry point this distribution registers in
pyproject (group ``service_discovery.commands``, name ``serve``), so the
client names a command, not a package. Loading this module checks that the
server extras are installed and fails with `ModuleNotFoundError` naming the
first one missing: the console script turns that into one line saying what to
install, without knowing what the server needs.

`python -m frontends serve ...` calls :func:`serve` directly; any other
command given to `python -m frontends` goes to the operator CLI (this package
may import the SDK; the SDK may not import this package).

Startup problems end in one line on stderr naming what to fix, and exit 2;
a traceback is for bugs, not for a typo in a deployment file.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from frontends import FRONTENDS
from frontends.runtime.logs import configure_logging, logfmt
from frontends.servers.tested import UntestedServer
from sd_core import ConfigError, __version__

if TYPE_CHECKING:
    from frontends.quart_app.user_app import AppSource
    from frontends.runtime.settings import Settings

log = logging.getLogger("sd.registry")

#: What `serve` needs beyond the SDK (pyproject's ``server`` extra), by import name;
#: the default frontend's framework first, as the name a user looks for.
SERVER_EXTRAS = ("quart", "hypercorn", "trio", "prometheus_client")


def _require_server_extras() -> None:
    """Fail this module's import, naming the first missing server extra.

    Run when the module loads, which is when the console script loads the
    ``serve`` entry point: with only the SDK installed, the load fails at once
    with the missing module's name. `find_spec` looks without importing, so a
    trio registry does not load Quart for the check.
    """
    for name in SERVER_EXTRAS:
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


_require_server_extras()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="service-discovery serve", description="Run the registry server."
    )
    parser.add_argument("--frontend", choices=FRONTENDS, default="quart")
    parser.add_argument(
        "--host", help="address to bind (default $SERVICE_DISCOVERY_HOST or 0.0.0.0)"
    )
    parser.add_argument("--port", type=int, help="port (default $SERVICE_DISCOVERY_PORT or 3004)")
    parser.add_argument(
        "--fd", type=int, help="serve on an inherited, listening socket (for tests and supervisors)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="must be 1: the state lives in one process (scale out in cluster mode)",
    )
    parser.add_argument(
        "--server",
        choices=("hypercorn", "uvicorn"),
        default="hypercorn",
        help="HTTP server for the quart frontend (uvicorn needs the [uvicorn] extra)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop for the quart frontend (auto: uvloop when installed)",
    )
    parser.add_argument(
        "--app",
        metavar="MODULE:NAME",
        help="serve your Quart app with the registry in it: NAME is a Quart app (the registry "
        "is mounted into it) or a factory taking the runtime (quart frontend only; README)",
    )
    return parser


def _fail(message: str) -> int:
    print(f"service-discovery: {message}", file=sys.stderr)
    return 2


def _address_in_use(
    host: str,
    port: int,
    setting: str = "SERVICE_DISCOVERY_PORT or --port",
    kinds: tuple[socket.SocketKind, ...] = (socket.SOCK_STREAM,),
) -> str | None:
    """One line if `host:port` cannot be bound (for each of `kinds`), checked before
    the server starts.

    Hypercorn (or the DNS interface's bind in the lifespan) would otherwise fail
    deep inside its startup with a traceback ending in `OSError: [Errno 98]`. The
    check binds the way the server does (SO_REUSEADDR for TCP) and lets go at
    once; a race with another process in between still fails, just less politely.
    """
    for kind in kinds:
        try:
            infos = socket.getaddrinfo(host or None, port, type=kind)
        except OSError as error:
            return f"cannot listen on {host}:{port}: {error.strerror or error}"
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            if kind == socket.SOCK_STREAM:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return (
                        f"cannot listen on {host}:{port}: the address is already in use "
                        f"(another registry? set {setting})"
                    )
                return f"cannot listen on {host}:{port}: {error.strerror or error}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m frontends`: ``serve`` here, every other command to the operator CLI."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["serve"]:
        return serve(arguments[1:])
    from service_discovery.cli import main as operator_main  # --help, --version too

    return operator_main(arguments)


def serve(arguments: Sequence[str]) -> int:
    """The ``serve`` command, given the arguments after it; returns the exit code."""
    args = _parser().parse_args(arguments)
    if args.workers != 1:
        return _fail(
            f"--workers {args.workers} refused: each worker would hold its own registry and "
            "they would disagree; run one worker per node, and scale out in cluster mode "
            "(set SERVICE_DISCOVERY_ETCD_ENDPOINTS on each node)"
        )
    from frontends.runtime.settings import load_settings

    try:
        settings = load_settings(os.environ, host=args.host, port=args.port, fd=args.fd)
    except ConfigError as error:
        return _fail(f"invalid {error.name}: {error.message}")
    if args.frontend == "trio" and args.loop == "uvloop":
        return _fail("--loop uvloop applies to the quart frontend only")
    if args.server == "uvicorn":
        if args.frontend != "quart":
            return _fail("--server uvicorn applies to the quart frontend only")
        import importlib.util

        if importlib.util.find_spec("uvicorn") is None:
            return _fail(
                "--server uvicorn: uvicorn is not installed "
                "(pip install 'service-discovery[uvicorn]')"
            )
    app = None
    if args.app is not None:
        if args.frontend != "quart":
            return _fail("--app applies to the quart frontend only")
        from frontends.quart_app.user_app import AppError, load_app

        try:
            app = load_app(args.app)
        except AppError as error:
            return _fail(f"invalid {error.name}: {error.message}")
    if args.loop == "uvloop":
        from frontends.quart_app.event_loop import uvloop_available

        if not uvloop_available():
            return _fail(
                "--loop uvloop: uvloop is not installed (pip install 'service-discovery[uvloop]')"
            )

    if settings.fd is None:
        taken = _address_in_use(settings.host, settings.port)
        if taken is not None:
            return _fail(taken)
    if settings.dns is not None and settings.dns.port != 0:
        taken = _address_in_use(
            settings.host,
            settings.dns.port,
            "SERVICE_DISCOVERY_DNS_PORT",
            (socket.SOCK_DGRAM, socket.SOCK_STREAM),
        )
        if taken is not None:
            return _fail(taken)
    configure_logging(settings.log_level)
    from frontends.runtime.memory import pin_mmap_threshold

    pin_mmap_threshold()
    if settings.secret_generated:
        kept = settings.secret_file
        where = "for this run only" if kept is None else f"kept in {kept} while it exists"
        print(
            "\n*** DEVELOPMENT SETTING: SERVICE_DISCOVERY_SECRET is not set. ***\n"
            f"*** Generated token {where}: {settings.secret}\n"
            "*** Set SERVICE_DISCOVERY_SECRET before using this in production. ***\n",
            file=sys.stderr,
            flush=True,
        )
    where = f"fd {settings.fd}" if settings.fd is not None else f"{settings.host}:{settings.port}"
    log.info(
        logfmt(
            "starting",
            frontend=args.frontend,
            server=args.server,
            listen=where,
            version=__version__,
        )
    )
    try:
        _serve_with(args.frontend, args.server, args.loop, settings, app)
    except UntestedServer as error:
        return _fail(error.message)
    except ConfigError as error:
        return _fail(f"invalid {error.name}: {error.message}")
    log.info(logfmt("stopped", frontend=args.frontend))
    return 0


def _serve_with(
    frontend: str, server: str, loop: str, settings: Settings, app: AppSource | None
) -> None:
    """Serve with the chosen frontend and server until a signal; each server's
    `install()` may refuse an untested release first (`UntestedServer`).
    `app`: the user's Quart app (`--app`), else the registry's own."""
    if frontend == "quart":
        from frontends.quart_app.app import create_app

        if server == "uvicorn":
            from frontends.servers.uvicorn.server import serve as serve_uvicorn

            serve_uvicorn(settings, loop=loop, app=create_app if app is None else app)
        else:
            from frontends.servers.hypercorn.asyncio_server import serve as serve_quart

            serve_quart(settings, loop=loop, app=create_app if app is None else app)
    else:
        from frontends.servers.hypercorn.trio_server import serve as serve_trio

        serve_trio(settings)
