"""A member's recovery share submission, version 1: EIP-712 typed data in the style of the
governance messages (``typed.py``), signed with the member's Ethereum key::

    domain         {name: "Coco Gateway Governance", version: "1", chainId, salt: genesis hash}
    RecoveryShare  {member: address, generation: uint64, node: address, share: bytes}

``generation`` is the share generation the share belongs to, ``node`` the recovering node
whose enclave the share is sealed to, and ``share`` the member's opened share sealed to that
enclave's attested recovery key (``recovery.seal_for_enclave``: 126 bytes; the host that
carries it reads nothing). The signed record is the canonical JSON of::

    {"version": 1, "type": "recovery-share", "chainId": <int>, "genesis": "0x<32 bytes>",
     "signer": "0x<20 bytes>", "message": <the typed data's message>,
     "signature": "0x<65 bytes>"}

Checks, in order: the form (``bad-record``), ``wrong-chain``, ``wrong-consortium``,
``bad-signature`` (the signature does not recover ``signer``), ``share-signer`` (the signer is
not the ``member`` the message names); the recovering enclave then checks the generation,
the holder, the node and the share itself (docs/GOVERNANCE.md, "Recovery").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from gateway.governance.errors import GovernanceError
from gateway.governance.typed import (
    DOMAIN_TYPE,
    MAX_RECORD_BYTES,
    RECORD_VERSION,
    Domain,
    record_bytes,
)

RECORD_TYPE = "recovery-share"
SHARE_TYPE = [
    {"name": "member", "type": "address"},
    {"name": "generation", "type": "uint64"},
    {"name": "node", "type": "address"},
    {"name": "share", "type": "bytes"},
]
MAX_SHARE_BYTES = 1024


@dataclass(frozen=True)
class RecoveryShare:
    member: bytes
    generation: int
    node: bytes
    share: bytes  # the opened share sealed to the node's recovery key


@dataclass(frozen=True)
class ShareRecord:
    domain: Domain
    signer: bytes
    message: RecoveryShare
    signature: bytes


def message_json(message: RecoveryShare) -> dict[str, Any]:
    return {
        "member": "0x" + message.member.hex(),
        "generation": message.generation,
        "node": "0x" + message.node.hex(),
        "share": "0x" + message.share.hex(),
    }


def typed_data(domain: Domain, message: RecoveryShare) -> dict[str, Any]:
    """The exact JSON a wallet's ``eth_signTypedData_v4`` gets."""
    return {
        "types": {"EIP712Domain": DOMAIN_TYPE, "RecoveryShare": SHARE_TYPE},
        "primaryType": "RecoveryShare",
        "domain": domain.to_json(),
        "message": message_json(message),
    }


def struct_hash(message: RecoveryShare) -> bytes:
    return bytes(encode_typed_data(full_message=typed_data(Domain(1, bytes(32)), message)).body)


def digest(domain: Domain, message: RecoveryShare) -> bytes:
    signable = encode_typed_data(full_message=typed_data(domain, message))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def sign(private_key: bytes, domain: Domain, message: RecoveryShare) -> ShareRecord:
    signable = encode_typed_data(full_message=typed_data(domain, message))
    signed = Account.sign_message(signable, private_key)
    signer = bytes.fromhex(Account.from_key(private_key).address[2:])
    return ShareRecord(domain, signer, message, bytes(signed.signature))


def encode(record: ShareRecord) -> bytes:
    return record_bytes(
        RECORD_TYPE, record.domain, record.signer, message_json(record.message), record.signature
    )


def _bad(what: str) -> GovernanceError:
    return GovernanceError("bad-record", f"malformed recovery share record: {what}")


def _hex(value: Any, size: int | None, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise _bad(f"{what} must be 0x-prefixed lowercase hex")
    body = value[2:]
    if body != body.lower() or (size is not None and len(body) != 2 * size):
        raise _bad(f"{what} must be {size} bytes of lowercase hex")
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise _bad(f"{what} is not hex") from None


def _fields(obj: Any, names: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != set(names):
        raise _bad(f"{what} must be an object of exactly {', '.join(names)}")
    return obj


def decode(data: bytes) -> ShareRecord:
    """A record from its canonical bytes; refuses any other form (``bad-record``)."""
    if not isinstance(data, bytes) or len(data) > MAX_RECORD_BYTES:
        raise _bad("not a record of at most 64 KiB")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise _bad("not JSON") from None
    f = _fields(
        obj,
        ("version", "type", "chainId", "genesis", "signer", "message", "signature"),
        "a record",
    )
    if f["version"] != RECORD_VERSION:
        raise GovernanceError("record-version", f"recovery share record version {f['version']!r}")
    if f["type"] != RECORD_TYPE:
        raise _bad(f"type {f['type']!r} is not {RECORD_TYPE!r}")
    chain_id = f["chainId"]
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or not 0 < chain_id < 2**256:
        raise _bad("chainId must be a positive integer")
    msg = _fields(f["message"], ("member", "generation", "node", "share"), "the message")
    generation = msg["generation"]
    if (
        isinstance(generation, bool)
        or not isinstance(generation, int)
        or not 0 <= generation < 2**64
    ):
        raise _bad("generation must be a uint64")
    share = _hex(msg["share"], None, "share")
    if len(share) > MAX_SHARE_BYTES:
        raise _bad("the share is too long")
    record = ShareRecord(
        Domain(chain_id, _hex(f["genesis"], 32, "genesis")),
        _hex(f["signer"], 20, "signer"),
        RecoveryShare(
            _hex(msg["member"], 20, "member"), generation, _hex(msg["node"], 20, "node"), share
        ),
        _hex(f["signature"], 65, "signature"),
    )
    if encode(record) != data:
        raise _bad("not in canonical form (sorted keys, no whitespace, lowercase hex)")
    return record


def verify(record: ShareRecord, domain: Domain) -> bytes:
    """Check the record against this consortium's domain; return the member it is from."""
    if record.domain.chain_id != domain.chain_id:
        raise GovernanceError(
            "wrong-chain",
            f"the share was signed for chain {record.domain.chain_id}, this is chain "
            f"{domain.chain_id}",
        )
    if record.domain.genesis_hash != domain.genesis_hash:
        raise GovernanceError(
            "wrong-consortium",
            f"the share was signed for another consortium (genesis "
            f"0x{record.domain.genesis_hash.hex()})",
        )
    signable = encode_typed_data(full_message=typed_data(domain, record.message))
    try:
        signer = bytes.fromhex(Account.recover_message(signable, signature=record.signature)[2:])
    except Exception:
        raise GovernanceError("bad-signature", "the signature does not recover") from None
    if signer != record.signer:
        raise GovernanceError(
            "bad-signature",
            f"the signature recovers 0x{signer.hex()}, not the record's signer "
            f"0x{record.signer.hex()}",
        )
    if record.message.member != signer:
        raise GovernanceError(
            "share-signer",
            f"a share of 0x{record.message.member.hex()} must be signed by that member, not "
            f"0x{signer.hex()}",
        )
    return signer
