"""The hostile (and healthy) peer kinds, and a driver for the server that plays them.

Each registered instance gets its own health path `/{kind}/{tag}` (optionally
with a query string, e.g. `/slow/r1-7?delay=0.5`) on one of a few ports this
process listens on; every port serves every path. The kinds, and the status
docs/api.md makes the registry give each of them:

| kind | what the peer does | expected |
|---|---|---|
| `healthy` | `200 {"status":"healthy"}`, keep-alive | healthy |
| `hang` | reads the request, never answers (until the client hangs up) | unhealthy (timeout) |
| `trickle` | the whole response, status line included, one byte per second | unhealthy (timeout) |
| `trickle_body` | headers at once, then the body one byte per second | unhealthy (timeout) |
| `huge` | `200` with a 5 MiB body, written as fast as the client reads | unhealthy (over 64 KiB) |
| `redirect` | `302` to the healthy path (redirects are never followed) | unhealthy |
| `reset` | reads the request, then closes with `SO_LINGER 0`: a TCP RST | unhealthy |
| `invalid_json` | `200`, `application/json`, truncated JSON | healthy (1) |
| `slow` | sleeps `delay` s (query parameter, default 0.5), then healthy | healthy (2) |

(1) docs/api.md: a 2xx whose body is not JSON passes, so a broken JSON body
is healthy. (2) as long as `delay` is under HEALTH_CHECK_TIMEOUT_SECONDS.

The server is the one fake-peer server (`conformance.fake_peers`, which also
serves the conformance suite and the probe-capacity scenario): it logs every
request with its arrival time before answering, and has the control paths
`/_log`, `/_stats` and `/_reset` that `PeersProcess` reads. This module is the
driver side: which kinds there are, which port each goes on, and
`start_peers()`, which runs the server in a child process on pre-bound
127.0.0.1 sockets through the one process helper.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from conformance.fake_peers import EXPECTED
from conformance.server_process import ChildProcess, start_fake_peers

__all__ = ["EXPECTED", "HOSTILE_KINDS", "KINDS", "PeersProcess", "port_for", "split_ports"]

KINDS = tuple(EXPECTED)
HOSTILE_KINDS = tuple(kind for kind in KINDS if kind != "healthy")
#: Kinds whose connection a probe can never use again: the registry must close
#: it (timed out, over the body limit, or reset). Drivers put these on ports of
#: their own (`port_for`), so any registry socket still connected to one of
#: those ports once every such instance is gone is a leaked connection, whatever
#: the probe client's keep-alive policy does with the reusable ones.
CLOSING_KINDS = ("hang", "trickle", "trickle_body", "huge", "reset")


def split_ports(ports: Sequence[int]) -> tuple[list[int], list[int]]:
    """(keep-alive ports, closing ports): the first half for the kinds whose connection
    can be kept alive, the rest for `CLOSING_KINDS`; one port serves both when alone."""
    if len(ports) < 2:
        return list(ports), list(ports)
    half = len(ports) // 2
    return list(ports[:half]), list(ports[half:])


def port_for(kind: str, number: int, ports: Sequence[int]) -> int:
    """The peer port an instance of `kind` numbered `number` uses (see `split_ports`)."""
    keep_alive, closing = split_ports(ports)
    group = closing if kind in CLOSING_KINDS else keep_alive
    return group[number % len(group)]


@dataclass
class PeersProcess:
    """A running peer server (child process) and a small client for its control paths."""

    child: ChildProcess
    client: httpx.Client = field(repr=False)

    @property
    def ports(self) -> list[int]:
        return self.child.ports

    @property
    def base(self) -> str:
        return self.child.url

    def log(self, prefix: str = "") -> tuple[float, dict[str, list[float]]]:
        """(peer's now, {path: arrival times}) for the paths starting with `prefix`."""
        response = self.client.get(f"{self.base}/_log", params={"prefix": prefix})
        response.raise_for_status()
        data = response.json()
        return float(data["now"]), data["paths"]

    def stats(self) -> dict[str, Any]:
        response = self.client.get(f"{self.base}/_stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def reset(self) -> None:
        self.client.get(f"{self.base}/_reset").raise_for_status()


@contextlib.contextmanager
def start_peers(ports: int = 4) -> Iterator[PeersProcess]:
    """Start the peer server on `ports` pre-bound 127.0.0.1 sockets; stop it afterwards."""
    child = start_fake_peers(ports)
    try:
        with httpx.Client(timeout=10.0, trust_env=False) as client:
            yield PeersProcess(child, client)
    finally:
        child.shutdown()
        child.cleanup()
