"""Signed query, version 1: an EIP-712 message that makes its signer msg.sender of a call.

An ``eth_call`` or ``eth_estimateGas`` call object may carry
``"signedQuery": {"signature": "0x…65 bytes…", "leash": {nonce, blockNumber, blockRange,
expiry}}``. The signature is EIP-712 over:

    domain  {name: "Coco Gateway", version: "1", chainId}
    Query   {from: address, to: address, value: uint256, data: bytes, leash: Leash}
    Leash   {nonce: uint64, blockNumber: uint64, blockRange: uint64, expiry: uint64}

``to`` is the zero address for a contract creation; ``data`` is the call object's data as
sent (an envelope, when the data is encrypted). The leash limits replay: the query is
valid while the chain head is within [blockNumber, blockNumber + blockRange] and before
``expiry`` (unix seconds); ``nonce`` lets a client tell its queries apart (the node does not
track it). MetaMask signs such a message with eth_signTypedData_v4.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

VERSION = 1
MAX_BLOCK_RANGE = 1024


class QueryError(Exception):
    """The signed query is malformed, out of its leash, or not signed by ``from``."""


def typed_data(
    *,
    chain_id: int,
    sender: bytes,
    to: bytes | None,
    value: int,
    data: bytes,
    leash: dict[str, int],
) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            "Query": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "data", "type": "bytes"},
                {"name": "leash", "type": "Leash"},
            ],
            "Leash": [
                {"name": "nonce", "type": "uint64"},
                {"name": "blockNumber", "type": "uint64"},
                {"name": "blockRange", "type": "uint64"},
                {"name": "expiry", "type": "uint64"},
            ],
        },
        "primaryType": "Query",
        "domain": {"name": "Coco Gateway", "version": str(VERSION), "chainId": chain_id},
        "message": {
            "from": "0x" + sender.hex(),
            "to": "0x" + (to or b"\x00" * 20).hex(),
            "value": value,
            "data": data,
            "leash": {k: int(leash[k]) for k in ("nonce", "blockNumber", "blockRange", "expiry")},
        },
    }


def sign(private_key: bytes, **fields: Any) -> bytes:
    signed = Account.sign_message(encode_typed_data(full_message=typed_data(**fields)), private_key)
    return bytes(signed.signature)


def check(
    signature: bytes,
    *,
    chain_id: int,
    sender: bytes | None,
    to: bytes | None,
    value: int,
    data: bytes,
    leash: dict[str, int],
    head_number: int,
    now: int,
) -> bytes:
    """The signer, after checking the leash and that the signer is the call's ``from``."""
    if sender is None:
        raise QueryError('a signed query needs the call object\'s "from": the signer')
    start, span = int(leash["blockNumber"]), int(leash["blockRange"])
    if span > MAX_BLOCK_RANGE:
        raise QueryError(f"the leash's blockRange {span} exceeds {MAX_BLOCK_RANGE} blocks")
    if not start <= head_number <= start + span:
        raise QueryError(
            f"the signed query is leashed to blocks {start}..{start + span} and the chain is "
            f"at {head_number}: sign it again"
        )
    if int(leash["expiry"]) <= now:
        raise QueryError("the signed query has expired: sign it again")
    message = encode_typed_data(
        full_message=typed_data(
            chain_id=chain_id, sender=sender, to=to, value=value, data=data, leash=leash
        )
    )
    try:
        signer = Account.recover_message(message, signature=signature)
    except Exception:
        raise QueryError("the signed query's signature is malformed") from None
    if bytes.fromhex(signer[2:]) != sender:
        raise QueryError(
            f"the query is signed by {signer}, not by its from address 0x{sender.hex()}"
        )
    return sender
