"""Signed query, version 3: an EIP-712 message that makes its signer msg.sender of one call.

An ``eth_call`` or ``eth_estimateGas`` call object may carry
``"signedQuery": {"version": 3, "signature": "0x…65 bytes…", "leash": {nonce, blockNumber,
blockRange, expiry, node}}``. The signature is EIP-712 over:

    domain  {name: "Coco Gateway", version: "3", chainId, salt: genesis block hash}
    Query   {from: address, to: address, value: uint256, data: bytes, leash: Leash}
    Leash   {nonce: uint64, blockNumber: uint64, blockRange: uint64, expiry: uint64,
             node: address}

``to`` is the zero address for a contract creation; ``data`` is the call object's data as
sent (an envelope, when the data is encrypted). The domain's ``salt`` is the chain's genesis
hash, so a query made for one chain does not verify on another with the same chain id (every
node of a consortium shares the genesis). What the signed query may see is in the leash:
the call is answered at exactly block ``blockNumber`` (a call that names another block is
refused), while the chain head is within [blockNumber, blockNumber + blockRange] and before
``expiry`` (unix seconds, at most ``MAX_LEASH_SECONDS`` ahead), by the node ``node`` only
(its attested identity address: every other node of the consortium refuses it). ``nonce``
answers at most once: that node remembers each (signer, nonce) until the leash expires,
durably. MetaMask signs such a message with eth_signTypedData_v4. Versions 1 (no genesis, any
block, no replay protection) and 2 (any node of the consortium, once each) are refused.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

VERSION = 3
MAX_BLOCK_RANGE = 1024
MAX_LEASH_SECONDS = 3600  # bounds how long the enclave must remember a nonce
LEASH_FIELDS = ("nonce", "blockNumber", "blockRange", "expiry")  # uint64; then ``node``

# the reason codes of QueryError (the JSON-RPC error's data.reason); docs/PROTOCOL.md lists them
REASONS = {
    "query-version": "the signed query is not of version 3",
    "no-from": "the call object has no from",
    "wrong-node": "the signed query is for another node (leash.node) than this one",
    "range-too-wide": "blockRange exceeds MAX_BLOCK_RANGE",
    "wrong-block": "the call names another block than the leash's blockNumber",
    "out-of-leash": "the chain head is outside [blockNumber, blockNumber + blockRange]",
    "expired": "expiry has passed",
    "leash-too-long": "expiry is more than MAX_LEASH_SECONDS ahead",
    "bad-signature": "the signature does not decode",
    "wrong-signer": "the signature recovers another address than from",
    "replayed": "this (from, nonce) was answered already",
    "too-many-queries": "the enclave holds as many live nonces as it keeps",
}


class QueryError(Exception):
    """The signed query is malformed, out of its leash, replayed or not signed by ``from``.

    ``reason`` is one of ``REASONS``: a stable code for programs."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason
        self.message = message


def typed_data(
    *,
    chain_id: int,
    genesis_hash: bytes,
    sender: bytes,
    to: bytes | None,
    value: int,
    data: bytes,
    leash: dict[str, int],
    node: bytes,
) -> dict[str, Any]:
    if len(genesis_hash) != 32:
        raise ValueError(f"genesis_hash must be 32 bytes, got {len(genesis_hash)}")
    if len(node) != 20:
        raise ValueError(f"node must be a 20-byte address, got {len(node)} bytes")
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "salt", "type": "bytes32"},
            ],
            "Query": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "data", "type": "bytes"},
                {"name": "leash", "type": "Leash"},
            ],
            "Leash": [
                *({"name": name, "type": "uint64"} for name in LEASH_FIELDS),
                {"name": "node", "type": "address"},
            ],
        },
        "primaryType": "Query",
        "domain": {
            "name": "Coco Gateway",
            "version": str(VERSION),
            "chainId": chain_id,
            "salt": "0x" + genesis_hash.hex(),
        },
        "message": {
            "from": "0x" + sender.hex(),
            "to": "0x" + (to or b"\x00" * 20).hex(),
            "value": value,
            "data": data,
            "leash": {
                **{k: int(leash[k]) for k in LEASH_FIELDS},
                "node": "0x" + node.hex(),
            },
        },
    }


def sign(private_key: bytes, **fields: Any) -> bytes:
    signed = Account.sign_message(encode_typed_data(full_message=typed_data(**fields)), private_key)
    return bytes(signed.signature)


def check(
    signature: bytes,
    *,
    chain_id: int,
    genesis_hash: bytes,
    sender: bytes | None,
    to: bytes | None,
    value: int,
    data: bytes,
    leash: dict[str, int],
    node: bytes | None,
    this_node: bytes,
    block_number: int,
    head_number: int,
    now: int,
) -> bytes:
    """The signer, after checking the leash (``node``: the node it names, which must be
    ``this_node``; ``block_number``: the block the call would be answered at) and that the
    signer is the call's ``from``. The nonce is the caller's to check (it needs memory)."""
    if sender is None:
        raise QueryError("no-from", 'a signed query needs the call object\'s "from": the signer')
    if node != this_node:
        raise QueryError(
            "wrong-node",
            f"the signed query is for node {_hex(node)}, and this is node 0x{this_node.hex()}: "
            "a signed query is answered only by the node it was signed for (its attested "
            "nodeAddress); sign it again for this node",
        )
    start, span = int(leash["blockNumber"]), int(leash["blockRange"])
    if span > MAX_BLOCK_RANGE:
        raise QueryError(
            "range-too-wide", f"the leash's blockRange {span} exceeds {MAX_BLOCK_RANGE} blocks"
        )
    if block_number != start:
        raise QueryError(
            "wrong-block",
            f"the signed query is answered at block {start} only, and the call names block "
            f"{block_number}: send it with block parameter {hex(start)}, or sign it again",
        )
    if not start <= head_number <= start + span:
        raise QueryError(
            "out-of-leash",
            f"the signed query is leashed to blocks {start}..{start + span} and the chain is "
            f"at {head_number}: sign it again",
        )
    expiry = int(leash["expiry"])
    if expiry <= now:
        raise QueryError("expired", "the signed query has expired: sign it again")
    if expiry > now + MAX_LEASH_SECONDS:
        raise QueryError(
            "leash-too-long",
            f"the signed query's expiry is {expiry - now} s ahead; at most "
            f"{MAX_LEASH_SECONDS} s are accepted",
        )
    message = encode_typed_data(
        full_message=typed_data(
            chain_id=chain_id,
            genesis_hash=genesis_hash,
            sender=sender,
            to=to,
            value=value,
            data=data,
            leash=leash,
            node=this_node,
        )
    )
    try:
        signer = Account.recover_message(message, signature=signature)
    except Exception:
        raise QueryError("bad-signature", "the signed query's signature is malformed") from None
    if bytes.fromhex(signer[2:]) != sender:
        raise QueryError(
            "wrong-signer",
            f"the query is signed by {signer}, not by its from address 0x{sender.hex()} (or "
            "it was signed for another chain, block, leash or data)",
        )
    return sender


def _hex(address: bytes | None) -> str:
    return "(none)" if address is None else "0x" + address.hex()
