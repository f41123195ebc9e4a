"""Registry nodes of both frontends against a real etcd that speaks only TLS and wants
a client certificate (`--client-cert-auth`), with throwaway files made by `openssl`.

With the CA, certificate and key set, a node works as on plain HTTP: a registration
reads back, heartbeats go through, and a write on one node reaches the other through
its watch. Without the client certificate, or trusting another CA, a node keeps
running and says why it cannot join: `/health` shows the store "connecting" with the
TLS error, and the log has a `store_problem` warning.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conformance.client import api_for, index_of, instance_body, poll_until
from tests.etcd.etcd_process import EtcdCluster, etcd_missing_reason, running_cluster
from tests.etcd.tls_files import TlsFiles, make_tls_files, openssl_missing_reason

from .conftest import SECRET, StartNode, assert_refused_node_says_why, node_env, store_health

pytestmark = [
    pytest.mark.skipif(etcd_missing_reason() is not None, reason=str(etcd_missing_reason())),
    pytest.mark.skipif(openssl_missing_reason() is not None, reason=str(openssl_missing_reason())),
]

EVENTUALLY = 45.0


@pytest.fixture
def tls() -> Iterator[TlsFiles]:
    """The files, in a directory removed after the test (keys are not left behind)."""
    with tempfile.TemporaryDirectory(prefix="sd-tls-") as directory:
        yield make_tls_files(Path(directory))


@pytest.fixture
def tls_etcd(tls: TlsFiles) -> Iterator[EtcdCluster]:
    with running_cluster(1, tls=tls) as cluster:
        yield cluster


def tls_env(etcd: EtcdCluster, *, ca: Path, cert: Path | None, key: Path | None) -> dict[str, str]:
    env = node_env(etcd.url, SERVICE_DISCOVERY_ETCD_CA_FILE=str(ca))
    if cert is not None and key is not None:
        env["SERVICE_DISCOVERY_ETCD_CERT_FILE"] = str(cert)
        env["SERVICE_DISCOVERY_ETCD_KEY_FILE"] = str(key)
    return env


def test_nodes_of_both_frontends_work_over_tls_with_a_client_certificate(
    tls: TlsFiles, tls_etcd: EtcdCluster, start_node: StartNode
) -> None:
    assert tls_etcd.url.startswith("https://")
    plain = tls_etcd.url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):  # etcd really speaks TLS only
        httpx.post(f"{plain}/v3/kv/range", json={"key": "AA=="}, timeout=5)
    env = tls_env(tls_etcd, ca=tls.ca, cert=tls.client_cert, key=tls.client_key)
    quart, trio = start_node("quart", env), start_node("trio", env)
    with api_for(quart.url, SECRET) as q, api_for(trio.url, SECRET) as t:
        for writer, reader, instance in ((q, t, "from-quart"), (t, q, "from-trio")):
            writer.register_ok(instance_body("api", instance))
            assert writer.instance("api", instance) is not None  # read back, at once
            poll_until(
                lambda: reader.instance("api", instance) is not None or None,  # noqa: B023
                EVENTUALLY,
                f"{instance} reached the other node through its watch",
            )
            for _ in range(3):
                writer.heartbeat_ok("api", instance)
                reader.heartbeat_ok("api", instance)

        def same_on_both() -> bool | None:
            mine, theirs = q.service("api"), t.service("api")
            return (mine.content == theirs.content and index_of(mine) == index_of(theirs)) or None

        poll_until(same_on_both, EVENTUALLY, "the same answer on both nodes")
        assert store_health(quart.url)["error"] is None
        assert store_health(trio.url)["cluster_id"] == store_health(quart.url)["cluster_id"]


@pytest.mark.parametrize("frontend", ["quart", "trio"])
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no client certificate", "no client certificate is set"),
        ("another CA", "CERTIFICATE_VERIFY_FAILED"),
    ],
)
def test_a_node_refused_by_tls_keeps_running_and_says_why(
    tls: TlsFiles, tls_etcd: EtcdCluster, frontend: str, case: str, expected: str
) -> None:
    if case == "no client certificate":
        env = tls_env(tls_etcd, ca=tls.ca, cert=None, key=None)
    else:
        env = tls_env(tls_etcd, ca=tls.other_ca, cert=tls.client_cert, key=tls.client_key)
    assert_refused_node_says_why(frontend, env, expected)
