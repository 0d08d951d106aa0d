"""Ledger secret rotation inside the enclave: encrypt a fresh generation's secret to each
trusted node's identity key, and open this node's share (docs/PROTOCOL.md, "Ledger secret
record v1"; the record's public rules: gateway.governance.ledger_secret).

One share, for node N with identity public key K (secp256k1, 65 bytes uncompressed)::

    e         = a fresh secp256k1 key (one per share); E its public key (65 bytes)
    shared    = ECDH(e, K)  (the x coordinate, 32 bytes)
    info      = DOMAIN || chain id (32, big-endian) || genesis hash || generation (8) ||
                height (8) || N || K || E
    key       = HKDF-SHA256(shared, salt=none, info=info, length 32)
    sealed    = AES-256-GCM(key, nonce = 12 zero bytes, secret, ad = info)

The nonce is fixed because every key is used once (a fresh ``e`` per share). A share binds
the chain, the consortium (genesis), the generation, the block and the recipient, so it
cannot be replayed into another block, chain or node.

The proposer needs each recipient's public key: its own, and the keys it has seen in valid
signatures (every validator signs its QBFT messages: ``seen_public_key``), which it checks
against the address the governance state trusts (the record's rule).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.consensus.qbft.messages import seen_public_key
from gateway.governance import ledger_secret as ls
from gateway.governance import state as gs
from gateway.governance.errors import GovernanceError

log = logging.getLogger("gateway.enclave.rotation")

DOMAIN = b"coco-gateway/ledger-secret/v1"
_ZERO_NONCE = bytes(12)


class CannotRotate(Exception):
    """The proposer lacks the public key of a validator that must receive a share."""


def public_key_of(private_key: bytes) -> bytes:
    """The uncompressed secp256k1 public key (65 bytes) of a 32-byte private key."""
    key = ec.derive_private_key(int.from_bytes(private_key, "big"), ec.SECP256K1())
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def public_key_of_attestation(report: Any, signature: bytes) -> bytes | None:
    """The uncompressed public key that signed an attestation report (a join request or a
    join record), if it is the key of the address the report names."""
    from eth_keys import keys

    from gateway.protocol import attestation

    try:
        public = keys.Signature(signature).recover_public_key_from_msg_hash(
            attestation.digest(report)
        )
    except Exception:  # a malformed signature: no key learned
        return None
    raw = b"\x04" + public.to_bytes()
    return raw if ls.address_of(raw) == report.node_address else None


def _info(
    chain_id: int, genesis: bytes, generation: int, height: int, node: bytes, key: bytes, eph: bytes
) -> bytes:
    return (
        DOMAIN
        + chain_id.to_bytes(32, "big")
        + genesis
        + generation.to_bytes(8, "big")
        + height.to_bytes(8, "big")
        + node
        + key
        + eph
    )


def _aead(shared: bytes, info: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared))


def seal_share(
    secret: bytes,
    *,
    chain_id: int,
    genesis: bytes,
    generation: int,
    height: int,
    node: bytes,
    key: bytes,
    ephemeral: ec.EllipticCurvePrivateKey | None = None,  # fixed only by tests
) -> ls.SecretShare:
    """``secret`` encrypted to ``node``'s identity public key ``key`` (module docstring)."""
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), key)
    e = ephemeral or ec.generate_private_key(ec.SECP256K1())
    eph = e.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    info = _info(chain_id, genesis, generation, height, node, key, eph)
    sealed = _aead(e.exchange(ec.ECDH(), peer), info).encrypt(_ZERO_NONCE, secret, info)
    return ls.SecretShare(node=node, key=key, ephemeral=eph, sealed=sealed)


def open_share(
    share: ls.SecretShare,
    private_key: bytes,
    *,
    chain_id: int,
    genesis: bytes,
    generation: int,
    height: int,
) -> bytes:
    """This node's share opened with its identity key; ``GovernanceError``
    ("bad-ledger-secret") when it does not open (for another key, block or chain)."""
    key = ec.derive_private_key(int.from_bytes(private_key, "big"), ec.SECP256K1())
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), share.ephemeral)
        info = _info(chain_id, genesis, generation, height, share.node, share.key, share.ephemeral)
        return _aead(key.exchange(ec.ECDH(), peer), info).decrypt(_ZERO_NONCE, share.sealed, info)
    except (InvalidTag, ValueError):
        raise GovernanceError(
            "bad-ledger-secret",
            f"the ledger secret share of 0x{share.node.hex()} does not open with this "
            "node's identity key",
        ) from None


def make_record(
    after: gs.GovernanceState,
    height: int,
    *,
    chain_id: int,
    genesis: bytes,
    own: tuple[bytes, bytes],
    key_of: Callable[[bytes], bytes | None] = seen_public_key,
) -> tuple[bytes, bytes]:
    """The proposer's side: a fresh secret for ``after.ledger_generation`` and its record
    (canonical JSON) for block ``height``, with a share for every trusted node whose public
    key is known (``own``: this node's (address, public key)). ``CannotRotate`` when a
    validator of the next block that is trusted has no known key."""
    trusted, needed = ls.trusted_recipients(after, height)
    keys: dict[bytes, bytes] = {}
    for node in trusted:
        key = own[1] if node == own[0] else key_of(node)
        if key is not None and ls.address_of(key) == node:
            keys[node] = key
    missing = [v for v in needed if v not in keys]
    if missing:
        raise CannotRotate(
            "no public key known for validator(s) " + ", ".join("0x" + v.hex() for v in missing)
        )
    secret = secrets.token_bytes(32)
    generation = after.ledger_generation
    shares = tuple(
        seal_share(
            secret,
            chain_id=chain_id,
            genesis=genesis,
            generation=generation,
            height=height,
            node=node,
            key=keys[node],
        )
        for node in sorted(keys)
    )
    skipped = [n for n in trusted if n not in keys]
    if skipped:
        log.warning(
            "ledger secret generation %d: no public key known for trusted node(s) %s (not "
            "validators): they do not receive it in block %d",
            generation,
            ", ".join("0x" + n.hex() for n in skipped),
            height,
        )
    return ls.encode(ls.SecretRecord(generation, height, shares)), secret


def take_secret(
    raw: bytes,
    private_key: bytes,
    address: bytes,
    *,
    chain_id: int,
    genesis: bytes,
) -> tuple[int, bytes | None]:
    """The verifier's side: (generation, this node's secret, or None when the record has
    no share for it). The record's public rules were checked by ``apply_section``."""
    record = ls.decode(raw)
    share = record.share_of(address)
    if share is None:
        return record.generation, None
    secret = open_share(
        share,
        private_key,
        chain_id=chain_id,
        genesis=genesis,
        generation=record.generation,
        height=record.height,
    )
    return record.generation, secret
