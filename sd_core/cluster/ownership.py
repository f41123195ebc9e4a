"""Which live node probes an instance: rendezvous (highest random weight) hashing.

Every node computes the same owner from the same set of node keys, with no
coordination; when a node leaves, only its own instances move (each to the node with
the next-highest weight), and when one joins it takes about 1/N of the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _weight(node_id: str, key: str) -> int:
    digest = hashlib.blake2b(f"{node_id}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(nodes: Iterable[str], service_name: str, instance_id: str) -> str | None:
    """The node that probes `service_name/instance_id` (None when no node is live)."""
    key = f"{service_name}/{instance_id}"
    best: tuple[int, str] | None = None
    for node_id in nodes:
        candidate = (_weight(node_id, key), node_id)
        if best is None or candidate > best:
            best = candidate
    return None if best is None else best[1]
