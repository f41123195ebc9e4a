"""Cluster mode: several registry nodes sharing one etcd (see docs/cluster.md).

`ClusterNode` is what a driver owns, one per process: reads from a local mirror of the
store fed by one watch, writes as store calls, probes for its share of the fleet. `layout` holds the
key layout and record codecs, `mirror` the watch-to-registry translation, `link` the
store calls and the watch, `group_commit` the batched soft-state puts, `guardian`
self-preservation, `ownership` who probes what.
"""

from .effects import (
    CaughtUp,
    CloseWatch,
    ClusterConfig,
    ClusterEffect,
    OpenWatch,
    StoreCall,
    StoreWentBack,
    WriteDone,
)
from .group_commit import GroupCommit, SoftWaiter
from .guardian import Guardian
from .layout import (
    DEFAULT_PREFIX,
    HealthRecord,
    InstanceRecord,
    KeyLayout,
    MaintenanceRecord,
    NodeRecord,
    PreservationRecord,
    SoftRecord,
)
from .link import CONNECTING, OK, UNAVAILABLE
from .mirror import Entry, StoreMirror
from .node import ClusterNode, NodeResult, catch_up_scope
from .ownership import owner

__all__ = [
    "CONNECTING",
    "DEFAULT_PREFIX",
    "OK",
    "UNAVAILABLE",
    "CaughtUp",
    "CloseWatch",
    "ClusterConfig",
    "ClusterEffect",
    "ClusterNode",
    "Entry",
    "GroupCommit",
    "Guardian",
    "HealthRecord",
    "InstanceRecord",
    "KeyLayout",
    "MaintenanceRecord",
    "NodeRecord",
    "NodeResult",
    "OpenWatch",
    "PreservationRecord",
    "SoftRecord",
    "SoftWaiter",
    "StoreCall",
    "StoreMirror",
    "StoreWentBack",
    "WriteDone",
    "catch_up_scope",
    "owner",
]
