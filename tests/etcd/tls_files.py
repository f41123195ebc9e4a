"""Throwaway TLS files for a real etcd, made with the `openssl` command line.

A test CA, a server certificate for 127.0.0.1 (an IP SAN: etcd's clients check the
address they dial) and a client certificate signed by it, plus a second CA that signed
nothing etcd trusts (a client configured with it must fail to verify the server). All
are written under a directory the caller owns and removes.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl")


def openssl_missing_reason() -> str | None:
    """Why TLS tests must be skipped, or None when they can run."""
    if OPENSSL is None:
        return "openssl not found on PATH; install Debian's openssl"
    return None


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed neither side

    def client_context(self) -> ssl.SSLContext:
        """What a test's own HTTP client needs to talk to the etcd these files secure."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def _openssl(*args: str) -> None:
    assert OPENSSL is not None
    done = subprocess.run([OPENSSL, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed:\n{done.stderr}")


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _signed(
    directory: Path, name: str, ca: tuple[Path, Path], extensions: str
) -> tuple[Path, Path]:
    cert, key, request = (directory / f"{name}{end}" for end in (".pem", "-key.pem", ".csr"))
    config = directory / f"{name}.ext"
    config.write_text(extensions)
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(request),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(config),
    )  # fmt: skip
    return cert, key


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1, a client certificate, another CA."""
    ca = _ca(directory, "test-ca")
    server = _signed(
        directory,
        "etcd-server",
        ca,
        # clientAuth too: etcd 3.4's JSON gateway dials its own gRPC port with the
        # server certificate, so with --client-cert-auth a serverAuth-only one makes
        # every gateway call answer 503 "connection closed".
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n",
    )
    client = _signed(
        directory,
        "registry-node",
        ca,
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
    )
    other_ca, _ = _ca(directory, "other-ca")
    return TlsFiles(ca[0], server[0], server[1], client[0], client[1], other_ca)
