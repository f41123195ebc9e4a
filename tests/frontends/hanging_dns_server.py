"""The registry's CLI with a system resolver that never answers for names under `.invalid`.

    python -m tests.frontends.hanging_dns_server serve --frontend quart --fd N

Stands in for a DNS server that stopped answering, without any real DNS: the
process's `socket.getaddrinfo` blocks for ever on such a name (after writing
`HANGING_LOOKUP <name>` to stderr, so a test knows the lookup began) and
answers every other name as before. Used by test_frontend_probe_resolver.py to
show that shutdown never waits for probe lookups.
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any

from frontends.cli import main as cli_main

MARKER = "HANGING_LOOKUP"

_system_getaddrinfo = socket.getaddrinfo
_never = threading.Event()


def _hanging_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name.rstrip(".").endswith(".invalid"):
        print(f"{MARKER} {name}", file=sys.stderr, flush=True)
        _never.wait()
    return _system_getaddrinfo(host, *args, **kwargs)


def main() -> int:
    socket.getaddrinfo = _hanging_getaddrinfo
    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
