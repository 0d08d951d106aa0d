"""The enclave's keys: node identity, consortium secret, and what derives from them.

Key hierarchy (docs/SECURITY.md, "Keys"):

- local sealing key: protects this node's copies of the two secrets below at rest. The
  software enclave reads it from ``<data-dir>/sealing.key``, a file the host keeps: it
  protects nothing against that host (a hardware enclave derives it from the platform).
- node identity key (secp256k1): signs block seals and attestation reports.
- consortium secret (32 bytes): made once, by the genesis node's enclave at ``coco-gateway
  init`` (a dev node: by its own enclave on its first start); every other node receives it
  in the join handshake. Derived from it by HKDF-SHA256: the transaction key of each epoch
  (X25519, gateway.protocol.envelope), the storage sealing key, the session-token key, the
  block body key (gateway.enclave.blocks), the random precompile's block key and the
  forwarded-transaction key.

Both are stored only sealed (AES-256-GCM under the local sealing key, the name as associated
data). A consortium node keeps them beside its ledger, not in it, so that a wiped ledger
does not lose them: ``node-key.sealed`` (the sealed node key) and
``consortium-secret.sealed`` (JSON: the chain id and the sealed secret, bound to that chain
id). A dev node keeps both in its ledger's meta table, as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.protocol.envelope import derive_epoch_key, epoch_public_key

log = logging.getLogger("gateway.enclave.keys")

SEALING_KEY_FILE = "sealing.key"
NODE_KEY_FILE = "node-key.sealed"  # a consortium node's sealed identity key
SECRET_FILE = "consortium-secret.sealed"  # its sealed consortium secret
SECRET_FILE_VERSION = 1
GENERATIONS_FILE = "ledger-secrets.sealed"  # the rotated generations (1, 2, ...), sealed
GENERATIONS_FILE_VERSION = 1
MAX_GENERATIONS = 4096  # ledger secret generations an enclave keeps (every one it met)
_SEALED_PREFIX = b"coco-sealed-v1:"


class SealedKeyError(Exception):
    """The sealed keys cannot be opened (wrong sealing key file, or corrupted)."""


def _hkdf(secret: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


class LocalSealer:
    """AES-256-GCM under the local sealing key; the blob's name is the associated data."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> LocalSealer:
        path = data_dir / SEALING_KEY_FILE
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
                f.flush()
                os.fsync(f.fileno())
            log.info("created the local sealing key %s", path)
        key = path.read_bytes()
        if len(key) != 32:
            raise SealedKeyError(f"{path} is not a 32-byte sealing key")
        return cls(key)

    def seal(self, name: str, plaintext: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return _SEALED_PREFIX + nonce + self._aead.encrypt(nonce, plaintext, name.encode())

    def open(self, name: str, blob: bytes) -> bytes:
        if not blob.startswith(_SEALED_PREFIX):
            raise SealedKeyError(f"{name} is not sealed")
        body = blob[len(_SEALED_PREFIX) :]
        try:
            return self._aead.decrypt(body[:12], body[12:], name.encode())
        except InvalidTag:
            raise SealedKeyError(
                f"cannot open {name}: the sealing key file does not match this data directory"
            ) from None


# ----------------------------------------------------------------------------- key files


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` (mode 0600) whole or not at all: a temporary file, fsync, rename."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_node_key(data_dir: Path, sealer: LocalSealer) -> bytes | None:
    """The node identity key sealed in ``data_dir/node-key.sealed``; None if there is none."""
    path = data_dir / NODE_KEY_FILE
    if not path.exists():
        return None
    key = sealer.open("node_key", path.read_bytes())
    if len(key) != 32:
        raise SealedKeyError(f"{path} does not hold a 32-byte key")
    return key


def write_node_key(data_dir: Path, sealer: LocalSealer, key: bytes) -> None:
    write_private(data_dir / NODE_KEY_FILE, sealer.seal("node_key", key))


def _secret_name(chain_id: int) -> str:
    return f"consortium_secret:chain-{chain_id}"


def read_consortium_secret(data_dir: Path, sealer: LocalSealer, chain_id: int) -> bytes | None:
    """The consortium secret sealed in ``data_dir/consortium-secret.sealed`` for chain
    ``chain_id``; None if there is none; SealedKeyError if it is for another chain or
    cannot be opened."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        version, stored_chain = doc["version"], doc["chainId"]
        blob = bytes.fromhex(str(doc["sealed"]).removeprefix("0x"))
    except (ValueError, KeyError, TypeError):
        raise SealedKeyError(f"{path} is not a sealed consortium secret file") from None
    if version != SECRET_FILE_VERSION:
        raise SealedKeyError(f"{path}: unsupported version {version!r}")
    if stored_chain != chain_id:
        raise SealedKeyError(
            f"{path} holds the consortium secret of chain {stored_chain}, not of chain "
            f"{chain_id}: this data directory belongs to another consortium"
        )
    secret = sealer.open(_secret_name(chain_id), blob)
    if len(secret) != 32:
        raise SealedKeyError(f"{path} does not hold a 32-byte secret")
    return secret


def write_consortium_secret(
    data_dir: Path, sealer: LocalSealer, chain_id: int, secret: bytes
) -> None:
    doc = {
        "version": SECRET_FILE_VERSION,
        "chainId": chain_id,
        "sealed": "0x" + sealer.seal(_secret_name(chain_id), secret).hex(),
    }
    write_private(data_dir / SECRET_FILE, (json.dumps(doc, indent=2) + "\n").encode())


def _generation_name(chain_id: int, generation: int) -> str:
    return f"ledger_secret:chain-{chain_id}:generation-{generation}"


def read_generations(data_dir: Path, sealer: LocalSealer, chain_id: int) -> dict[int, bytes]:
    """The rotated ledger secret generations (1, 2, ...) sealed in
    ``data_dir/ledger-secrets.sealed``; {} when there is none. Generation 0 is the
    consortium secret (``consortium-secret.sealed``)."""
    path = data_dir / GENERATIONS_FILE
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        version, stored_chain, rows = doc["version"], doc["chainId"], doc["generations"]
        sealed = {int(g): bytes.fromhex(str(b).removeprefix("0x")) for g, b in rows.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SealedKeyError(f"{path} is not a sealed ledger secrets file") from None
    if version != GENERATIONS_FILE_VERSION or stored_chain != chain_id:
        raise SealedKeyError(f"{path}: version {version!r} of chain {stored_chain!r}")
    out: dict[int, bytes] = {}
    for generation, blob in sorted(sealed.items()):
        if not 1 <= generation <= MAX_GENERATIONS:
            raise SealedKeyError(f"{path}: generation {generation} out of range")
        secret = sealer.open(_generation_name(chain_id, generation), blob)
        if len(secret) != 32:
            raise SealedKeyError(f"{path}: generation {generation} is not a 32-byte secret")
        out[generation] = secret
    return out


def write_generations(
    data_dir: Path, sealer: LocalSealer, chain_id: int, generations: dict[int, bytes]
) -> None:
    """Seal the rotated generations (every one but 0) in ``ledger-secrets.sealed``, whole
    or not at all (``write_private``)."""
    doc = {
        "version": GENERATIONS_FILE_VERSION,
        "chainId": chain_id,
        "generations": {
            str(g): "0x" + sealer.seal(_generation_name(chain_id, g), s).hex()
            for g, s in sorted(generations.items())
            if g >= 1
        },
    }
    write_private(data_dir / GENERATIONS_FILE, (json.dumps(doc, indent=2) + "\n").encode())


class MissingGeneration(Exception):
    """This enclave does not hold the ledger secret of a generation."""

    def __init__(self, generation: int) -> None:
        super().__init__(f"this enclave does not hold ledger secret generation {generation}")
        self.generation = generation


@dataclass(frozen=True)
class KeyRing:
    """The enclave's keys. ``secret`` is the consortium secret, ledger secret generation 0;
    ``rotated`` the later generations (index 0 is generation 1), each made by a
    ``rotate_ledger_secret`` (gateway.enclave.rotation). The transaction epoch keys, the
    storage, session-token and forwarded-transaction keys stay on generation 0; block
    bodies, snapshot chunks and the random precompile use the generation of the block
    (docs/SECURITY.md, "Ledger secret rotation")."""

    node_key: bytes
    secret: bytes
    epoch_period: int
    grace: int
    rotated: tuple[bytes, ...] = ()

    @property
    def generation(self) -> int:
        """The newest generation this enclave holds."""
        return len(self.rotated)

    def secret_of(self, generation: int) -> bytes:
        if generation == 0:
            return self.secret
        if not 1 <= generation <= len(self.rotated):
            raise MissingGeneration(generation)
        return self.rotated[generation - 1]

    def all_generations(self) -> list[bytes]:
        """Every generation's secret, generation 0 first."""
        return [self.secret, *self.rotated]

    def body_key_of(self, generation: int) -> bytes:
        """AES-256-GCM key of the bodies sealed under ``generation`` (v1 for 0, v2 after)."""
        if generation == 0:
            return self.block_body_key
        return _hkdf(self.secret_of(generation), b"coco-gateway/block-body/v2")

    def random_key_of(self, generation: int) -> bytes:
        """The random precompile's key for blocks sealed under ``generation``."""
        if generation == 0:
            return self.random_key
        return _hkdf(self.secret_of(generation), b"coco-gateway/random/v2")

    def snapshot_key_of(self, generation: int) -> bytes:
        """AES-256-GCM key of snapshot chunks sealed under ``generation``."""
        if generation == 0:
            return self.snapshot_key
        return _hkdf(self.secret_of(generation), b"coco-gateway/snapshot/v2")

    def tx_key(self, epoch: int) -> X25519PrivateKey:
        return derive_epoch_key(self.secret, epoch)

    def tx_public(self, epoch: int) -> bytes:
        return epoch_public_key(self.secret, epoch)

    @property
    def storage_key(self) -> bytes:
        return _hkdf(self.secret, b"coco-gateway/storage/v1")

    @property
    def token_key(self) -> bytes:
        return _hkdf(self.secret, b"coco-gateway/session-token/v1")

    @property
    def block_body_key(self) -> bytes:
        """AES-256-GCM key of sealed block bodies (gateway.enclave.blocks)."""
        return _hkdf(self.secret, b"coco-gateway/block-body/v1")

    @property
    def snapshot_key(self) -> bytes:
        """AES-256-GCM key of sealed snapshot chunks (gateway.enclave.snapshot)."""
        return _hkdf(self.secret, b"coco-gateway/snapshot/v1")

    @property
    def random_key(self) -> bytes:
        """The random precompile's block randomness key (gateway.execution.precompiles)."""
        return _hkdf(self.secret, b"coco-gateway/random/v1")

    @property
    def forwarded_tx_key(self) -> bytes:
        """AES-256-GCM key of transactions forwarded between nodes (ExportPooledTxs)."""
        return _hkdf(self.secret, b"coco-gateway/forwarded-tx/v1")


def measurement() -> tuple[bytes, str]:
    """sha256 over the code that runs inside the enclave: the enclave, execution, ledger and
    protocol rooms of this package, the seal and QBFT code, and the installed py-evm package.

    py-evm is found, not imported: ``coco-gateway attest measure`` runs on the host, which
    never loads it."""
    from importlib.util import find_spec

    import gateway

    here = Path(gateway.__file__).resolve().parent
    files = [
        *sorted((here / "enclave").glob("*.py")),
        *sorted((here / "execution").glob("*.py")),
        *sorted((here / "ledger").glob("*.py")),
        *sorted((here / "protocol").glob("*.py")),
        *sorted((here / "governance").glob("*.py")),  # governance runs inside
        here / "consensus" / "seal.py",
        *sorted((here / "consensus" / "qbft").glob("*.py")),  # commit seals, QBFT inside
        here / "errors.py",
        here / "clock.py",
    ]
    h = hashlib.sha256(b"coco-gateway/measurement/v1\n")
    for path in files:
        rel = ("gateway/" + path.relative_to(here).as_posix()).encode()
        content = path.read_bytes()
        h.update(len(rel).to_bytes(4, "big") + rel + len(content).to_bytes(8, "big") + content)
    eth_spec = find_spec("eth")
    if eth_spec is None or eth_spec.origin is None:
        raise RuntimeError("py-evm (the eth package) is not installed")
    eth_root = Path(eth_spec.origin).resolve().parent
    eth_files = sorted(eth_root.rglob("*.py"), key=lambda p: p.relative_to(eth_root).as_posix())
    for path in eth_files:
        rel = ("eth/" + path.relative_to(eth_root).as_posix()).encode()
        content = path.read_bytes()
        h.update(len(rel).to_bytes(4, "big") + rel + len(content).to_bytes(8, "big") + content)
    from importlib.metadata import version

    description = (
        f"gateway enclave, execution, ledger, protocol, qbft rooms ({len(files)} files) + "
        f"py-evm {version('py-evm')} ({len(eth_files)} files), Python "
        f"{sys.version_info.major}.{sys.version_info.minor}"
    )
    h.update(description.encode())
    return h.digest(), description
