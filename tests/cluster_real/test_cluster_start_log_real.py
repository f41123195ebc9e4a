"""A node that starts and joins cleanly logs no warning about the store.

Between its first listing and its watch's creation, the node's link says
`unavailable` for a moment: the view is listed, the watch not yet open. That is no
outage, and `/health` already says `ok`; a `WARNING store_state=unavailable` at every
start taught operators to ignore the line that means an outage later.
"""

from __future__ import annotations

import pytest

from tests.cluster_real.conftest import StartNode, node_env
from tests.etcd.etcd_process import EtcdCluster


@pytest.mark.parametrize("frontend", ["quart", "trio"])
def test_a_node_that_joins_cleanly_logs_no_store_warning(
    etcd: EtcdCluster, start_node: StartNode, frontend: str
) -> None:
    node = start_node(frontend, node_env(etcd.url))  # returns once the store state is ok
    log = node.stderr()
    states = [line for line in log.splitlines() if "event=store_state" in line]
    assert states and "state=ok" in states[-1], log[-3000:]
    assert "state=unavailable" not in "\n".join(states), states
    warnings = [line for line in log.splitlines() if "WARNING" in line and "store" in line]
    assert not warnings, warnings
