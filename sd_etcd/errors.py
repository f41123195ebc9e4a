"""What can go wrong talking to etcd, split by who is at fault and what the caller does next.

Every error keeps the HTTP status and the gRPC code the gateway sent, so a log line says
exactly what etcd answered. Timeouts are not raised here (this package never waits): a
driver that gives up waiting raises `EtcdUnavailable` itself.
"""

from __future__ import annotations

__all__ = [
    "Compacted",
    "EtcdError",
    "EtcdProtocolError",
    "EtcdRequestError",
    "EtcdUnavailable",
    "FutureRevision",
    "LeaseNotFound",
]


# gRPC status codes the gateway puts in its error bodies ("code").
GRPC_UNKNOWN = 2
GRPC_INVALID_ARGUMENT = 3
GRPC_DEADLINE_EXCEEDED = 4
GRPC_NOT_FOUND = 5
GRPC_FAILED_PRECONDITION = 9
GRPC_OUT_OF_RANGE = 11
GRPC_UNAVAILABLE = 14

# etcdserver errors that etcd 3.4 reports as code 2 (Unknown, HTTP 500) although they
# only mean "no quorum right now": the request may well succeed when retried.
_TRANSIENT_MESSAGES = (
    "no leader",
    "request timed out",
    "leader changed",
    "not enough started members",
    "transport is closing",
    "context deadline exceeded",  # a put or grant without quorum, after 7 s
)


class EtcdError(Exception):
    """Base of every error this package raises."""

    def __init__(self, message: str, *, http_status: int = 0, grpc_code: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.grpc_code = grpc_code

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, http_status={self.http_status}, "
            f"grpc_code={self.grpc_code})"
        )


class EtcdUnavailable(EtcdError):
    """The store cannot answer now (no quorum, shutting down, unreachable). Not the
    caller's fault: retry later; meanwhile refuse writes (503) and serve reads as stale."""


class LeaseNotFound(EtcdError):
    """The lease expired or never existed: register again under a new lease."""


class Compacted(EtcdError):
    """The revision asked for is older than etcd's history: re-list at a pinned revision,
    then watch again from there. `compact_revision` is known only from a watch cancel
    (the gateway's error body for a range does not carry it)."""

    def __init__(
        self,
        message: str,
        *,
        compact_revision: int | None = None,
        http_status: int = 0,
        grpc_code: int = GRPC_OUT_OF_RANGE,
    ) -> None:
        super().__init__(message, http_status=http_status, grpc_code=grpc_code)
        self.compact_revision = compact_revision


class EtcdRequestError(EtcdError):
    """etcd refused the request as asked (bad argument, lease already exists, ...): the
    caller's fault, so retrying the same request will not help."""


class FutureRevision(EtcdRequestError):
    """A revision above etcd's current one was asked for (same gRPC code as `Compacted`,
    told apart by the message)."""


class EtcdProtocolError(EtcdError):
    """An answer this package cannot read (not JSON, wrong shape): the gateway's fault or
    a version this package does not speak. Not retriable as such."""


def error_from_status(http_status: int, grpc_code: int, message: str) -> EtcdError:
    """Map one gateway error (`{"error","message","code"}` with its HTTP status) to the
    exception that tells the caller what to do."""
    lowered = message.lower()
    kind: type[EtcdError]
    transient = grpc_code == GRPC_UNKNOWN and any(text in lowered for text in _TRANSIENT_MESSAGES)
    if (
        transient
        or grpc_code in (GRPC_UNAVAILABLE, GRPC_DEADLINE_EXCEEDED)
        or http_status in (503, 504)
    ):
        kind = EtcdUnavailable
    elif grpc_code == GRPC_NOT_FOUND and "lease" in lowered:
        kind = LeaseNotFound
    elif grpc_code == GRPC_OUT_OF_RANGE and "compacted" in lowered:
        kind = Compacted
    elif grpc_code == GRPC_OUT_OF_RANGE and "future" in lowered:
        kind = FutureRevision
    else:
        kind = EtcdRequestError
    return kind(message, http_status=http_status, grpc_code=grpc_code)
