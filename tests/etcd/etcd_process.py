"""Real etcd processes for tests: one member or a cluster of three, on 127.0.0.1, on free
ports, with temporary data directories that are always removed. With `tls`, clients
must speak https and show a certificate signed by the test CA (`tls_files`).

etcd cannot be handed a pre-bound socket, so ports are found by binding port 0 and
releasing it just before etcd takes it (a short race, retried once by starting again).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .tls_files import TlsFiles

ETCD_BINARY = shutil.which("etcd") or "/usr/bin/etcd"
START_TIMEOUT = 30.0


def etcd_missing_reason() -> str | None:
    """Why real-etcd tests must be skipped, or None when they can run."""
    if not os.access(ETCD_BINARY, os.X_OK):
        return f"etcd binary not found ({ETCD_BINARY}); install Debian's etcd-server"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class EtcdMember:
    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self) -> None:
        """Stop the member (SIGTERM, then SIGKILL if it lingers) and reap it."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@dataclass
class EtcdCluster:
    members: list[EtcdMember]
    root: Path
    extra_args: Sequence[str] = field(default_factory=tuple)
    tls: TlsFiles | None = None

    @property
    def client_urls(self) -> list[str]:
        return [member.client_url for member in self.members]

    @property
    def url(self) -> str:
        return self.members[0].client_url

    def stop(self) -> None:
        for member in self.members:
            member.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def start_again(self) -> None:
        """Start every member again on its own data dir and ports (after a kill or a stop):
        an etcd that crashed and came back with its data."""
        for member in self.members:
            member.stop()
        _launch(self)

    def restart_empty(self) -> None:
        """Stop every member, delete its data dir and start it again on the same ports:
        an etcd that lost its data (same name, peer URL and token: same cluster id)."""
        for member in self.members:
            member.stop()
            shutil.rmtree(member.data_dir, ignore_errors=True)
        _launch(self)


def _launch(cluster: EtcdCluster) -> None:
    """Start every member of `cluster` and wait until each has a leader."""
    initial = ",".join(f"{member.name}={member.peer_url}" for member in cluster.members)
    for member in cluster.members:
        with member.log_path.open("ab") as log:
            member.process = subprocess.Popen(
                _command(member, initial, cluster.extra_args),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
    _wait_healthy(cluster)


def _command(member: EtcdMember, initial_cluster: str, extra_args: Sequence[str]) -> list[str]:
    return [
        ETCD_BINARY,
        "--name", member.name,
        "--data-dir", str(member.data_dir),
        "--listen-client-urls", member.client_url,
        "--advertise-client-urls", member.client_url,
        "--listen-peer-urls", member.peer_url,
        "--initial-advertise-peer-urls", member.peer_url,
        "--initial-cluster", initial_cluster,
        "--initial-cluster-state", "new",
        "--initial-cluster-token", f"sd-test-{os.getpid()}-{member.data_dir.parent.name}",
        *extra_args,
    ]  # fmt: skip


def _tls_args(tls: TlsFiles | None) -> list[str]:
    if tls is None:
        return []
    return [
        "--cert-file", str(tls.server_cert),
        "--key-file", str(tls.server_key),
        "--trusted-ca-file", str(tls.ca),
        "--client-cert-auth",
    ]  # fmt: skip


def _wait_healthy(cluster: EtcdCluster) -> None:
    """Every member answers /health with a leader (the gateway says "true" only then)."""
    deadline = time.monotonic() + START_TIMEOUT
    verify = cluster.tls.client_context() if cluster.tls is not None else True
    with httpx.Client(timeout=2.0, verify=verify, trust_env=False) as client:
        for member in cluster.members:
            while True:
                assert member.process is not None
                if member.process.poll() is not None:
                    raise RuntimeError(f"etcd {member.name} exited:\n{member.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    answer = client.get(f"{member.client_url}/health")
                    if answer.status_code == 200 and answer.json().get("health") == "true":
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd {member.name} not healthy:\n{member.log_tail()}")
                time.sleep(0.05)  # polling a real process coming up; no fake clock applies


def start_cluster(
    size: int = 1, *, extra_args: Sequence[str] = (), tls: TlsFiles | None = None
) -> EtcdCluster:
    """Start `size` members (1 or 3, say) forming one cluster, and wait for a leader.
    The caller must `stop()` it (use `running_cluster` for a context manager)."""
    root = Path(tempfile.mkdtemp(prefix="sd-etcd-"))
    ports = _free_ports(2 * size)
    scheme = "http" if tls is None else "https"
    members = [
        EtcdMember(
            name=f"m{index}",
            client_url=f"{scheme}://127.0.0.1:{ports[2 * index]}",
            peer_url=f"http://127.0.0.1:{ports[2 * index + 1]}",
            data_dir=root / f"m{index}.etcd",
            log_path=root / f"m{index}.log",
        )
        for index in range(size)
    ]
    extra_args = (*extra_args, *_tls_args(tls))
    cluster = EtcdCluster(members, root, extra_args, tls)
    try:
        _launch(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def running_cluster(
    size: int = 1, *, extra_args: Sequence[str] = (), tls: TlsFiles | None = None
) -> Iterator[EtcdCluster]:
    cluster = start_cluster(size, extra_args=extra_args, tls=tls)
    try:
        yield cluster
    finally:
        cluster.stop()
