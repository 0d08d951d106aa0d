"""Unit tests for tests/rpc_schemas.py: realistic results pass, malformed ones fail precisely.

No node is started; every fixture below is hand-written hex.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from rpc_schemas import (
    NOTIFICATION_SCHEMAS,
    RESULT_SCHEMAS,
    SchemaMismatch,
    has_schema,
    validate_notification,
    validate_result,
)

QTY = "^0x(0|[1-9a-f][0-9a-f]*)$"
HASH = "^0x[0-9a-f]{64}$"
DATA = "^0x[0-9a-f]*$"
ADDR = "^0x[0-9a-fA-F]{40}$"


def h32(label: str) -> str:
    """A deterministic, realistic-looking 32-byte hash."""
    return "0x" + hashlib.sha256(label.encode()).hexdigest()


def addr(label: str) -> str:
    return "0x" + hashlib.sha256(label.encode()).hexdigest()[:40]


ALICE = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"  # EIP-55 mixed case
BOB = addr("bob")
TOKEN = addr("token")
BLOCK_HASH = h32("block 19999999")
BLOCK_NUMBER = "0x1312cff"
BLOCK_TIME = "0x65f0a1b3"
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
BLOOM = "0x" + "00" * 100 + "0400000000002000" + "00" * 148


def log_entry(index: int = 0) -> dict[str, Any]:
    return {
        "address": TOKEN,
        "topics": [TRANSFER_TOPIC, "0x" + "0" * 24 + ALICE[2:].lower(), "0x" + "0" * 24 + BOB[2:]],
        "data": "0x00000000000000000000000000000000000000000000000000000000000f4240",
        "blockNumber": BLOCK_NUMBER,
        "blockHash": BLOCK_HASH,
        "blockTimestamp": BLOCK_TIME,
        "transactionHash": h32("tx 2"),
        "transactionIndex": "0x2",
        "logIndex": hex(index),
        "removed": False,
    }


def _mined(index: int) -> dict[str, Any]:
    return {
        "blockHash": BLOCK_HASH,
        "blockNumber": BLOCK_NUMBER,
        "blockTimestamp": BLOCK_TIME,
        "transactionIndex": hex(index),
        "hash": h32(f"tx {index}"),
        "from": ALICE,
    }


def legacy_tx() -> dict[str, Any]:
    return {
        **_mined(0),
        "type": "0x0",
        "nonce": "0x2a",
        "to": BOB,
        "gas": "0x5208",
        "gasPrice": "0x4a817c800",
        "value": "0xde0b6b3a7640000",
        "input": "0x",
        "chainId": "0x1",
        "v": "0x25",
        "r": "0x9f7c1b1c2e5e0b1b8f2f1c0a3e9a47e5c1c7d0a6f4b2c1d8e9f0a1b2c3d4e5f6",
        "s": "0x1c3e5a7b9d0f2e4c6a8b0d2f4e6c8a0b2d4f6e8c0a2b4d6f8e0c2a4b6d8f0e2",
    }


def access_list_tx() -> dict[str, Any]:
    return {
        **_mined(1),
        "type": "0x1",
        "chainId": "0x1",
        "nonce": "0x0",
        "to": None,  # contract creation
        "gas": "0x1e8480",
        "gasPrice": "0x3b9aca00",
        "value": "0x0",
        "input": "0x6080604052348015600f57600080fd5b50",
        "accessList": [{"address": TOKEN, "storageKeys": [h32("slot 0")]}],
        "yParity": "0x0",
        "v": "0x0",
        "r": "0x5d3a1f4e8c2b9a7d6e5f4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918077",
        "s": "0x2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4",
    }


def dynamic_fee_tx() -> dict[str, Any]:
    return {
        **_mined(2),
        "type": "0x2",
        "chainId": "0x1",
        "nonce": "0x7",
        "to": TOKEN,
        "gas": "0xfde8",
        "maxFeePerGas": "0x6fc23ac00",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "gasPrice": "0x4a817c800",
        "value": "0x0",
        "input": "0xa9059cbb" + "0" * 24 + BOB[2:] + "0" * 58 + "f4240",
        "accessList": [],
        "yParity": "0x1",
        "v": "0x1",
        "r": "0xe3f1c2b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f708192a3b4c5d6e7f80912",
        "s": "0x6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b",
    }


def blob_tx() -> dict[str, Any]:
    return {
        **_mined(3),
        "type": "0x3",
        "chainId": "0x1",
        "nonce": "0x11",
        "to": BOB,
        "gas": "0x5208",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "maxFeePerBlobGas": "0x3b9aca00",
        "gasPrice": "0x5d21dba00",
        "value": "0x0",
        "input": "0x",
        "accessList": [],
        "blobVersionedHashes": ["0x01" + h32("blob")[4:]],
        "yParity": "0x0",
        "r": "0x1f2e3d4c5b6a79880f1e2d3c4b5a69788f9e0d1c2b3a49586f7e8d9c0b1a2938",
        "s": "0x4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b",
    }


def set_code_tx() -> dict[str, Any]:
    return {
        **_mined(4),
        "type": "0x4",
        "chainId": "0x1",
        "nonce": "0x3",
        "to": ALICE,
        "gas": "0x186a0",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "gasPrice": "0x5d21dba00",
        "value": "0x0",
        "input": "0x",
        "accessList": [],
        "authorizationList": [
            {
                "chainId": "0x1",
                "nonce": "0x4",
                "address": TOKEN,
                "yParity": "0x1",
                "r": "0x8a9b0c1d2e3f405162738495a6b7c8d9eaf0b1c2d3e4f5061728394a5b6c7d8e",
                "s": "0x3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2",
            }
        ],
        "yParity": "0x1",
        "r": "0x2d3e4f5061728394a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c",
        "s": "0x7e8f9a0b1c2d3e4f5061728394a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d",
    }


ALL_TXS = [legacy_tx, access_list_tx, dynamic_fee_tx, blob_tx, set_code_tx]


def header() -> dict[str, Any]:
    return {
        "hash": BLOCK_HASH,
        "parentHash": h32("block 19999998"),
        "sha3Uncles": "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347",
        "miner": "0x95222290DD7278Aa3Ddd389Cc1E1d165CC4BAfe5",
        "stateRoot": h32("state"),
        "transactionsRoot": h32("txs"),
        "receiptsRoot": h32("receipts"),
        "logsBloom": BLOOM,
        "difficulty": "0x0",
        "number": BLOCK_NUMBER,
        "gasLimit": "0x1c9c380",
        "gasUsed": "0xa3c2e1",
        "timestamp": BLOCK_TIME,
        "extraData": "0x6265617665726275696c642e6f7267",
        "mixHash": h32("randao"),
        "nonce": "0x0000000000000000",
        "baseFeePerGas": "0x3b9aca07",
        "withdrawalsRoot": h32("withdrawals"),
        "blobGasUsed": "0x20000",
        "excessBlobGas": "0x0",
        "parentBeaconBlockRoot": h32("beacon"),
        "requestsHash": "0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }


def block(full: bool = False) -> dict[str, Any]:
    txs = [make() for make in ALL_TXS]
    return {
        **header(),
        "size": "0x1b4e",
        "totalDifficulty": "0xc70d815d562d3cfa955",  # not in the spec; extras are allowed
        "uncles": [],
        "transactions": txs if full else [tx["hash"] for tx in txs],
        "withdrawals": [
            {
                "index": "0x2a3b4c5",
                "validatorIndex": "0x10f2a",
                "address": addr("validator"),
                "amount": "0x11b5d4e",
            }
        ],
    }


def receipt() -> dict[str, Any]:
    return {
        "type": "0x2",
        "transactionHash": h32("tx 2"),
        "transactionIndex": "0x2",
        "blockHash": BLOCK_HASH,
        "blockNumber": BLOCK_NUMBER,
        "from": ALICE,
        "to": TOKEN,
        "cumulativeGasUsed": "0x3a1f0",
        "gasUsed": "0xcb2c",
        "contractAddress": None,
        "logs": [log_entry(0)],
        "logsBloom": BLOOM,
        "status": "0x1",
        "effectiveGasPrice": "0x4a817c800",
    }


def fee_history() -> dict[str, Any]:
    return {
        "oldestBlock": "0x1312cfd",
        "baseFeePerGas": ["0x3b9aca00", "0x3a7e9c12", "0x3b9aca07", "0x3c1f2a40"],
        "baseFeePerBlobGas": ["0x1", "0x1", "0x1", "0x1"],
        "gasUsedRatio": [0.45, 0.5317, 1],
        "blobGasUsedRatio": [0, 0.1666, 0.5],
        "reward": [["0x59682f00", "0x77359400"], ["0x3b9aca00", "0x5d21dba00"], ["0x0", "0x0"]],
    }


def altered(doc: Any, path: tuple[str | int, ...], value: Any = ...) -> Any:
    """A deep copy of ``doc`` with the field at ``path`` replaced, or deleted if no value."""
    out = copy.deepcopy(doc)
    target = out
    for step in path[:-1]:
        target = target[step]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


def mismatch(method: str, result: Any, **kwargs: Any) -> str:
    with pytest.raises(SchemaMismatch) as caught:
        validate_result(method, result, **kwargs)
    return str(caught.value)


# --------------------------------------------------------------------------------------
# The schemas themselves.
# --------------------------------------------------------------------------------------

METHODS_UNDER_TEST = [
    "eth_chainId",
    "net_version",
    "web3_clientVersion",
    "eth_blockNumber",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_call",
    "eth_estimateGas",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_feeHistory",
    "eth_sendRawTransaction",
    "eth_sendTransaction",
    "eth_accounts",
    "eth_getTransactionReceipt",
    "eth_getTransactionByHash",
    "eth_getTransactionByBlockHashAndIndex",
    "eth_getTransactionByBlockNumberAndIndex",
    "eth_getBlockTransactionCountByHash",
    "eth_getBlockTransactionCountByNumber",
    "eth_getLogs",
    "eth_newFilter",
    "eth_newBlockFilter",
    "eth_newPendingTransactionFilter",
    "eth_getFilterChanges",
    "eth_getFilterLogs",
    "eth_uninstallFilter",
    "eth_syncing",
    "eth_getBlockReceipts",
    "eth_coinbase",
    "net_listening",
    "net_peerCount",
    "eth_createAccessList",
    "eth_getProof",
]


@pytest.mark.parametrize("method", METHODS_UNDER_TEST)
def test_every_required_method_has_a_schema(method: str) -> None:
    assert has_schema(method)


def test_unknown_method() -> None:
    assert not has_schema("eth_mining")
    with pytest.raises(KeyError, match="eth_mining"):
        validate_result("eth_mining", False)
    with pytest.raises(KeyError, match="syncing"):
        validate_notification("syncing", {})


@pytest.mark.parametrize("name", sorted({**RESULT_SCHEMAS, **NOTIFICATION_SCHEMAS}))
def test_schemas_are_valid_draft_2020_12(name: str) -> None:
    schema = RESULT_SCHEMAS.get(name) or NOTIFICATION_SCHEMAS[name]
    Draft202012Validator.check_schema(schema)


def test_mismatch_is_an_assertion_error_with_structured_problems() -> None:
    with pytest.raises(AssertionError) as caught:
        validate_result("eth_chainId", "0x01")
    error = caught.value
    assert isinstance(error, SchemaMismatch)
    assert error.method == "eth_chainId"
    assert error.problems == [("result", f"'0x01' does not match {QTY}")]


# --------------------------------------------------------------------------------------
# Scalars.
# --------------------------------------------------------------------------------------

GOOD_SCALARS = [
    ("eth_chainId", "0x1"),
    ("eth_chainId", "0xaa36a7"),
    ("net_version", "11155111"),
    ("net_version", "0"),
    ("web3_clientVersion", "coco-gateway/v0.1.0/linux-x86_64/python3.11"),
    ("eth_blockNumber", "0x0"),
    ("eth_getBalance", "0xde0b6b3a7640000"),
    ("eth_getTransactionCount", "0x0"),
    ("eth_getCode", "0x"),
    ("eth_getCode", "0x6080604052"),
    ("eth_getStorageAt", "0x" + "0" * 64),
    ("eth_call", "0x"),
    ("eth_estimateGas", "0x5208"),
    ("eth_gasPrice", "0x4a817c800"),
    ("eth_maxPriorityFeePerGas", "0x3b9aca00"),
    ("eth_sendRawTransaction", h32("raw")),
    ("eth_sendTransaction", h32("sent")),
    ("eth_accounts", []),
    ("eth_accounts", [ALICE, BOB]),
    ("eth_coinbase", ALICE),
    ("eth_getBlockTransactionCountByHash", "0x5"),
    ("eth_getBlockTransactionCountByHash", None),
    ("eth_getBlockTransactionCountByNumber", "0x0"),
    ("eth_newFilter", "0x1"),
    ("eth_newBlockFilter", "0x8f3a2c"),
    ("eth_newPendingTransactionFilter", "0x2"),
    ("eth_uninstallFilter", True),
    ("eth_uninstallFilter", False),
    ("eth_syncing", False),
    ("eth_syncing", {"startingBlock": "0x0", "currentBlock": "0x1f4", "highestBlock": "0x3e8"}),
    ("net_listening", True),
    ("net_peerCount", "0x0"),
]


@pytest.mark.parametrize(("method", "result"), GOOD_SCALARS)
def test_good_scalars_pass(method: str, result: Any) -> None:
    validate_result(method, result)


BAD_SCALARS = [
    ("eth_chainId", "0x01", f"eth_chainId: result: '0x01' does not match {QTY}"),
    ("eth_chainId", 1, "eth_chainId: result: 1 is a number, expected string"),
    ("eth_blockNumber", "0x", f"eth_blockNumber: result: '0x' does not match {QTY}"),
    ("eth_blockNumber", "0xA", f"eth_blockNumber: result: '0xA' does not match {QTY}"),
    ("eth_blockNumber", None, "eth_blockNumber: result: null is not allowed here"),
    ("net_version", "0x1", "net_version: result: '0x1' does not match ^(0|[1-9][0-9]*)$"),
    ("eth_getCode", "0xABCD", f"eth_getCode: result: '0xABCD' does not match {DATA}"),
    ("eth_call", "deadbeef", f"eth_call: result: 'deadbeef' does not match {DATA}"),
    (
        "eth_sendRawTransaction",
        h32("raw")[:-2],
        "eth_sendRawTransaction: result: ",
    ),
    ("eth_accounts", [ALICE[:-1]], "eth_accounts: result[0]: "),
    ("eth_coinbase", None, "eth_coinbase: result: null is not allowed here (expected string)"),
    ("eth_uninstallFilter", "true", "eth_uninstallFilter: result: 'true' is a string"),
    ("eth_syncing", {"currentBlock": "0x01"}, "eth_syncing: result.currentBlock: '0x01'"),
    (
        "eth_syncing",
        {"currentBlock": "0x1", "pulledStates": "0x0"},
        "eth_syncing: result.pulledStates: unexpected field",
    ),
    ("net_peerCount", "0x00", f"net_peerCount: result: '0x00' does not match {QTY}"),
]


@pytest.mark.parametrize(("method", "result", "expected"), BAD_SCALARS)
def test_bad_scalars_fail(method: str, result: Any, expected: str) -> None:
    assert mismatch(method, result).startswith(expected)


# --------------------------------------------------------------------------------------
# Blocks.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["eth_getBlockByNumber", "eth_getBlockByHash"])
def test_blocks_pass(method: str) -> None:
    validate_result(method, block())
    validate_result(method, block(full=True))
    validate_result(method, None)
    validate_result(method, block(), params=["latest", False])
    validate_result(method, block(full=True), params=[BLOCK_HASH, True])
    validate_result(method, altered(block(), ("transactions",), []))


def test_pre_fork_block_without_optional_fields_passes() -> None:
    old = block()
    for name in (
        "baseFeePerGas", "withdrawalsRoot", "withdrawals", "blobGasUsed", "excessBlobGas",
        "parentBeaconBlockRoot", "requestsHash", "totalDifficulty",
    ):  # fmt: skip
        del old[name]
    old["difficulty"] = "0x2"
    validate_result("eth_getBlockByNumber", old)
    # difficulty is not required by the spec either.
    validate_result("eth_getBlockByNumber", altered(old, ("difficulty",)))


def test_block_transactions_must_match_the_hydration_flag() -> None:
    text = mismatch("eth_getBlockByNumber", block(), params=["latest", True])
    assert text.startswith("eth_getBlockByNumber: result.transactions[0]: ")
    assert "expected object" in text
    text = mismatch("eth_getBlockByNumber", block(full=True), params=["latest", False])
    assert "result.transactions[0]: " in text and "expected string" in text


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("mixHash",), ..., "result.mixHash: required field is missing"),
        (("size",), ..., "result.size: required field is missing"),
        (("uncles",), ..., "result.uncles: required field is missing"),
        (("number",), "0x01312cff", f"result.number: '0x01312cff' does not match {QTY}"),
        (("gasUsed",), "0x0", None),
        (("baseFeePerGas",), "0x03b9aca07", "result.baseFeePerGas: '0x03b9aca07' does not match"),
        (("parentHash",), h32("p")[:-2], f"result.parentHash: '{h32('p')[:-2]}' does not match"),
        (("hash",), BLOCK_HASH.upper().replace("0X", "0x"), "result.hash: "),
        (("miner",), None, "result.miner: null is not allowed here (expected string)"),
        (("nonce",), "0x0", "result.nonce: '0x0' does not match ^0x[0-9a-f]{16}$"),
        (("logsBloom",), "0x00", "result.logsBloom: '0x00' does not match ^0x[0-9a-f]{512}$"),
        (("withdrawals", 0, "amount"), "0x0", None),
        (("withdrawals", 0, "index"), "0x01", "result.withdrawals[0].index: '0x01'"),
        (("withdrawals", 0, "extra"), "0x1", "result.withdrawals[0].extra: unexpected field"),
        (("uncles",), [h32("u")[:-1]], "result.uncles[0]: "),
        (("transactions", 1), h32("t").upper().replace("0X", "0x"), "result.transactions[1]: "),
    ],
)
def test_block_field_checks(path: tuple[Any, ...], value: Any, expected: str | None) -> None:
    broken = altered(block(), path, value)
    if expected is None:
        validate_result("eth_getBlockByHash", broken)
        return
    assert mismatch("eth_getBlockByHash", broken).startswith("eth_getBlockByHash: " + expected)


def test_hydrated_block_reports_the_transaction_field() -> None:
    broken = altered(block(full=True), ("transactions", 2, "maxFeePerGas"), "0x06fc23ac00")
    assert mismatch("eth_getBlockByNumber", broken) == (
        f"eth_getBlockByNumber: result.transactions[2].maxFeePerGas: '0x06fc23ac00' "
        f"does not match {QTY}"
    )


def test_block_reports_every_problem() -> None:
    broken = altered(altered(block(), ("mixHash",)), ("gasLimit",), "0x01c9c380")
    lines = mismatch("eth_getBlockByNumber", broken).splitlines()
    assert sorted(lines) == [
        f"eth_getBlockByNumber: result.gasLimit: '0x01c9c380' does not match {QTY}",
        "eth_getBlockByNumber: result.mixHash: required field is missing",
    ]


# --------------------------------------------------------------------------------------
# Transactions.
# --------------------------------------------------------------------------------------

TX_METHODS = [
    "eth_getTransactionByHash",
    "eth_getTransactionByBlockHashAndIndex",
    "eth_getTransactionByBlockNumberAndIndex",
]


@pytest.mark.parametrize("method", TX_METHODS)
@pytest.mark.parametrize("make", ALL_TXS, ids=lambda f: f.__name__)
def test_each_transaction_type_passes(method: str, make: Any) -> None:
    validate_result(method, make())
    validate_result(method, None)


def test_legacy_contract_creation_without_chain_id_passes() -> None:
    tx = altered(altered(legacy_tx(), ("chainId",)), ("to",), None)
    tx["v"] = "0x1b"
    validate_result("eth_getTransactionByHash", tx)


@pytest.mark.parametrize(
    ("make", "path", "value", "expected"),
    [
        (legacy_tx, ("v",), ..., "result.v: required field is missing"),
        (legacy_tx, ("nonce",), "0x02a", f"result.nonce: '0x02a' does not match {QTY}"),
        (legacy_tx, ("r",), "0x09f7c", f"result.r: '0x09f7c' does not match {QTY}"),
        (access_list_tx, ("yParity",), ..., "result.yParity: required field is missing"),
        (access_list_tx, ("accessList", 0, "storageKeys", 0), "0x01", "result.accessList[0]"),
        (access_list_tx, ("accessList", 0, "note"), "x", "result.accessList[0].note: unexpected"),
        (dynamic_fee_tx, ("gasPrice",), ..., "result.gasPrice: required field is missing"),
        (dynamic_fee_tx, ("maxFeePerGas",), ..., "result.maxFeePerGas: required field is missing"),
        (dynamic_fee_tx, ("chainId",), None, "result.chainId: null is not allowed here"),
        (dynamic_fee_tx, ("input",), "0xA9059CBB", "result.input: '0xA9059CBB' does not match"),
        (blob_tx, ("to",), None, "result.to: null is not allowed here (expected string)"),
        (blob_tx, ("blobVersionedHashes",), ..., "result.blobVersionedHashes: required"),
        (set_code_tx, ("authorizationList", 0, "r"), "0x00ab", "result.authorizationList[0].r:"),
        (set_code_tx, ("authorizationList",), ..., "result.authorizationList: required"),
        (dynamic_fee_tx, ("type",), "0x5", "result.type: '0x5' is not one of '0x0', '0x1'"),
        (dynamic_fee_tx, ("type",), "0x02", "result.type: '0x02' is not one of"),
        (dynamic_fee_tx, ("type",), ..., "result.type: required field is missing"),
        (dynamic_fee_tx, ("blockTimestamp",), ..., "result.blockTimestamp: required field is"),
        (dynamic_fee_tx, ("blockHash",), None, "result.blockHash: null is not allowed here"),
        (dynamic_fee_tx, ("hash",), h32("x")[:-4], "result.hash: "),
        (dynamic_fee_tx, ("from",), ALICE[:-1], f"result.from: '{ALICE[:-1]}' does not match"),
    ],
)
def test_transaction_field_checks(
    make: Any, path: tuple[Any, ...], value: Any, expected: str
) -> None:
    text = mismatch("eth_getTransactionByHash", altered(make(), path, value))
    assert text.startswith("eth_getTransactionByHash: " + expected), text


def test_pending_transaction_needs_opt_in() -> None:
    pending = dynamic_fee_tx()
    pending.update(blockHash=None, blockNumber=None, transactionIndex=None)
    del pending["blockTimestamp"]
    text = mismatch("eth_getTransactionByHash", pending)
    assert "result.blockHash: null is not allowed here" in text
    validate_result("eth_getTransactionByHash", pending, pending=True)
    # The opt-in relaxes only the block position, not the transaction itself.
    text = mismatch("eth_getTransactionByHash", altered(pending, ("nonce",), "0x07"), pending=True)
    assert text == f"eth_getTransactionByHash: result.nonce: '0x07' does not match {QTY}"


# --------------------------------------------------------------------------------------
# Receipts.
# --------------------------------------------------------------------------------------


def test_receipts_pass() -> None:
    validate_result("eth_getTransactionReceipt", receipt())
    validate_result("eth_getTransactionReceipt", None)
    creation = receipt()
    creation.update(to=None, contractAddress=addr("new contract"), logs=[])
    validate_result("eth_getTransactionReceipt", creation)
    blob = receipt()
    blob.update(type="0x3", blobGasUsed="0x20000", blobGasPrice="0x1")
    validate_result("eth_getTransactionReceipt", blob)
    validate_result("eth_getBlockReceipts", [receipt(), creation, blob])
    validate_result("eth_getBlockReceipts", [])
    validate_result("eth_getBlockReceipts", None)


def test_receipt_type_and_status_are_optional_in_the_spec() -> None:
    pre_byzantium = altered(altered(receipt(), ("type",)), ("status",))
    pre_byzantium["root"] = h32("post state")
    validate_result("eth_getTransactionReceipt", pre_byzantium)


def test_receipt_leading_zero_message() -> None:
    broken = altered(receipt(), ("effectiveGasPrice",), "0x01")
    assert mismatch("eth_getTransactionReceipt", broken) == (
        "eth_getTransactionReceipt: result.effectiveGasPrice: "
        "'0x01' does not match ^0x(0|[1-9a-f][0-9a-f]*)$"
    )


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("effectiveGasPrice",), ..., "result.effectiveGasPrice: required field is missing"),
        (("logsBloom",), ..., "result.logsBloom: required field is missing"),
        (("from",), ..., "result.from: required field is missing"),
        (("cumulativeGasUsed",), "0x03a1f0", "result.cumulativeGasUsed: '0x03a1f0' does not"),
        (("transactionHash",), h32("t")[:-2], "result.transactionHash: "),
        (("blockHash",), "0x" + BLOCK_HASH[2:].upper(), "result.blockHash: "),
        (("status",), None, "result.status: null is not allowed here (expected string)"),
        (("status",), 1, "result.status: 1 is a number, expected string"),
        (("logs",), None, "result.logs: null is not allowed here (expected array)"),
        (("logs", 0, "logIndex"), "0x00", "result.logs[0].logIndex: '0x00' does not match"),
        (("l1Fee",), "0x1", "result.l1Fee: unexpected field (the spec allows no extras here)"),
        (("blockTimestamp",), BLOCK_TIME, "result.blockTimestamp: unexpected field"),
    ],
)
def test_receipt_field_checks(path: tuple[Any, ...], value: Any, expected: str) -> None:
    text = mismatch("eth_getTransactionReceipt", altered(receipt(), path, value))
    assert text.startswith("eth_getTransactionReceipt: " + expected), text


def test_block_receipts_name_the_index() -> None:
    broken = [receipt(), altered(receipt(), ("gasUsed",), "0x0cb2c")]
    assert mismatch("eth_getBlockReceipts", broken) == (
        f"eth_getBlockReceipts: result[1].gasUsed: '0x0cb2c' does not match {QTY}"
    )


# --------------------------------------------------------------------------------------
# Logs and filters.
# --------------------------------------------------------------------------------------


def test_logs_pass() -> None:
    for method in ("eth_getLogs", "eth_getFilterLogs", "eth_getFilterChanges"):
        validate_result(method, [log_entry(0), log_entry(1)])
        validate_result(method, [])
    validate_result("eth_getLogs", [altered(log_entry(), ("removed",), True)])
    validate_result("eth_getFilterChanges", [h32("new block 1"), h32("new block 2")])
    # Only transactionHash is mandatory in the spec's log object.
    validate_result("eth_getLogs", [{"transactionHash": h32("tx 2")}])


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("transactionHash",), ..., "result[0].transactionHash: required field is missing"),
        (("logIndex",), "0x01", f"result[0].logIndex: '0x01' does not match {QTY}"),
        (("topics", 0), TRANSFER_TOPIC[:-2], "result[0].topics[0]: "),
        (("topics", 1), TRANSFER_TOPIC.upper().replace("0X", "0x"), "result[0].topics[1]: "),
        (("data",), None, "result[0].data: null is not allowed here (expected string)"),
        (("data",), "0xFF", f"result[0].data: '0xFF' does not match {DATA}"),
        (("address",), "0x" + "g" * 40, "result[0].address: "),
        (("removed",), "false", "result[0].removed: 'false' is a string, expected boolean"),
        (("blockNumber",), None, "result[0].blockNumber: null is not allowed here"),
        (("transactionLogIndex",), "0x0", "result[0].transactionLogIndex: unexpected field"),
    ],
)
def test_log_field_checks(path: tuple[Any, ...], value: Any, expected: str) -> None:
    text = mismatch("eth_getLogs", [altered(log_entry(), path, value)])
    assert text.startswith("eth_getLogs: " + expected), text


def test_filter_changes_cannot_mix_hashes_and_logs() -> None:
    text = mismatch("eth_getFilterChanges", [h32("b"), log_entry()])
    assert text.startswith("eth_getFilterChanges: result[0]: "), text
    text = mismatch("eth_getFilterChanges", [h32("b")[:-2]])
    assert text.startswith("eth_getFilterChanges: result[0]: "), text


def test_get_logs_does_not_accept_hashes() -> None:
    text = mismatch("eth_getLogs", [h32("b")])
    assert text.startswith("eth_getLogs: result[0]: ") and "expected object" in text


# --------------------------------------------------------------------------------------
# Fee history.
# --------------------------------------------------------------------------------------


def test_fee_history_passes() -> None:
    validate_result("eth_feeHistory", fee_history())
    minimal = {"oldestBlock": "0x0", "baseFeePerGas": ["0x0", "0x0"], "gasUsedRatio": [0]}
    validate_result("eth_feeHistory", minimal)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("gasUsedRatio",), ..., "result.gasUsedRatio: required field is missing"),
        (("oldestBlock",), None, "result.oldestBlock: null is not allowed here"),
        (("oldestBlock",), "0x01312cfd", "result.oldestBlock: '0x01312cfd' does not match"),
        (("baseFeePerGas", 1), "0x03a7e9c12", "result.baseFeePerGas[1]: '0x03a7e9c12' does not"),
        (("reward", 2, 1), "0x00", "result.reward[2][1]: '0x00' does not match"),
        (("gasUsedRatio", 0), 1.5, "result.gasUsedRatio[0]: 1.5 is above the maximum 1"),
        (("gasUsedRatio", 0), "0.5", "result.gasUsedRatio[0]: '0.5' is a string, expected number"),
        (("blobGasUsedRatio", 0), -0.1, "result.blobGasUsedRatio[0]: -0.1 is below the minimum"),
        (("rewards",), [], "result.rewards: unexpected field"),
    ],
)
def test_fee_history_field_checks(path: tuple[Any, ...], value: Any, expected: str) -> None:
    text = mismatch("eth_feeHistory", altered(fee_history(), path, value))
    assert text.startswith("eth_feeHistory: " + expected), text


# --------------------------------------------------------------------------------------
# Subscriptions.
# --------------------------------------------------------------------------------------


def test_notifications_pass() -> None:
    validate_notification("newHeads", header())
    validate_notification(
        "newHeads", {"subscription": "0x9cef478923ff08bf67fde6c64013158d", "result": header()}
    )
    validate_notification("logs", log_entry(3))
    validate_notification(
        "logs", {"subscription": "0x4a8a4c0517381924f9838102c5a4dcb7", "result": log_entry()}
    )
    validate_notification("newPendingTransactions", h32("pending"))
    in_pool = dynamic_fee_tx()
    in_pool.update(blockHash=None, blockNumber=None, transactionIndex=None)
    validate_notification("newPendingTransactions", in_pool)


def test_notifications_fail_precisely() -> None:
    with pytest.raises(SchemaMismatch) as caught:
        validate_notification("newHeads", altered(header(), ("number",), "0x01312cff"))
    assert str(caught.value) == (
        f"eth_subscription(newHeads): result.number: '0x01312cff' does not match {QTY}"
    )
    with pytest.raises(SchemaMismatch) as caught:
        validate_notification("newHeads", altered(header(), ("parentHash",)))
    assert str(caught.value) == (
        "eth_subscription(newHeads): result.parentHash: required field is missing"
    )
    with pytest.raises(SchemaMismatch) as caught:
        validate_notification("logs", {"subscription": None, "result": log_entry()})
    assert str(caught.value).startswith(
        "eth_subscription(logs): params.subscription: null is not allowed here"
    )
    with pytest.raises(SchemaMismatch) as caught:
        validate_notification("logs", altered(log_entry(), ("topics", 0), TRANSFER_TOPIC[:-1]))
    assert str(caught.value).startswith("eth_subscription(logs): result.topics[0]: ")
