"""Cluster settings: unset means one process (unchanged); every bad value names its variable."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from settings_cases import Refusal, each_refused

from frontends.outbound.cluster_settings import (
    CLUSTER_VARIABLES,
    DEFAULT_NODE_TTL_SECONDS,
    DEFAULT_WATCH_TIMEOUT_SECONDS,
)
from frontends.runtime.settings import load_settings
from sd_core import ConfigError
from sd_core.cluster import DEFAULT_PREFIX
from tests.project_python import run_python

BASE = {"SERVICE_DISCOVERY_SECRET": "settings-secret"}
ENDPOINTS = "SERVICE_DISCOVERY_ETCD_ENDPOINTS"


def test_unset_endpoints_mean_one_process() -> None:
    assert load_settings(BASE).cluster is None
    assert load_settings({**BASE, ENDPOINTS: "  "}).cluster is None


def test_every_cluster_variable_is_read(tmp_path: Path) -> None:
    files = {}
    for name in ("ca", "cert", "key"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text("x")
    settings = load_settings(
        {
            **BASE,
            ENDPOINTS: "http://127.0.0.1:2379, https://etcd-2:2379/ ,",
            "SERVICE_DISCOVERY_ETCD_PREFIX": "/sd/test/",
            "SERVICE_DISCOVERY_ETCD_USERNAME": "root",
            "SERVICE_DISCOVERY_ETCD_PASSWORD": "pw",
            "SERVICE_DISCOVERY_ETCD_CA_FILE": str(files["ca"]),
            "SERVICE_DISCOVERY_ETCD_CERT_FILE": str(files["cert"]),
            "SERVICE_DISCOVERY_ETCD_KEY_FILE": str(files["key"]),
            "SERVICE_DISCOVERY_ETCD_WATCH_TIMEOUT_SECONDS": "30",
            "SERVICE_DISCOVERY_NODE_ID": "node-a",
            "SERVICE_DISCOVERY_NODE_TTL_SECONDS": "6",
            "SERVICE_DISCOVERY_RESUME_WAIT_SECONDS": "2.5",
            "SERVICE_DISCOVERY_STALE_AFTER_SECONDS": "4",
        },
        host="10.1.2.3",
        port=3005,
    )
    cluster = settings.cluster
    assert cluster is not None
    assert cluster.endpoints == ("http://127.0.0.1:2379", "https://etcd-2:2379")
    assert cluster.prefix == "/sd/test/"
    assert (cluster.username, cluster.password) == ("root", "pw")
    assert (cluster.ca_file, cluster.cert_file, cluster.key_file) == (
        files["ca"],
        files["cert"],
        files["key"],
    )
    assert cluster.watch_timeout == 30.0
    assert cluster.node_id == "node-a"
    assert cluster.node_ttl == 6
    assert cluster.url == "http://10.1.2.3:3005"
    assert (cluster.resume_wait, cluster.stale_after) == (2.5, 4.0)
    assert len(CLUSTER_VARIABLES) == 12


def test_defaults_node_id_is_host_and_port() -> None:
    cluster = load_settings(
        {**BASE, ENDPOINTS: "http://e:2379"}, host="10.0.0.7", port=4000
    ).cluster
    assert cluster is not None
    assert (cluster.node_id, cluster.prefix) == ("10.0.0.7:4000", DEFAULT_PREFIX)
    assert cluster.watch_timeout == DEFAULT_WATCH_TIMEOUT_SECONDS
    assert cluster.node_ttl == DEFAULT_NODE_TTL_SECONDS == 10
    assert cluster.username is None and cluster.ca_file is None
    assert (cluster.resume_wait, cluster.stale_after) == (5.0, 10.0)


def test_an_inherited_socket_names_the_node() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
        cluster = load_settings({**BASE, ENDPOINTS: "http://e:2379"}, fd=sock.fileno()).cluster
        assert sock.fileno() >= 0  # still ours: the settings read a duplicate
    assert cluster is not None
    assert cluster.node_id == f"127.0.0.1:{port}"


BAD: list[Refusal] = [
    *each_refused(
        {
            ENDPOINTS: [
                "etcd:2379",
                "ftp://etcd:2379",
                "http://etcd:2379/v3",
                "http://etcd:99999",
                ",,",
            ],
            "SERVICE_DISCOVERY_ETCD_PREFIX": ["sd"],
            "SERVICE_DISCOVERY_ETCD_CA_FILE": ["/nonexistent/ca.pem"],
            "SERVICE_DISCOVERY_ETCD_WATCH_TIMEOUT_SECONDS": ["1", "soon"],
            "SERVICE_DISCOVERY_NODE_ID": ["a/b"],
            "SERVICE_DISCOVERY_NODE_TTL_SECONDS": ["2", "4.5", "inf"],
            "SERVICE_DISCOVERY_STATE_FILE": [__file__],
            "SERVICE_DISCOVERY_RESUME_WAIT_SECONDS": ["0"],
            # Not above the node keepalive (a third of the node TTL): a quiet node would flicker.
            "SERVICE_DISCOVERY_STALE_AFTER_SECONDS": ["3"],
        }
    ),
    # One of a pair alone: the error names the one that is missing.
    ({"SERVICE_DISCOVERY_ETCD_USERNAME": "root"}, "SERVICE_DISCOVERY_ETCD_PASSWORD"),
    ({"SERVICE_DISCOVERY_ETCD_PASSWORD": "pw"}, "SERVICE_DISCOVERY_ETCD_USERNAME"),
    ({"SERVICE_DISCOVERY_ETCD_CERT_FILE": __file__}, "SERVICE_DISCOVERY_ETCD_KEY_FILE"),
    ({"SERVICE_DISCOVERY_ETCD_KEY_FILE": __file__}, "SERVICE_DISCOVERY_ETCD_CERT_FILE"),
]


@pytest.mark.parametrize(("env", "variable"), BAD)
def test_a_bad_value_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, ENDPOINTS: "http://127.0.0.1:2379", **env})
    assert caught.value.name == variable


def test_a_bad_value_stops_startup_with_one_line_and_exit_code_2() -> None:
    serve = ["-m", "frontends", "serve", "--frontend", "trio", "--port", "1"]
    done = run_python(*serve, env={**BASE, ENDPOINTS: "etcd:2379", "PATH": ""})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"service-discovery: invalid {ENDPOINTS}: must be http:// or https:// URLs, got 'etcd:2379'"
    ]
