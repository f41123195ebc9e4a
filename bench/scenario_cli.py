"""How a scenario script starts: its command line, its banner, and its `Run`."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import signal
import sys
from collections.abc import Iterator

from .processes import PIN, Run, raise_nofile, setup_pinning


def machine_line() -> str:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{now}; {os.cpu_count()} CPUs ({cpu}); Python {platform.python_version()}; "
        f"{PIN.describe()}"
    )


def base_parser(description: str, *, frontends: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    if frontends:
        parser.add_argument("--frontend", choices=("quart", "trio", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="a smoke run, well under a minute")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin servers and load generators to CPUs"
    )
    return parser


def add_probe_client_option(parser: argparse.ArgumentParser) -> None:
    """`--probe-client`: which probe client the registry under test uses."""
    parser.add_argument(
        "--probe-client",
        choices=("builtin", "httpx"),
        default="builtin",
        help="SERVICE_DISCOVERY_PROBE_CLIENT of the server (default builtin)",
    )


def chosen_frontends(args: argparse.Namespace) -> list[str]:
    return ["quart", "trio"] if args.frontend == "both" else [args.frontend]


@contextlib.contextmanager
def scenario(args: argparse.Namespace, title: str) -> Iterator[Run]:
    """Common start of a scenario: pinning, limits, SIGTERM as a clean exit, the banner."""
    setup_pinning(not args.no_pin)
    raise_nofile()

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    print(f"## {title}\n\n{machine_line()}")
    sys.stdout.flush()
    with Run() as run:
        yield run
