"""Ethereum JSON-RPC shapes (execution-apis) for py-evm's blocks, transactions and receipts."""

from __future__ import annotations

from typing import Any

import rlp
from eth.abc import BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI
from eth_utils import keccak, to_checksum_address

Json = dict[str, Any]


def qty(value: int) -> str:
    return hex(value)


def data(value: bytes) -> str:
    return "0x" + value.hex()


def addr(value: bytes | None) -> str | None:
    return None if not value else to_checksum_address(value)


def h32(value: int | bytes) -> str:
    if isinstance(value, int):
        value = value.to_bytes(32, "big")
    return "0x" + value.hex()


def tx_type(tx: SignedTransactionAPI) -> int:
    return getattr(tx, "type_id", None) or 0


def contract_address(sender: bytes, nonce: int) -> bytes:
    return keccak(rlp.encode([sender, nonce]))[12:]


def effective_gas_price(tx: SignedTransactionAPI, base_fee: int | None) -> int:
    if tx_type(tx) == 0 or tx_type(tx) == 1 or base_fee is None:
        return int(tx.gas_price)
    return min(int(tx.max_fee_per_gas), base_fee + int(tx.max_priority_fee_per_gas))


def header_to_rpc(header: BlockHeaderAPI, size: int | None = None) -> Json:
    out: Json = {
        "number": qty(header.block_number),
        "hash": data(header.hash),
        "parentHash": data(header.parent_hash),
        "nonce": data(header.nonce),
        "mixHash": data(header.mix_hash),
        "sha3Uncles": data(header.uncles_hash),
        "logsBloom": h_bloom(header.bloom),
        "transactionsRoot": data(header.transaction_root),
        "stateRoot": data(header.state_root),
        "receiptsRoot": data(header.receipt_root),
        "miner": addr(header.coinbase) or "0x" + "00" * 20,
        "difficulty": qty(header.difficulty),
        "totalDifficulty": qty(0),
        "extraData": data(header.extra_data),
        "gasLimit": qty(header.gas_limit),
        "gasUsed": qty(header.gas_used),
        "timestamp": qty(header.timestamp),
    }
    for attr, key in (
        ("base_fee_per_gas", "baseFeePerGas"),
        ("blob_gas_used", "blobGasUsed"),
        ("excess_blob_gas", "excessBlobGas"),
    ):
        value = getattr(header, attr, None)
        if value is not None:
            out[key] = qty(value)
    for attr, key in (
        ("withdrawals_root", "withdrawalsRoot"),
        ("parent_beacon_block_root", "parentBeaconBlockRoot"),
        ("requests_hash", "requestsHash"),
    ):
        value = getattr(header, attr, None)
        if value is not None:
            out[key] = data(value)
    if size is not None:
        out["size"] = qty(size)
    return out


def h_bloom(bloom: int) -> str:
    return "0x" + bloom.to_bytes(256, "big").hex()


def tx_to_rpc(
    tx: Any,
    *,
    block_hash: bytes | None,
    block_number: int | None,
    index: int | None,
    base_fee: int | None,
    timestamp: int | None = None,
) -> Json:
    kind = tx_type(tx)
    out: Json = {
        "type": qty(kind),
        "hash": data(tx.hash),
        "nonce": qty(tx.nonce),
        "blockHash": None if block_hash is None else data(block_hash),
        "blockNumber": None if block_number is None else qty(block_number),
        "transactionIndex": None if index is None else qty(index),
        "from": addr(tx.sender),
        "to": addr(tx.to) if tx.to else None,
        "value": qty(tx.value),
        "gas": qty(tx.gas),
        "input": data(tx.data),
        "r": qty(tx.r),
        "s": qty(tx.s),
    }
    if timestamp is not None:
        out["blockTimestamp"] = qty(timestamp)
    if kind == 0:
        out["gasPrice"] = qty(tx.gas_price)
        out["v"] = qty(tx.v)
        chain_id = tx.chain_id
        if chain_id is not None:
            out["chainId"] = qty(chain_id)
    else:
        out["chainId"] = qty(tx.chain_id)
        out["yParity"] = qty(tx.y_parity)
        out["v"] = qty(tx.y_parity)
        out["accessList"] = [
            {"address": addr(a), "storageKeys": [h32(k) for k in keys]}
            for a, keys in tx.access_list
        ]
        if kind == 1:
            out["gasPrice"] = qty(tx.gas_price)
        else:
            out["maxFeePerGas"] = qty(tx.max_fee_per_gas)
            out["maxPriorityFeePerGas"] = qty(tx.max_priority_fee_per_gas)
            # geth reports the effective price for mined transactions, the fee cap otherwise
            out["gasPrice"] = qty(
                effective_gas_price(tx, base_fee) if block_hash is not None else tx.max_fee_per_gas
            )
    return out


def log_to_rpc(
    log: Any, *, block_hash: bytes, block_number: int, tx_hash: bytes, tx_index: int, log_index: int
) -> Json:
    return {
        "address": addr(log.address),
        "topics": [h32(t) for t in log.topics],
        "data": data(log.data),
        "blockNumber": qty(block_number),
        "blockHash": data(block_hash),
        "transactionHash": data(tx_hash),
        "transactionIndex": qty(tx_index),
        "logIndex": qty(log_index),
        "removed": False,
    }


def receipt_to_rpc(
    tx: SignedTransactionAPI,
    receipt: ReceiptAPI,
    *,
    header: BlockHeaderAPI,
    index: int,
    gas_used: int,
    first_log_index: int,
    logs_shown: Any = None,
) -> Json:
    """``logs_shown`` replaces the receipt's logs (sealed log data of enveloped txs)."""
    base_fee = getattr(header, "base_fee_per_gas", None)
    shown = receipt.logs if logs_shown is None else logs_shown
    logs = [
        log_to_rpc(
            log,
            block_hash=header.hash,
            block_number=header.block_number,
            tx_hash=tx.hash,
            tx_index=index,
            log_index=first_log_index + i,
        )
        for i, log in enumerate(shown)
    ]
    return {
        "type": qty(tx_type(tx)),
        "transactionHash": data(tx.hash),
        "transactionIndex": qty(index),
        "blockHash": data(header.hash),
        "blockNumber": qty(header.block_number),
        "from": addr(tx.sender),
        "to": addr(tx.to) if tx.to else None,
        "cumulativeGasUsed": qty(receipt.gas_used),
        "gasUsed": qty(gas_used),
        "contractAddress": None if tx.to else addr(contract_address(tx.sender, tx.nonce)),
        "logs": logs,
        "logsBloom": h_bloom(receipt.bloom),
        "status": qty(1 if receipt.state_root == b"\x01" else 0),
        "effectiveGasPrice": qty(effective_gas_price(tx, base_fee)),
    }
