"""The store driver's HTTP client against a real etcd: password auth (and a token that
went bad), failover past a dead endpoint, and what it costs per request."""

from __future__ import annotations

import time

import pytest

from frontends.outbound.cluster_settings import ClusterSettings
from frontends.outbound.etcd_client import EtcdClient, StoreUnreachable
from sd_etcd import parse_range, range_request
from tests.etcd.etcd_auth import enable_auth
from tests.etcd.etcd_process import EtcdCluster, etcd_missing_reason

from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.skipif(
    etcd_missing_reason() is not None, reason=str(etcd_missing_reason())
)


async def test_password_auth_and_a_token_gone_bad(etcd: EtcdCluster) -> None:
    enable_auth(etcd.url, "pw")
    client = EtcdClient(ClusterSettings((etcd.url,), "n", "", username="root", password="pw"))
    try:
        status, body = await client.call(range_request(b"/x"))
        assert status == 200, body
        parse_range(status, body)
        client._token = "not-a-token"  # as after etcd restarted and forgot its tokens
        status, body = await client.call(range_request(b"/x"))
        assert status == 200, body
    finally:
        await client.aclose()


async def test_failover_past_a_dead_endpoint(etcd: EtcdCluster) -> None:
    host, port = etcd.url.removeprefix("http://").split(":")
    with TcpProxy(host, int(port)) as dead:
        dead.cut()
        client = EtcdClient(ClusterSettings((dead.url, etcd.url), "n", ""))
        try:
            status, _ = await client.call(range_request(b"/x"))
            assert status == 200
            assert client.endpoint == etcd.url
        finally:
            await client.aclose()
        alone = EtcdClient(ClusterSettings((dead.url,), "n", ""))
        try:
            with pytest.raises(StoreUnreachable):
                await alone.call(range_request(b"/x"))
        finally:
            await alone.aclose()


async def test_cost_per_request(etcd: EtcdCluster) -> None:
    """Not an assertion: prints the CPU cost of one range through the client (-s)."""
    client = EtcdClient(ClusterSettings((etcd.url,), "n", ""))
    try:
        request = range_request(b"/x")
        await client.call(request)
        calls = 300
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            await client.call(request)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"gateway_http: {cpu / calls * 1e6:.0f} us CPU, {wall / calls * 1e6:.0f} us wall")
    finally:
        await client.aclose()
