"""TLS for node-to-node links: each node's certificate, and the contexts both sides use.

Every node (validator, member or observer) has a TLS key and a self-signed certificate
(ECDSA P-256) in its data directory, made by ``coco-gateway init`` or on first start. The
host process holds this key and TLS ends there; what makes a link trustworthy is not the
certificate (nobody checks it against a CA) but the channel binding: the SHA-256 of the
server's certificate, as each side saw it, is part of the handshake transcript each enclave
signs (docs/PROTOCOL.md, "Link signature, version 2"). A relay that terminates TLS shows the
client its own certificate, so the two sides' signatures disagree about the channel and
neither verifies. Links use TLS 1.3 only.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger("gateway.p2p")

CERT_FILE = "p2p-tls.crt"
KEY_FILE = "p2p-tls.key"
VALID_DAYS = 20 * 365


class TlsError(Exception):
    """The node's TLS files are unusable; the message says what to do."""


@dataclass(frozen=True)
class TlsIdentity:
    """A node's TLS certificate and key files, and the certificate's SHA-256 fingerprint."""

    cert_path: Path
    key_path: Path
    fingerprint: bytes  # sha256 of the DER certificate (tls-server-end-point, RFC 5929)

    def server_context(self) -> ssl.SSLContext:
        """The listener's context: presents this certificate, asks nothing of clients (they
        prove who they are by their enclave's signature over the bound transcript)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def fingerprint(der: bytes) -> bytes:
    return hashlib.sha256(der).digest()


def client_context() -> ssl.SSLContext:
    """The dialler's context: encrypts, and accepts any certificate, because the handshake
    transcript binds the certificate it saw to the peer's attested identity instead."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def peer_fingerprint(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes | None:
    """The SHA-256 of the certificate the other side of a TLS connection presented."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return None if der is None else fingerprint(der)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def make_identity(data_dir: Path, name: str) -> TlsIdentity:
    """A new key (file mode 0600) and self-signed certificate in ``data_dir``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"coco-gateway node {name}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = data_dir / KEY_FILE, data_dir / CERT_FILE
    _write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TlsIdentity(
        cert_path, key_path, fingerprint(cert.public_bytes(serialization.Encoding.DER))
    )


def load_identity(data_dir: Path) -> TlsIdentity:
    """The TLS identity in ``data_dir``; TlsError if it is incomplete or inconsistent."""
    key_path, cert_path = data_dir / KEY_FILE, data_dir / CERT_FILE
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise TlsError(
            f"cannot read the p2p TLS files {cert_path} and {key_path}: {exc}. Remove both to "
            "have the node make new ones (the TLS key is not the node identity)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise TlsError(f"{key_path} is not the key of {cert_path}: remove both to make new ones")
    mode = key_path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s is readable by others (mode %o): chmod 600 it", key_path, mode)
    return TlsIdentity(
        cert_path, key_path, fingerprint(cert.public_bytes(serialization.Encoding.DER))
    )


def ensure_identity(data_dir: Path, name: str) -> TlsIdentity:
    """Load the TLS identity in ``data_dir``, making it first if neither file exists."""
    key_path, cert_path = data_dir / KEY_FILE, data_dir / CERT_FILE
    if not key_path.exists() and not cert_path.exists():
        identity = make_identity(data_dir, name)
        log.info("made a p2p TLS certificate, sha256 %s", identity.fingerprint.hex())
        return identity
    return load_identity(data_dir)
