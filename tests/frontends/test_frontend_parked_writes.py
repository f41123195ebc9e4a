"""A cluster write parked on the store (`ClusterMember.written`), on each loop: answered
when its `WriteDone` comes, and a parked request that went away is no one's business."""

from __future__ import annotations

from collections.abc import Callable

import anyio
from frontend_kit import Group, Kit, make_runtime

from frontends.outbound.cluster_member import ClusterMember
from sd_core import HttpResponse
from sd_core.cluster import WriteDone
from sd_core.http_api import PendingWrite

CLUSTER_ENV = {"SERVICE_DISCOVERY_ETCD_ENDPOINTS": "http://127.0.0.1:9"}
DONE = HttpResponse(200, b"{}", (), "/v1/discovery/heartbeat")


def test_a_parked_write_gets_its_answer_and_one_gone_is_skipped(
    make_kit: Callable[[], Kit],
) -> None:
    async def scenario(kit: Kit, group: Group) -> None:
        member = make_runtime(kit, **CLUSTER_ENV).node
        assert isinstance(member, ClusterMember)
        answers: list[HttpResponse] = []

        async def park(token: int) -> None:
            answers.append(await member.written(PendingWrite(token)))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(park, 1)
            tasks.start_soon(park, 2)
            await kit.sleep(0.001)
            assert member.route(WriteDone(1, DONE))
            await kit.sleep(0.001)
            assert answers == [DONE]
            tasks.cancel_scope.cancel()  # token 2's client went away...
            assert member.route(WriteDone(2, DONE))  # ...before its task unwound
        assert answers == [DONE]
        assert member.route(WriteDone(2, DONE))  # long gone: nothing to wake

    make_kit().run(scenario)
