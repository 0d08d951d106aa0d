"""The ledger secret record: a rotated ledger secret, encrypted to each trusted node's enclave
(docs/GOVERNANCE.md, "Ledger secret rotation"; docs/PROTOCOL.md, "Ledger secret record v1").

When a block's governance section accepts a ``rotate_ledger_secret`` proposal, the state's
``ledger_generation`` goes from g to g+1 in that block (height h). The proposer's enclave
makes a fresh random 32-byte secret for g+1 and appends this record as the **last** record
of the same section, so the header's extraData (the section commitment) commits to it::

    {"generation": g+1, "height": h, "shares": [share, ...], "type": "ledger_secret",
     "version": 1}
    share = {"ephemeral": 0x04||X||Y (65 bytes), "key": the node's identity public key
             (65 bytes, uncompressed secp256k1), "node": its address (20 bytes),
             "sealed": AES-256-GCM ciphertext and tag of the secret (48 bytes)}

The encryption itself (ECDH on secp256k1, HKDF-SHA256, AES-256-GCM) is the enclave's
(gateway.enclave.rotation); this pure part checks what every node and every observer can
check in the clear (``check``):

* the record is the section's last, the section's only one, and the block advanced the
  generation by exactly one (``ledger_generation`` after the block is its ``generation``);
* its ``height`` is the block's;
* shares are sorted by node, distinct, each for a node the state after the block trusts,
  each ``key`` hashes to its ``node`` (an Ethereum address), and every trusted validator
  of the next block and of the scheduled set has a share (so consensus goes on under g+1).

Blocks from h+1 on are sealed under generation g+1 (a block is sealed under the generation
of its parent's state); block h itself, which carries the record, under g.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from gateway.governance import state as gs
from gateway.governance.errors import GovernanceError
from gateway.governance.typed import canonical_json

SECRET_TYPE = "ledger_secret"
SECRET_RECORD_VERSION = 1
MAX_SECRET_RECORD = 256 * 1024
MAX_SHARES = 512
PUBLIC_KEY_BYTES = 65  # uncompressed secp256k1: 0x04 || X || Y
SEALED_BYTES = 32 + 16
_FIELDS = {"generation", "height", "shares", "type", "version"}
_SHARE_FIELDS = {"ephemeral", "key", "node", "sealed"}


@dataclass(frozen=True)
class SecretShare:
    node: bytes  # 20-byte address
    key: bytes  # the node's identity public key, 65 bytes uncompressed
    ephemeral: bytes  # the proposer's one-time public key, 65 bytes uncompressed
    sealed: bytes  # 48 bytes


@dataclass(frozen=True)
class SecretRecord:
    generation: int
    height: int
    shares: tuple[SecretShare, ...]

    def share_of(self, node: bytes) -> SecretShare | None:
        for share in self.shares:
            if share.node == node:
                return share
        return None


def address_of(public_key: bytes) -> bytes:
    """The Ethereum address of an uncompressed secp256k1 public key (65 bytes)."""
    return keccak(public_key[1:])[12:]


def is_ledger_secret(raw: bytes) -> bool:
    """Whether ``raw`` claims to be a ledger secret record (its type; ``decode`` checks)."""
    if not raw.startswith(b"{") or len(raw) > MAX_SECRET_RECORD:
        return False
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(obj, dict) and obj.get("type") == SECRET_TYPE


def _refuse(message: str) -> GovernanceError:
    return GovernanceError("bad-ledger-secret", message)


def _hex(value: Any, size: int, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 2 + 2 * size:
        raise _refuse(f"{what} is not 0x-prefixed hex of {size} bytes")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise _refuse(f"{what} is not hex") from None


def encode(record: SecretRecord) -> bytes:
    """The record's canonical JSON (what the section carries)."""
    return canonical_json(
        {
            "generation": record.generation,
            "height": record.height,
            "shares": [
                {
                    "ephemeral": "0x" + s.ephemeral.hex(),
                    "key": "0x" + s.key.hex(),
                    "node": "0x" + s.node.hex(),
                    "sealed": "0x" + s.sealed.hex(),
                }
                for s in record.shares
            ],
            "type": SECRET_TYPE,
            "version": SECRET_RECORD_VERSION,
        }
    ).encode()


def decode(raw: bytes) -> SecretRecord:
    """A ledger secret record from its canonical JSON ("bad-ledger-secret" otherwise)."""
    if not isinstance(raw, bytes) or len(raw) > MAX_SECRET_RECORD:
        raise _refuse("a ledger secret record is canonical JSON of at most 256 KiB")
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _refuse("a ledger secret record is not JSON") from None
    if not isinstance(obj, dict) or set(obj) != _FIELDS or obj["type"] != SECRET_TYPE:
        raise _refuse("a ledger secret record has exactly " + ", ".join(sorted(_FIELDS)))
    if obj["version"] != SECRET_RECORD_VERSION:
        raise _refuse(f"unknown ledger secret record version {obj['version']!r}")
    generation, height, rows = obj["generation"], obj["height"], obj["shares"]
    for value, what in ((generation, "generation"), (height, "height")):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
            raise _refuse(f"the record's {what} is not a positive integer")
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_SHARES:
        raise _refuse(f"the record's shares are a list of 1 to {MAX_SHARES}")
    shares: list[SecretShare] = []
    for row in rows:
        if not isinstance(row, dict) or set(row) != _SHARE_FIELDS:
            raise _refuse("a share has exactly " + ", ".join(sorted(_SHARE_FIELDS)))
        shares.append(
            SecretShare(
                node=_hex(row["node"], 20, "a share's node"),
                key=_hex(row["key"], PUBLIC_KEY_BYTES, "a share's key"),
                ephemeral=_hex(row["ephemeral"], PUBLIC_KEY_BYTES, "a share's ephemeral key"),
                sealed=_hex(row["sealed"], SEALED_BYTES, "a share's sealed secret"),
            )
        )
    record = SecretRecord(generation, height, tuple(shares))
    if encode(record) != raw:
        raise _refuse("the ledger secret record is not in canonical form")
    return record


def check(record: SecretRecord, after: gs.GovernanceState, height: int) -> None:
    """The public checks of a ledger secret record carried by block ``height``, against the
    state after the block (module docstring); "bad-ledger-secret" otherwise."""
    if record.generation != after.ledger_generation:
        raise _refuse(
            f"the record is for generation {record.generation}, the block starts generation "
            f"{after.ledger_generation}"
        )
    if record.height != height:
        raise _refuse(f"the record names block {record.height}, it is in block {height}")
    nodes = [s.node for s in record.shares]
    if nodes != sorted(set(nodes)):
        raise _refuse("the shares are not sorted by node, or name a node twice")
    for share in record.shares:
        node = after.nodes.get(share.node)
        if node is None or node.state != "trusted":
            raise _refuse(f"a share is for 0x{share.node.hex()}, which is not a trusted node")
        if share.key[0] != 4 or address_of(share.key) != share.node:
            raise _refuse(f"the share of 0x{share.node.hex()} names a key that is not its own")
        if share.ephemeral[0] != 4:
            raise _refuse("a share's ephemeral key is not an uncompressed public key")
    _, needed = trusted_recipients(after, height)
    missing = [v for v in needed if v not in nodes]
    if missing:
        raise _refuse(
            "the record has no share for validator(s) " + ", ".join("0x" + v.hex() for v in missing)
        )


def trusted_recipients(after: gs.GovernanceState, height: int) -> tuple[list[bytes], list[bytes]]:
    """(every trusted node, the ones that must have a share: the trusted validators of the
    next block and of the scheduled set), each sorted."""
    trusted = sorted(a for a, n in after.nodes.items() if n.state == "trusted")
    validators = {*after.validators_at(height + 1), *after.latest_validators()}
    needed = sorted(v for v in validators if v in trusted)
    return trusted, needed
