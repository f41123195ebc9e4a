"""`service-discovery services|instances|register|...`: the registry from an operator's shell.

What `consul catalog` and `etcdctl` are to theirs: list services and
instances, register, unregister and heartbeat by hand, follow a service as it
changes, and ask the registry how it is. Every command goes through the SDK's
client, so the CLI sees the registry exactly as services do; the two calls the
client has no method for (a heartbeat for an instance this process did not
register, and the registry's own ``/health``) go through the SDK's HTTP layer,
which maps errors the same way.

This module is the console script. The operator commands need only the
SDK's dependencies (httpx, pydantic, anyio): an operator's laptop or a CI job
should not need the server extras to run ``service-discovery services``.
``serve`` is not here: the server registers it as a plugin, an entry point
named ``serve`` in the group ``service_discovery.commands``, and :func:`main`
loads that entry point by name. The SDK thus never imports the server
package, nor knows what it depends on; where the server's dependencies are
missing, loading the plugin raises `ModuleNotFoundError` (the server checks
its own), which becomes one line naming the extra to install.

Scripts can test the exit code: 0 ok, 1 not found (unknown service or
instance), 2 usage (argparse's errors, and requests the registry refuses as
invalid), 3 registry unreachable (or unable to serve: 5xx, draining, full),
4 authentication (no token, 401, or 403 for a read-only token on a write).
Every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any, TextIO, cast

import anyio
import anyio.abc
import httpx
from pydantic import BaseModel

from . import __version__
from .client import ServiceDiscoveryClient
from .config import ENV_SECRET, ENV_URL, ClientSettings, parse_registry_urls
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    RegistryUnavailableError,
    ServiceDiscoveryError,
)
from .models import CheckType, HealthCheck, InstanceStatus, Maintenance, ServiceInstance
from .registry_http import RegistryHTTP

__all__ = [
    "COMMAND_PLUGINS",
    "DEFAULT_CLI_URL",
    "EXIT_AUTH",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "build_parser",
    "instance_changes",
    "main",
    "relative_time",
    "run",
    "use_colour",
]

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4

DEFAULT_CLI_URL = "http://127.0.0.1:3004"
"""An operator usually runs the CLI beside the registry; services default to its DNS name."""

COMMAND_PLUGINS = "service_discovery.commands"
"""The entry-point group of commands other packages add; each is called with the arguments
after its name and returns the exit code. The server's ``serve`` is one."""
_SERVER_INSTALL = "pip install 'service-discovery[server]'"
_WATCH_WAIT_SECONDS = 60.0
_COLOURS = {
    InstanceStatus.HEALTHY: "32",  # green
    InstanceStatus.UNHEALTHY: "31",  # red
    InstanceStatus.UNKNOWN: "33",  # yellow
}
# The fields whose change raises a service's discovery index (docs/api.md,
# "Blocking queries"); heartbeat and probe timestamps alone are not changes.
_WATCHED_FIELDS = (
    "status",
    "maintenance",
    "host",
    "port",
    "health_endpoint",
    "metadata",
    "tags",
    "load_percentage",
    "check",
)
_MAINTENANCE = "maintenance"
"""What ``services`` counts a drained instance as: healthy reads leave it out, whatever
its status, so it is neither healthy nor, while its probes pass, unhealthy."""
# Commands the registry answers without a token.
_TOKENLESS = frozenset({"health"})


class CommandError(Exception):
    """A failure the CLI itself detects, with the exit code it ends in."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ------------------------------------------------------------------ entry point


def main(argv: Sequence[str] | None = None) -> int:
    """The ``service-discovery`` console script: ``serve`` goes to the server, the rest here."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["serve"]:
        return _serve(arguments[1:])
    try:
        return run(build_parser().parse_args(arguments))
    except KeyboardInterrupt:
        return 130


def _serve(arguments: list[str]) -> int:
    """``serve``: the plugin of that name, given the arguments after it, or one line
    saying what to install."""
    found = entry_points(group=COMMAND_PLUGINS, name="serve")
    if not found:
        return _fail(EXIT_USAGE, f"serve is not installed: {_SERVER_INSTALL}")
    try:
        command = cast(Callable[[list[str]], int], next(iter(found)).load())
    except ModuleNotFoundError as exc:
        missing = f"serve needs the server extras ({exc.name} is missing)"
        return _fail(EXIT_USAGE, f"{missing}: {_SERVER_INSTALL}")
    return command(arguments)


def build_parser() -> argparse.ArgumentParser:
    """Every command's arguments; ``serve`` is listed for ``--help`` only (it has its own).

    ``--url`` and ``--token`` are taken before the command and after it (the
    later one wins): the subcommands' copies default to nothing at all
    (``SUPPRESS``), so they do not overwrite what was given before the command.
    """
    connection = argparse.ArgumentParser(add_help=False)
    _add_connection_flags(connection, default=argparse.SUPPRESS)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON for scripts")
    meta = argparse.ArgumentParser(add_help=False)
    meta.add_argument("--meta", action="append", default=[], type=_key_value, metavar="KEY=VALUE")

    parser = argparse.ArgumentParser(
        prog="service-discovery",
        description="Run the service registry, or ask one about its services.",
        epilog="exit codes: 0 ok, 1 not found, 2 usage, 3 registry unreachable, 4 auth",
    )
    parser.add_argument("--version", action="version", version=__version__)
    _add_connection_flags(parser, default=None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the registry server (see serve --help)")
    services = commands.add_parser(
        "services", parents=[connection, as_json], help="list services, instances by status"
    )
    _add_tag_option(services, "only instances carrying this tag (repeatable: every one)")
    instances = commands.add_parser(
        "instances", parents=[connection, as_json, meta], help="the instances of one service"
    )
    instances.add_argument("name", metavar="NAME")
    instances.add_argument(
        "--healthy",
        action="store_true",
        help="what the registry's healthy read returns: healthy and not in maintenance",
    )
    instances.add_argument(
        "--status",
        action="append",
        default=[],
        choices=[str(status) for status in InstanceStatus],
        help="only instances with this status, in maintenance or not (repeatable: any)",
    )
    _add_tag_option(instances, "only instances carrying this tag (repeatable: every one)")
    register = commands.add_parser(
        "register", parents=[connection, meta], help="register (or update) an instance"
    )
    _add_instance_arguments(register)
    register.add_argument("--host", required=True)
    register.add_argument("--port", required=True, type=_port)
    register.add_argument("--health-endpoint", default="/health")
    register.add_argument(
        "--check",
        choices=[str(kind) for kind in CheckType],
        help="how the registry checks it: http (GET the health endpoint, the default), "
        "tcp (connect to the port) or ttl (no probe: healthy while it heartbeats)",
    )
    _add_tag_option(
        register, "a tag for the instance, as Consul-style consumers route by (repeatable)"
    )
    unregister = commands.add_parser(
        "unregister", parents=[connection], help="remove an instance now"
    )
    _add_instance_arguments(unregister)
    heartbeat = commands.add_parser(
        "heartbeat", parents=[connection], help="renew an instance's lease once"
    )
    _add_instance_arguments(heartbeat)
    heartbeat.add_argument("--load", type=_load, help="reported load, 0..1")
    watch = commands.add_parser(
        "watch",
        parents=[connection, as_json],
        help="print each change of a service as it happens (Ctrl-C ends)",
    )
    watch.add_argument("name", metavar="NAME")
    drain = commands.add_parser(
        "drain",
        parents=[connection],
        help="put an instance in maintenance (out of healthy reads), or --clear it",
    )
    _add_instance_arguments(drain)
    drain.add_argument("--reason", default="drained by operator", help="shown with the instance")
    drain.add_argument("--clear", action="store_true", help="end the maintenance instead")
    commands.add_parser("health", parents=[connection, as_json], help="the registry's own health")
    return parser


def _add_connection_flags(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument(
        "--url",
        help=f"registry URL, or several comma-separated, tried in turn "
        f"(default ${ENV_URL} or {DEFAULT_CLI_URL})",
        type=_url,
        default=default,
    )
    parser.add_argument(
        "--token",
        help=f"bearer token (default ${ENV_SECRET}; prefer the variable: flags show in ps)",
        default=default,
    )


def _add_instance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("instance_id", metavar="ID")


def _add_tag_option(parser: argparse.ArgumentParser, help: str) -> None:
    """`--tag`, repeatable: a filter on `services` and `instances`, the tags on `register`."""
    parser.add_argument("--tag", action="append", default=[], metavar="TAG", help=help)


def _url(raw: str) -> str:
    """One registry URL or several, comma-separated, checked as the SDK checks them."""
    try:
        return ",".join(parse_registry_urls(raw))
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _key_value(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {raw!r}")
    return key, value


def _port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (1..65535): {raw!r}")
    return port


def _load(raw: str) -> float:
    try:
        load = float(raw)
    except ValueError:
        load = -1.0
    if not 0.0 <= load <= 1.0:
        raise argparse.ArgumentTypeError(f"not a load between 0 and 1: {raw!r}")
    return load


# ---------------------------------------------------------------- running a command


@dataclass(frozen=True, slots=True)
class Connection:
    """Where the registry is and how to talk to it, for one command."""

    url: str
    token: str | None
    http: httpx.AsyncClient

    def client(self) -> ServiceDiscoveryClient:
        # No cache: an operator asking twice wants the registry's answer twice.
        return ServiceDiscoveryClient(self.url, self.token, http_client=self.http, cache=False)

    def raw(self) -> RegistryHTTP:
        return RegistryHTTP(ClientSettings.resolve(self.url, self.token), http_client=self.http)


Command = Callable[[Connection, argparse.Namespace, TextIO], Awaitable[None]]


def run(args: argparse.Namespace, *, stdout: TextIO | None = None) -> int:
    """Run one parsed operator command; return its exit code (failures: one stderr line)."""
    out = sys.stdout if stdout is None else stdout
    command = _COMMANDS[args.command]
    url = args.url or os.environ.get(ENV_URL) or DEFAULT_CLI_URL
    token = args.token or os.environ.get(ENV_SECRET) or None
    try:
        url = _url(url)
    except argparse.ArgumentTypeError as exc:
        return _fail(EXIT_USAGE, f"{ENV_URL}: {exc}")
    if token is None and args.command not in _TOKENLESS:
        # Said here, once: the registry would only answer 401.
        return _fail(EXIT_AUTH, f"no token: set ${ENV_SECRET} (or pass --token)")

    async def main_task() -> None:
        async with httpx.AsyncClient(timeout=10.0) as http:
            await command(Connection(url, token, http), args, out)

    try:
        anyio.run(_unwrapped, main_task)
    except CommandError as exc:
        return _fail(exc.exit_code, str(exc))
    except NotFoundError as exc:
        return _fail(EXIT_NOT_FOUND, str(exc))
    except AuthenticationError as exc:
        return _fail(EXIT_AUTH, f"{exc} (check --token or ${ENV_SECRET})")
    except BadRequestError as exc:
        return _fail(EXIT_USAGE, str(exc))
    except RegistryUnavailableError as exc:
        return _fail(EXIT_UNREACHABLE, str(exc))
    except ServiceDiscoveryError as exc:
        return _fail(EXIT_UNREACHABLE, f"unexpected answer from the registry: {exc}")
    return EXIT_OK


async def _unwrapped(body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body``; a task group's group of one error comes out as that error."""
    try:
        await body()
    except BaseExceptionGroup as group:
        while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
            inner = group.exceptions[0]
            if not isinstance(inner, BaseExceptionGroup):
                raise inner from inner.__cause__
            group = inner
        raise


def _fail(code: int, message: str) -> int:
    print(f"service-discovery: {message}", file=sys.stderr)
    return code


# ------------------------------------------------------------------ the commands


async def _services(conn: Connection, args: argparse.Namespace, out: TextIO) -> None:
    services = await conn.client().get_all_services(tags=args.tag)
    states = [*(str(status) for status in InstanceStatus), _MAINTENANCE]
    rows = []
    for name in sorted(services):
        counts = dict.fromkeys(states, 0)
        for instance in services[name]:
            counts[_shown_state(instance)] += 1
        rows.append({"service_name": name, "instances": len(services[name])} | counts)
    if args.json:
        _print_json(rows, out)
        return
    if not rows:
        tagged = f" with an instance tagged {','.join(args.tag)}" if args.tag else " registered"
        print(f"no services{tagged}", file=sys.stderr)
        return
    header = ["SERVICE", "INSTANCES", *(state.upper() for state in states)]
    table = [[str(row[key]) for key in row] for row in rows]
    _print_table(header, table, out)


async def _instances(conn: Connection, args: argparse.Namespace, out: TextIO) -> None:
    # The registry filters (its healthy read, ?meta., ?tag=, ?status=), so "healthy"
    # means here exactly what it means to every client of the API.
    client = conn.client()
    chosen = await client.discover_services(
        args.name,
        healthy_only=args.healthy,
        metadata=dict(args.meta),
        status=args.status,
        tags=args.tag,
    )
    # Nothing chosen: the full list tells an unknown service (its 404) from no match.
    if not chosen and not await client.discover_services(args.name, healthy_only=False):
        raise CommandError(EXIT_NOT_FOUND, f"service {args.name!r} is not registered")
    if args.json:
        _print_json([i.model_dump(mode="json") for i in chosen], out)
        return
    if not chosen:
        print(f"no instance of {args.name!r} matches", file=sys.stderr)
        return
    now = datetime.now(UTC)
    colour = use_colour(out)
    header = [
        "INSTANCE",
        "ADDRESS",
        "STATUS",
        "MAINTENANCE",
        "LOAD",
        "LAST HEARTBEAT",
        "METADATA",
        "TAGS",
    ]
    table = [
        [
            i.instance_id,
            i.address,
            str(i.status),
            _maintenance_cell(i.maintenance, now),
            f"{i.load_percentage:.2f}",
            relative_time(i.last_heartbeat, now),
            ",".join(f"{k}={v}" for k, v in sorted(i.metadata.items())),
            _plain(i.tags),
        ]
        for i in chosen
    ]
    _print_table(header, table, out, status_column=2 if colour else None)


async def _register(conn: Connection, args: argparse.Namespace, out: TextIO) -> None:
    await conn.client().register_service(
        service_name=args.name,
        instance_id=args.instance_id,
        host=args.host,
        port=args.port,
        health_endpoint=args.health_endpoint,
        metadata=dict(args.meta),
        tags=args.tag,
        check=args.check,
    )
    checked = f" ({args.check} check)" if args.check else ""
    tagged = f" tagged {','.join(dict.fromkeys(args.tag))}" if args.tag else ""
    print(
        f"registered {args.name}/{args.instance_id} at {args.host}:{args.port}{checked}{tagged}",
        file=out,
    )


async def _unregister(conn: Connection, args: argparse.Namespace, out: TextIO) -> None:
    await conn.client().unregister_service(args.name, args.instance_id)
    print(f"unregistered {args.name}/{args.instance_id}", file=out)


async def _heartbeat(conn: Connection, args: argparse.Namespace, out: TextIO) -> None:
    # The client heartbeats only the instance it registered itself; an operator
    # names any instance, so this is the one raw request.
    payload: dict[str, Any] = {"service_name": args.name, "instance_id": args.instance_id}
    if args.load is not None:
        payload["load_percentage"] = args.load
    await conn.raw().request("POST", "/v1/discovery/heartbeat", json=payload)
    print(f"heartbeat sent for {args.name}/{args.instance_id}", file=out)


async def _drain(conn: Connection, args: argparse.Namespace, out: TextIO) -> None:
    client = conn.client()
    if args.clear:
        await client.clear_maintenance(args.name, args.instance_id)
        print(f"{args.name}/{args.instance_id} is back in rotation", file=out)
    else:
        await client.set_maintenance(args.name, args.instance_id, reason=args.reason)
        print(f"{args.name}/{args.instance_id} is in maintenance: {args.reason}", file=out)


async def _health(conn: Connection, args: argparse.Namespace, out: TextIO) -> None:
    response = await conn.raw().request("GET", "/health")
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise RegistryUnavailableError(f"{conn.url}/health did not answer a JSON object")
    if args.json:
        _print_json(document, out)
        return
    rows = [[str(key), _plain(value)] for key, value in document.items()]
    _print_table(None, rows, out)


async def _watch(conn: Connection, args: argparse.Namespace, out: TextIO) -> None:
    client = conn.client()
    colour = use_colour(out) and not args.json

    def show(changes: list[InstanceChange]) -> None:
        for change in changes:
            _print_change(args.name, change, out, json_lines=args.json, colour=colour)

    async def follow() -> None:
        # One plain read first, so an unreachable registry or a wrong token
        # ends the command (exit 3 or 4) instead of being retried by the watch.
        previous = list(await client.discover_services(args.name, healthy_only=False))
        show(instance_changes([], previous, initial=True))
        async for instances in client.watch_service(
            args.name, healthy_only=False, wait_seconds=_WATCH_WAIT_SECONDS
        ):
            show(instance_changes(previous, instances))
            previous = list(instances)

    # The signal handlers are in place before the first line is printed.
    await _until_signalled(follow)


async def _until_signalled(body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` until it returns or SIGINT/SIGTERM arrives; a signal is a clean end."""
    async with anyio.create_task_group() as tasks:

        async def stop_on_signal(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for _ in signals:
                    tasks.cancel_scope.cancel()
                    return

        await tasks.start(stop_on_signal)
        await body()
        tasks.cancel_scope.cancel()


_COMMANDS: dict[str, Command] = {
    "drain": _drain,
    "services": _services,
    "instances": _instances,
    "register": _register,
    "unregister": _unregister,
    "heartbeat": _heartbeat,
    "watch": _watch,
    "health": _health,
}


# -------------------------------------------------------------------- output


@dataclass(frozen=True, slots=True)
class InstanceChange:
    """One line of ``watch``: what happened to one instance between two answers.

    ``event`` is ``present`` (there when the watch began), ``added``,
    ``removed``, ``status`` (its status moved, maybe with other fields),
    ``maintenance`` (it was drained, its drain ended or its reason changed) or
    ``changed``; ``changes`` maps each changed field to its old and new value.
    """

    event: str
    instance_id: str
    instance: ServiceInstance | None
    changes: Mapping[str, tuple[Any, Any]]


def instance_changes(
    before: Iterable[ServiceInstance], after: Iterable[ServiceInstance], *, initial: bool = False
) -> list[InstanceChange]:
    """What moved from one instance list to the next, in instance-id order."""
    old = {i.instance_id: i for i in before}
    new = {i.instance_id: i for i in after}
    changes: list[InstanceChange] = []
    for instance_id in sorted(old.keys() | new.keys()):
        was, now = old.get(instance_id), new.get(instance_id)
        if was is None and now is not None:
            changes.append(InstanceChange("present" if initial else "added", instance_id, now, {}))
        elif now is None:
            changes.append(InstanceChange("removed", instance_id, None, {}))
        else:
            assert was is not None
            moved = {
                field: (getattr(was, field), getattr(now, field))
                for field in _WATCHED_FIELDS
                if getattr(was, field) != getattr(now, field)
            }
            if moved:
                event = next((f for f in ("status", "maintenance") if f in moved), "changed")
                changes.append(InstanceChange(event, instance_id, now, moved))
    return changes


def _print_change(
    service: str, change: InstanceChange, out: TextIO, *, json_lines: bool, colour: bool
) -> None:
    now = datetime.now(UTC)
    if json_lines:
        record = {
            "time": now.isoformat().replace("+00:00", "Z"),
            "service_name": service,
            "instance_id": change.instance_id,
            "event": change.event,
            "changes": {k: [_jsonable(a), _jsonable(b)] for k, (a, b) in change.changes.items()},
            "instance": None
            if change.instance is None
            else change.instance.model_dump(mode="json"),
        }
        print(json.dumps(record, sort_keys=True), file=out, flush=True)
        return
    parts = [now.astimezone().strftime("%H:%M:%S"), f"{service}/{change.instance_id}", change.event]
    instance = change.instance
    if change.event in ("present", "added") and instance is not None:
        parts += [instance.address, _paint(str(instance.status), instance.status, colour)]
        if instance.maintenance is not None:
            parts.append(_field_change("maintenance", None, instance.maintenance, colour))
    elif change.changes:
        texts = [_field_change(field, a, b, colour) for field, (a, b) in change.changes.items()]
        if change.event == "maintenance":  # the event names its first field already
            texts[0] = texts[0].removeprefix("maintenance ")
        parts.append(", ".join(texts))
    print(" ".join(parts), file=out, flush=True)


def _field_change(field: str, old: Any, new: Any, colour: bool) -> str:
    if field == "status":
        return f"{_paint(str(old), old, colour)} -> {_paint(str(new), new, colour)}"
    if field == "maintenance":
        return f"maintenance {_maintenance_change(old, new)}"
    return f"{field} {_plain(old)} -> {_plain(new)}"


def _shown_state(instance: ServiceInstance) -> str:
    """``maintenance`` for a drained instance (out of healthy reads), else its status."""
    return _MAINTENANCE if instance.maintenance is not None else str(instance.status)


def _reason(maintenance: Maintenance) -> str:
    return maintenance.reason or "no reason given"


def _maintenance_change(old: Maintenance | None, new: Maintenance | None) -> str:
    if new is None:
        return "off"
    if old is None:
        return f"on: {_reason(new)}"
    return f"reason {_reason(old)} -> {_reason(new)}"


def _maintenance_cell(maintenance: Maintenance | None, now: datetime) -> str:
    if maintenance is None:
        return "-"
    return f"{_reason(maintenance)} ({relative_time(maintenance.since, now)})"


def use_colour(stream: TextIO) -> bool:
    """Colour only for a person at a terminal who has not asked for none (no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty()) and not os.environ.get("NO_COLOR")


def _paint(text: str, status: object, colour: bool) -> str:
    code = _COLOURS.get(status) if isinstance(status, InstanceStatus) else None
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text


def relative_time(then: datetime | None, now: datetime) -> str:
    """``12s ago``, ``5m ago``, ``3h ago``, ``2d ago``; ``-`` when never."""
    if then is None:
        return "-"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _print_table(
    header: list[str] | None,
    rows: list[list[str]],
    out: TextIO,
    *,
    status_column: int | None = None,
) -> None:
    """Columns padded to their widest cell; the status column painted after padding."""
    everything = ([header] if header else []) + rows
    widths = [max(len(row[c]) for row in everything) for c in range(len(everything[0]))]
    for number, row in enumerate(everything):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        if status_column is not None and (header is None or number > 0):
            status = _status_named(row[status_column])
            cells[status_column] = _paint(cells[status_column], status, True)
        print("  ".join(cells).rstrip(), file=out)


def _status_named(raw: str) -> InstanceStatus | None:
    try:
        return InstanceStatus(raw)
    except ValueError:
        return None


def _print_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2, sort_keys=True), file=out)


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, HealthCheck):
        return str(value.type)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    if isinstance(value, tuple):  # tags, in the order registered
        return ",".join(value) or "-"
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, InstanceStatus):
        return str(value)
    if isinstance(value, BaseModel):  # a maintenance or a check: as the registry shows it
        return value.model_dump(mode="json")
    return value
