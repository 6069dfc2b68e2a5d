"""A throwaway CA and a loopback server certificate (the ``openssl`` CLI) for TLS tests."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import StackError


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate it signed (PEM files)."""

    ca: Path  # CA certificate: what clients trust
    cert: Path  # server certificate (SAN 127.0.0.1, localhost)
    key: Path  # server private key, PKCS#8, unencrypted
    bundle: Path  # key + certificate in one file (Kafka's PEM keystore)


def self_signed_tls(directory: Path, *, days: int = 3) -> TlsFiles:
    """Create a test CA and a loopback server certificate with the ``openssl`` CLI (idempotent)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key", directory / "server-bundle.pem")
    if files.bundle.exists():
        return files
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StackError("no `openssl` on PATH: apt-get install openssl")
    ext = directory / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    ca_key = directory / "ca.key"
    steps = [
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(files.ca),
         "-days", str(days), "-subj", "/CN=stream_app test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(files.key),
         "-out", str(directory / "server.csr"), "-subj", "/CN=localhost"],
        [openssl, "x509", "-req", "-in", str(directory / "server.csr"), "-CA", str(files.ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(files.cert), "-days", str(days), "-extfile", str(ext)],
    ]  # fmt: skip
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise StackError(f"`{' '.join(cmd[:3])} ...` failed: {res.stderr.strip()[-500:]}")
    files.key.chmod(0o600)
    files.bundle.write_text(files.key.read_text() + files.cert.read_text())
    files.bundle.chmod(0o600)
    return files
