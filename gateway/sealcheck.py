"""Verify a block's proof-of-authority seal from outside, through the public JSON-RPC API.

Independent of the node's own word: the block hash is recomputed from the header fields
that eth_getBlockByNumber returns, the sealer is recovered from the seal over that hash,
and the sealer must be one of the validators the node names.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import rlp
from eth_utils import keccak, to_checksum_address

from gateway.consensus.seal import SealError, recover_sealer

# Header fields in RLP order; the trailing ones exist from the fork that introduced them.
_HEADER_FIELDS = (
    ("parentHash", "bytes"),
    ("sha3Uncles", "bytes"),
    ("miner", "bytes"),
    ("stateRoot", "bytes"),
    ("transactionsRoot", "bytes"),
    ("receiptsRoot", "bytes"),
    ("logsBloom", "bytes"),
    ("difficulty", "int"),
    ("number", "int"),
    ("gasLimit", "int"),
    ("gasUsed", "int"),
    ("timestamp", "int"),
    ("extraData", "bytes"),
    ("mixHash", "bytes"),
    ("nonce", "bytes"),
    ("baseFeePerGas", "int"),
    ("withdrawalsRoot", "bytes"),
    ("blobGasUsed", "int"),
    ("excessBlobGas", "int"),
    ("parentBeaconBlockRoot", "bytes"),
    ("requestsHash", "bytes"),
)


class SealCheckError(Exception):
    """The seal, the header or the node's answer does not check out."""


def header_hash(block: dict[str, Any]) -> bytes:
    """keccak256 of the RLP header rebuilt from a JSON-RPC block object."""
    items: list[Any] = []
    for name, kind in _HEADER_FIELDS:
        if name not in block:
            break
        value = block[name]
        items.append(int(value, 16) if kind == "int" else bytes.fromhex(value[2:]))
    return keccak(rlp.encode(items))


class NotChecked(SealCheckError):
    """Nothing was checked: the node did not answer (or not with JSON-RPC), or the block
    asked for is not a block number or tag."""


async def _call(session: aiohttp.ClientSession, url: str, method: str, params: list[Any]) -> Any:
    payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    try:
        async with session.post(url, json=payload) as response:
            document = await response.json(content_type=None)
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError):
        raise NotChecked(f"{url!r} is not an http:// or https:// URL") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
        raise NotChecked(f"cannot reach {url}: {reason}") from None
    except ValueError:
        raise NotChecked(f"{url} did not answer {method} with JSON") from None
    if not isinstance(document, dict) or ("result" not in document and "error" not in document):
        raise NotChecked(f"{url} did not answer {method} with JSON-RPC") from None
    if "error" in document:
        raise SealCheckError(f"{method}: {document['error'].get('message')}")
    return document["result"]


async def verify_block_seal(url: str, block: str = "latest", timeout: float = 30) -> str:
    if block in ("latest", "earliest", "safe", "finalized"):
        tag = block
    else:
        try:
            tag = hex(int(block, 0))
        except ValueError:
            raise NotChecked(
                f"{block!r} is not a block number or tag (latest, earliest, safe, finalized)"
            ) from None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        header = await _call(session, url, "eth_getBlockByNumber", [tag, False])
        if header is None:
            raise SealCheckError(f"block {block} not found")
        seal = await _call(session, url, "coco_getBlockSeal", [header["number"]])
        info = await _call(session, url, "coco_nodeInfo", [])
        chain_id = int(await _call(session, url, "eth_chainId", []), 16)
    number = int(header["number"], 16)
    computed = header_hash(header)
    if "0x" + computed.hex() != header["hash"]:
        raise SealCheckError(
            f"block {number}: the header fields hash to 0x{computed.hex()}, "
            f"not the reported {header['hash']}"
        )
    if number == 0:
        return f"block 0 (0x{computed.hex()}) is the genesis block: it carries no seal"
    if seal is None or seal["blockHash"] != header["hash"]:
        raise SealCheckError(f"the node has no seal for block {number}")
    if int(seal["version"]) != 1:
        raise SealCheckError(f"unknown seal version {seal['version']}")
    try:
        sealer = recover_sealer(chain_id, computed, bytes.fromhex(seal["seal"][2:]))
    except SealError as exc:
        raise SealCheckError(str(exc)) from None
    validators = [v.lower() for v in info["validators"]]
    who = to_checksum_address(sealer)
    if who.lower() not in validators:
        raise SealCheckError(f"block {number} was sealed by {who}, who is not a validator")
    return (
        f"block {number} 0x{computed.hex()}: header hash recomputed, seal v1 valid, "
        f"sealed by validator {who} on chain {chain_id}"
    )
