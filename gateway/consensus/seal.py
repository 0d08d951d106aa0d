"""The block seal, version 1: a validator's signature over a block hash, kept outside the header.

Post-merge headers forbid Clique's use of ``extraData`` (65-byte signature), ``nonce`` and
``difficulty``, so the seal travels next to the header (in the ledger and on the wire), never
inside it. The block hash is therefore the ordinary Ethereum header hash, which unmodified clients
recompute and accept.

Format (version 1)::

    digest = keccak256(b"coco-gateway/seal/v1" || chain_id (32 bytes, big-endian) || block_hash)
    seal   = r (32 bytes, big-endian) || s (32 bytes, big-endian) || v (1 byte, 0 or 1)

``r, s, v`` is a secp256k1 recoverable ECDSA signature of ``digest`` by the validator's node
identity key; ``v`` is the recovery id (0 or 1, never 27/28). ``s`` must be in the lower half of
the curve order (as EIP-2 requires of transactions), so every seal has exactly one encoding. The
sealer's address is recovered from the seal, as Ethereum addresses are recovered from
transactions: ``keccak256(uncompressed public key without the 0x04 prefix)[12:]``.

The domain string keeps a seal from ever being valid as a transaction or a signed message, and the
chain id keeps a seal from one consortium chain from being replayed on another.
"""

from __future__ import annotations

from eth_keys import keys
from eth_keys.exceptions import BadSignature
from eth_utils import ValidationError, keccak

__all__ = [
    "SEAL_DOMAIN",
    "SEAL_LENGTH",
    "SEAL_VERSION",
    "SealError",
    "recover_sealer",
    "seal_digest",
    "sign_seal",
    "verify_seal",
]

SEAL_VERSION = 1
SEAL_DOMAIN = b"coco-gateway/seal/v1"
SEAL_LENGTH = 65

# secp256k1 group order.
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _SECP256K1_N // 2
_MAX_CHAIN_ID = 2**256 - 1


class SealError(ValueError):
    """A seal that cannot be checked or does not hold.

    ``reason`` is one of the ``SealError.*`` codes below, stable enough for a caller (the p2p
    room, a log line, a JSON-RPC error's data) to switch on; the message adds the detail.
    """

    BAD_INPUT = "bad-input"  # chain id or block hash malformed (a caller bug, not a bad seal)
    BAD_LENGTH = "bad-length"  # the seal is not 65 bytes
    BAD_V = "bad-v"  # the recovery id is not 0 or 1
    BAD_RS = "bad-rs"  # r or s is zero or not below the curve order
    HIGH_S = "high-s"  # s is in the upper half of the order (malleable encoding)
    UNRECOVERABLE = "unrecoverable"  # no public key recovers from this signature
    WRONG_SEALER = "wrong-sealer"  # recovers, but to another address than expected

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _check_inputs(chain_id: int, block_hash: bytes) -> None:
    if isinstance(chain_id, bool) or not isinstance(chain_id, int):
        raise SealError(SealError.BAD_INPUT, f"chain id must be an int, got {type(chain_id)!r}")
    if not 0 <= chain_id <= _MAX_CHAIN_ID:
        raise SealError(SealError.BAD_INPUT, f"chain id {chain_id} out of range")
    if not isinstance(block_hash, bytes | bytearray) or len(block_hash) != 32:
        raise SealError(SealError.BAD_INPUT, "block hash must be 32 bytes")


def seal_digest(chain_id: int, block_hash: bytes) -> bytes:
    """The 32-byte digest a version-1 seal signs."""
    _check_inputs(chain_id, block_hash)
    return keccak(SEAL_DOMAIN + chain_id.to_bytes(32, "big") + bytes(block_hash))


def sign_seal(private_key_bytes: bytes, chain_id: int, block_hash: bytes) -> bytes:
    """Seal ``block_hash`` with a 32-byte secp256k1 private key (called inside the enclave).

    Signing is deterministic (RFC 6979), so the same key, chain id and hash always give the same
    seal. The result is normalised to low ``s``, whatever the eth-keys backend returned.
    """
    digest = seal_digest(chain_id, block_hash)
    signature = keys.PrivateKey(bytes(private_key_bytes)).sign_msg_hash(digest)
    v, r, s = signature.v, signature.r, signature.s
    if s > _HALF_N:
        s = _SECP256K1_N - s
        v ^= 1
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])


def recover_sealer(chain_id: int, block_hash: bytes, seal: bytes) -> bytes:
    """The 20-byte address that produced ``seal`` over ``block_hash``; raises ``SealError``."""
    digest = seal_digest(chain_id, block_hash)
    if not isinstance(seal, bytes | bytearray):
        raise SealError(SealError.BAD_LENGTH, f"seal must be bytes, got {type(seal)!r}")
    if len(seal) != SEAL_LENGTH:
        raise SealError(SealError.BAD_LENGTH, f"seal is {len(seal)} bytes, expected {SEAL_LENGTH}")
    r = int.from_bytes(seal[0:32], "big")
    s = int.from_bytes(seal[32:64], "big")
    v = seal[64]
    if v not in (0, 1):
        raise SealError(SealError.BAD_V, f"recovery id is {v}, expected 0 or 1")
    if not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N):
        raise SealError(SealError.BAD_RS, "r and s must be in [1, n-1]")
    if s > _HALF_N:
        raise SealError(SealError.HIGH_S, "s must be at most n/2")
    try:
        public_key = keys.Signature(vrs=(v, r, s)).recover_public_key_from_msg_hash(digest)
    except (BadSignature, ValidationError, ValueError) as exc:
        raise SealError(SealError.UNRECOVERABLE, str(exc) or type(exc).__name__) from exc
    return bytes(public_key.to_canonical_address())


def verify_seal(chain_id: int, block_hash: bytes, seal: bytes, expected_validator: bytes) -> None:
    """Check that ``seal`` is ``expected_validator``'s seal over ``block_hash`` on ``chain_id``.

    Returns ``None`` on success; raises ``SealError`` with the precise reason otherwise.
    """
    if not isinstance(expected_validator, bytes | bytearray) or len(expected_validator) != 20:
        raise SealError(SealError.BAD_INPUT, "expected validator must be a 20-byte address")
    sealer = recover_sealer(chain_id, block_hash, seal)
    if sealer != bytes(expected_validator):
        raise SealError(
            SealError.WRONG_SEALER,
            f"sealed by 0x{sealer.hex()}, expected 0x{bytes(expected_validator).hex()}",
        )
