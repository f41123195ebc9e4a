"""Where cluster mode keeps what in etcd, and the JSON of each record, both ways.

Under one prefix (one watch covers it all):

- `instances/<service>/<id>`: the registration (no lease: the registry decides expiry);
- `health/<service>/<id>`: its status;
- `maintenance/<service>/<id>`: its drain, if any;
- `soft/<service>/<id>`: its soft state (last heartbeat, load, last health check),
  rewritten by every heartbeat and probe (see `SoftRecord`);

the four per-instance keys are deleted together, in one txn (unregistration, expiry,
deregistration after being unhealthy too long);
- `services/<service>`: the service's mark, rewritten in the txn of every visible change
  of the service (its mod revision is the service's index on every node, see `mirror`);
  no lease, kept after the last instance goes (the index of a removal);
- `nodes/<node-id>`: a live registry node, on that node's lease;
- `self-preservation`: present while expiry is paused, written by the guardian node on
  its own lease (see `guardian`).

Readers ignore fields they do not know, so a newer node can add fields without an
older one choking; a record that does not decode is skipped, never fatal. Times are
wall-clock seconds rounded to microseconds, so every node renders the same text.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Self

from pydantic import ValidationError

from ..models import RegisterRequest
from ..status import Status

DEFAULT_PREFIX = "/service-discovery/"


def wall(seconds: float) -> float:
    """A wall-clock time as records keep it (microseconds)."""
    return round(seconds, 6)


def _dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _number_text(value: float | None) -> bytes | None:
    """`value` as `json.dumps` writes it (null, or a finite float's shortest repr);
    None for anything else."""
    if value is None:
        return b"null"
    if type(value) is float and value - value == 0.0:  # finite (inf - inf is nan)
        return float.__repr__(value).encode()
    return None


#: A JSON number (RFC 8259), as `float()` reads it the same way `json` does.
_NUMBER = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
#: `SoftRecord.encode`'s bytes.
_SOFT_TEXT = re.compile(
    rb'\{"checked_at":(null|%s),"heartbeat_at":(%s),"load":(%s)\}' % (_NUMBER, _NUMBER, _NUMBER)
)


def _loads(raw: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _number(document: dict[str, Any], name: str) -> float | None:
    value = document.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class _Record(ABC):
    """A record's JSON, read back: what does not decode is None (skipped, never fatal)."""

    __slots__ = ()

    @classmethod
    def decode(cls, raw: bytes) -> Self | None:
        document = _loads(raw)
        return None if document is None else cls._from_document(document)

    @classmethod
    @abstractmethod
    def _from_document(cls, document: dict[str, Any]) -> Self | None:
        """The record `document` describes, or None when a field is missing or of the wrong type."""


@dataclass(frozen=True, slots=True)
class InstanceRecord(_Record):
    """`instances/<service>/<id>`. `updated_at` is when it was last written (a
    registration; shown as `last_heartbeat` until the soft state says otherwise); `load`
    is 0..1, the load at that registration (later loads are soft state)."""

    request: RegisterRequest
    registered_at: float
    updated_at: float
    load: float

    def encode(self) -> bytes:
        request = self.request
        document: dict[str, Any] = {
            "service_name": request.service_name,
            "instance_id": request.instance_id,
            "host": request.host,
            "port": request.port,
            "health_endpoint": request.health_endpoint,
            "metadata": dict(request.metadata),
            "registered_at": wall(self.registered_at),
            "updated_at": wall(self.updated_at),
            "load_percentage": self.load,
            "check": {"type": request.check.type},
        }
        if request.tags:
            # Only when given: records of untagged instances stay byte for byte as before.
            document["tags"] = list(request.tags)
        return _dumps(document)

    @classmethod
    def _from_document(cls, document: dict[str, Any]) -> InstanceRecord | None:
        registered = _number(document, "registered_at")
        updated = _number(document, "updated_at")
        load = _number(document, "load_percentage")
        if registered is None or load is None:
            return None
        try:
            request = RegisterRequest.model_validate(document)
        except ValidationError:
            return None
        return cls(request, registered, registered if updated is None else updated, load)


@dataclass(frozen=True, slots=True)
class HealthRecord(_Record):
    """`health/<service>/<id>`: the status, since when, why, and which node decided."""

    status: Status
    since: float
    reason: str
    by_node: str

    def encode(self) -> bytes:
        return _dumps(
            {
                "status": self.status.value,
                "since": wall(self.since),
                "reason": self.reason,
                "by_node": self.by_node,
            }
        )

    @classmethod
    def _from_document(cls, document: dict[str, Any]) -> HealthRecord | None:
        since = _number(document, "since")
        reason, by_node = document.get("reason", ""), document.get("by_node", "")
        try:
            status = Status(str(document.get("status")))
        except ValueError:
            return None
        if since is None or not isinstance(reason, str) or not isinstance(by_node, str):
            return None
        return cls(status, since, reason, by_node)


@dataclass(frozen=True, slots=True)
class MaintenanceRecord(_Record):
    """`maintenance/<service>/<id>`: the instance is drained, why (None: no reason given)
    and since when (wall clock). A key of its own rather than a field of the instance
    record: a re-registration rewrites that record and must not end a drain, and two
    nodes writing one each cannot lose the other's write."""

    reason: str | None
    since: float

    def encode(self) -> bytes:
        return _dumps({"reason": self.reason, "since": wall(self.since)})

    @classmethod
    def _from_document(cls, document: dict[str, Any]) -> MaintenanceRecord | None:
        since = _number(document, "since")
        reason = document.get("reason")
        if since is None or not (reason is None or isinstance(reason, str)):
            return None
        return cls(reason, since)


@dataclass(frozen=True, slots=True)
class SoftRecord(_Record):
    """`soft/<service>/<id>`: what a heartbeat or a probe that changes nothing moves.

    `heartbeat_at` (shown as `last_heartbeat`), the reported `load` (0..1) and
    `checked_at` (shown as `last_health_check`, None before the first probe). A key of
    its own, apart from the instance record: it is rewritten at every heartbeat and
    probe, and applying it never raises the index unless the load moved by
    WATCH_LOAD_DELTA (the registry's rule, as in one process). Every writer rewrites
    all three fields (what it did not observe is carried from its view).
    """

    heartbeat_at: float
    load: float
    checked_at: float | None

    def encode(self) -> bytes:
        return SoftRecord.text(self.heartbeat_at, self.load, self.checked_at)

    @staticmethod
    def text(heartbeat_at: float, load: float, checked_at: float | None) -> bytes:
        """`SoftRecord(heartbeat_at, load, checked_at).encode()`, without the record."""
        heartbeat = wall(heartbeat_at)
        checked = None if checked_at is None else wall(checked_at)
        texts = (_number_text(checked), _number_text(heartbeat), _number_text(load))
        if None in texts:  # not a finite float: let json say it
            return _dumps({"heartbeat_at": heartbeat, "load": load, "checked_at": checked})
        # Every heartbeat writes one: `_dumps`'s bytes, without building an encoder.
        return b'{"checked_at":%s,"heartbeat_at":%s,"load":%s}' % texts

    @classmethod
    def decode(cls, raw: bytes) -> SoftRecord | None:
        """What `encode` writes is read without the JSON parser (every node reads every
        heartbeat's); anything else (other field orders, more fields) goes through it."""
        match = _SOFT_TEXT.fullmatch(raw)
        if match is None:
            document = _loads(raw)
            return None if document is None else cls._from_document(document)
        checked, heartbeat, load = match.groups()
        return cls(float(heartbeat), float(load), None if checked == b"null" else float(checked))

    @classmethod
    def _from_document(cls, document: dict[str, Any]) -> SoftRecord | None:
        heartbeat_at, load = _number(document, "heartbeat_at"), _number(document, "load")
        checked_at = _number(document, "checked_at")
        if heartbeat_at is None or load is None:
            return None
        if checked_at is None and document.get("checked_at") is not None:
            return None
        return cls(heartbeat_at, load, checked_at)


@dataclass(frozen=True, slots=True)
class NodeRecord(_Record):
    """`nodes/<node-id>`: how to reach a live node, and what it runs."""

    url: str
    frontend: str
    started: float

    def encode(self) -> bytes:
        return _dumps({"url": self.url, "frontend": self.frontend, "started": wall(self.started)})

    @classmethod
    def _from_document(cls, document: dict[str, Any]) -> NodeRecord | None:
        url, frontend = document.get("url", ""), document.get("frontend", "")
        started = _number(document, "started")
        if not isinstance(url, str) or not isinstance(frontend, str) or started is None:
            return None
        return cls(url, frontend, started)


@dataclass(frozen=True, slots=True)
class PreservationRecord(_Record):
    """`self-preservation`: expiry is paused cluster-wide, why, since when (wall clock),
    and which node (the guardian) decided it (and expires nothing while it holds)."""

    reason: str
    since: float
    by_node: str

    def encode(self) -> bytes:
        return _dumps({"reason": self.reason, "since": wall(self.since), "by_node": self.by_node})

    @classmethod
    def _from_document(cls, document: dict[str, Any]) -> PreservationRecord | None:
        reason, by_node = document.get("reason"), document.get("by_node", "")
        since = _number(document, "since")
        if not isinstance(reason, str) or not isinstance(by_node, str) or since is None:
            return None
        return cls(reason, since, by_node)


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """What a key under the prefix names: `kind` is instances, health, maintenance,
    soft, services, nodes or self-preservation."""

    kind: str
    name: str
    instance_id: str = ""


PER_INSTANCE = ("instances", "health", "maintenance", "soft")
PRESERVATION = "self-preservation"
SERVICES = "services"
#: A mark's value: only its mod revision counts (readers ignore the bytes).
MARK = b"{}"


#: How many parsed keys a `KeyLayout` remembers (each some 350 bytes, its key included).
PARSED_KEYS = 4096
_UNKNOWN = ParsedKey("", "")


class KeyLayout:
    """Keys under one prefix. Service names and ids cannot hold `/` (the API's
    name pattern), so the key splits back unambiguously."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not prefix.endswith("/"):
            prefix += "/"
        self.prefix = prefix.encode()
        self._parsed: dict[bytes, ParsedKey | None] = {}

    def instance(self, service_name: str, instance_id: str) -> bytes:
        return self.prefix + f"instances/{service_name}/{instance_id}".encode()

    def health(self, service_name: str, instance_id: str) -> bytes:
        return self.prefix + f"health/{service_name}/{instance_id}".encode()

    def maintenance(self, service_name: str, instance_id: str) -> bytes:
        return self.prefix + f"maintenance/{service_name}/{instance_id}".encode()

    def soft(self, service_name: str, instance_id: str) -> bytes:
        return self.prefix + f"soft/{service_name}/{instance_id}".encode()

    def instance_keys(self, service_name: str, instance_id: str) -> tuple[bytes, ...]:
        """Every key of one instance (what its removal deletes)."""
        return tuple(
            self.prefix + f"{kind}/{service_name}/{instance_id}".encode() for kind in PER_INSTANCE
        )

    def service(self, service_name: str) -> bytes:
        """The service's mark (see the module docstring)."""
        return self.prefix + f"{SERVICES}/{service_name}".encode()

    def node(self, node_id: str) -> bytes:
        return self.prefix + f"nodes/{node_id}".encode()

    def preservation(self) -> bytes:
        return self.prefix + PRESERVATION.encode()

    def parse(self, key: bytes) -> ParsedKey | None:
        """None for a key this layout does not know (ignored, for forward compatibility).

        The keys parsed last are remembered (up to `PARSED_KEYS`, then forgotten at once):
        a watch brings the same soft keys again at every heartbeat."""
        known = self._parsed.get(key, _UNKNOWN)
        if known is not _UNKNOWN:
            return known
        if len(self._parsed) >= PARSED_KEYS:
            self._parsed.clear()
        parsed = self._parsed[key] = self._parse(key)
        return parsed

    def _parse(self, key: bytes) -> ParsedKey | None:
        if not key.startswith(self.prefix):
            return None
        try:
            parts = key[len(self.prefix) :].decode().split("/")
        except UnicodeDecodeError:
            return None
        if len(parts) == 3 and parts[0] in PER_INSTANCE and parts[1] and parts[2]:
            return ParsedKey(parts[0], parts[1], parts[2])
        if len(parts) == 2 and parts[0] in ("nodes", SERVICES) and parts[1]:
            return ParsedKey(parts[0], parts[1])
        if parts == [PRESERVATION]:
            return ParsedKey(PRESERVATION, "")
        return None
