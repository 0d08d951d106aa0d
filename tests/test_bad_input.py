"""Bad input gets a clear JSON-RPC error, the node keeps serving, and nothing wrong is stored.

Parameter errors are -32602 and name the argument and the reason; pool rejections carry
geth's -32000 messages. Every rejected transaction is checked to have left no trace: the
sender's nonce and balance, the block number and eth_getTransactionByHash are unchanged.

Accounts: DEV_KEYS[2] funds a fresh key of this module (other files use DEV_KEYS[0] and
[1] on the shared node); only that key leaves nonce-gapped transactions in the pool.
Transactions that once stalled block production go to a node of their own, so a regression
cannot take the shared node down with it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import pytest
import rlp
from conftest import CHAIN_ID, DEV_KEYS, rpc
from eth_account import Account
from eth_utils import keccak

INVALID_PARAMS = -32602
SERVER_ERROR = -32000
GWEI = 10**9
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SINK = "0x" + "22" * 20
ADDRESS = "0x" + "ab" * 20
UNKNOWN_HASH = "0x" + "5a" * 32

FUNDER = Account.from_key(DEV_KEYS[2])

# What must never appear in a message meant for a JSON-RPC caller.
PYTHON_LEAKS = re.compile(r"Traceback|File \"|\b[A-Z]\w*(?:Error|Exception)\b|NoneType")


# ---------------------------------------------------------------------------- helpers
def result(url: str, method: str, params: list[Any]) -> Any:
    response = rpc(url, method, params)
    assert "error" not in response, (method, params, response)
    return response["result"]


def expect_error(url: str, method: str, params: list[Any], code: int, *fragments: str) -> str:
    response = rpc(url, method, params)
    assert "result" not in response, (method, params, response)
    error = response["error"]
    message = error["message"]
    assert error["code"] == code, (method, params, error)
    for fragment in fragments:
        assert fragment in message, (method, params, error)
    assert not PYTHON_LEAKS.search(message), (method, params, error)
    return str(message)


def head(url: str) -> dict[str, Any]:
    block = result(url, "eth_getBlockByNumber", ["latest", False])
    assert block is not None
    return dict(block)


def fees(url: str, bump: int = 0) -> dict[str, int]:
    base = int(head(url)["baseFeePerGas"], 16)
    tip = GWEI + bump
    return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}


def sign(key: Any, **fields: Any) -> bytes:
    tx = {"chainId": CHAIN_ID, "to": SINK, "value": 1, "gas": 21_000, **fields}
    return bytes(Account.sign_transaction(tx, key).raw_transaction)


def send(url: str, raw: bytes) -> dict[str, Any]:
    return rpc(url, "eth_sendRawTransaction", ["0x" + raw.hex()])


def wait_receipt(url: str, tx_hash: str, timeout: float = 30) -> dict[str, Any] | None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        receipt = result(url, "eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            return dict(receipt)
        time.sleep(0.05)
    return None


def state(url: str, *addresses: str) -> tuple[Any, ...]:
    out: list[Any] = [result(url, "eth_blockNumber", [])]
    for address in addresses:
        out.append(result(url, "eth_getTransactionCount", [address, "latest"]))
        out.append(result(url, "eth_getTransactionCount", [address, "pending"]))
        out.append(result(url, "eth_getBalance", [address, "latest"]))
    return tuple(out)


def assert_rejected(
    url: str, raw: bytes, code: int, *fragments: str, watch: tuple[str, ...] = ()
) -> str:
    """Submit ``raw``; it must be refused and leave no trace."""
    before = state(url, *watch)
    message = expect_error(url, "eth_sendRawTransaction", ["0x" + raw.hex()], code, *fragments)
    assert result(url, "eth_getTransactionByHash", ["0x" + keccak(raw).hex()]) is None
    assert state(url, *watch) == before
    return message


def typed_fields(raw: bytes) -> tuple[int, list[Any]]:
    return raw[0], list(rlp.decode(raw[1:]))


def typed_raw(kind: int, fields: list[Any]) -> bytes:
    return bytes([kind]) + rlp.encode(fields)


@dataclass
class Funded:
    account: Any
    funding_raw: bytes

    @property
    def address(self) -> str:
        return str(self.account.address)

    @property
    def key(self) -> Any:
        return self.account.key


@pytest.fixture(scope="module")
def funded(node: Any) -> Funded:
    """A fresh key of this module, given 1 ETH by DEV_KEYS[2]."""
    account = Account.create()
    nonce = int(result(node.url, "eth_getTransactionCount", [FUNDER.address, "pending"]), 16)
    raw = sign(FUNDER.key, nonce=nonce, to=account.address, value=10**18, **fees(node.url))
    tx_hash = send(node.url, raw)["result"]
    receipt = wait_receipt(node.url, tx_hash)
    assert receipt is not None and receipt["status"] == "0x1"
    return Funded(account, raw)


# ---------------------------------------------------------------------------- parameters
BAD_PARAMS: list[tuple[str, list[Any], tuple[str, ...]]] = [
    # wrong types
    ("eth_getBalance", [1], ("argument 0 (address)", "20-byte")),
    ("eth_getBalance", [{"address": ADDRESS}], ("argument 0 (address)",)),
    ("eth_getBalance", [[ADDRESS]], ("argument 0 (address)",)),
    ("eth_getBalance", [ADDRESS, True], ("argument 1 (block)",)),
    ("eth_getBalance", [ADDRESS, 12], ("argument 1 (block)",)),
    ("eth_getBalance", [ADDRESS, ["latest"]], ("argument 1 (block)",)),
    ("eth_getBlockByNumber", [1, False], ("argument 0 (block)",)),
    ("eth_getBlockByNumber", [False, False], ("argument 0 (block)",)),
    ("eth_getBlockByNumber", ["latest", "true"], ("argument 1 (hydrated)", "got string")),
    ("eth_getBlockByNumber", ["latest", None], ("argument 1 (hydrated)", "got null")),
    ("eth_getBlockByNumber", ["latest", 1], ("argument 1 (hydrated)", "got number")),
    ("eth_getBlockByHash", [1, False], ("argument 0 (blockHash)", "32-byte")),
    ("eth_getStorageAt", [ADDRESS, 0], ("argument 1 (storageSlot)", "got number")),
    ("eth_getStorageAt", [ADDRESS, "zz"], ("argument 1 (storageSlot)", "0x")),
    ("eth_getTransactionByBlockNumberAndIndex", ["latest", 0], ("argument 1 (index)",)),
    ("eth_getTransactionByHash", [12], ("argument 0 (transactionHash)",)),
    ("eth_getTransactionByHash", ["0x12"], ("argument 0 (transactionHash)", "32-byte")),
    ("eth_getTransactionReceipt", [{"hash": UNKNOWN_HASH}], ("argument 0 (transactionHash)",)),
    ("eth_sendRawTransaction", [{}], ("argument 0 (transaction)", "got object")),
    ("eth_sendRawTransaction", [None], ("argument 0 (transaction)", "got null")),
    ("eth_sendRawTransaction", [12], ("argument 0 (transaction)", "got number")),
    ("eth_sendRawTransaction", ["f86c"], ("argument 0 (transaction)", "0x")),
    ("eth_call", [{"to": ADDRESS, "value": 5}], ("transaction.value", "got number")),
    ("eth_call", [{"to": {"a": 1}}], ("transaction.to", "20-byte")),
    ("eth_call", [{"to": ADDRESS, "from": "0x1234"}], ("transaction.from", "20-byte")),
    ("eth_call", [{"to": ADDRESS, "gas": True}], ("transaction.gas", "got boolean")),
    ("eth_call", [{"to": ADDRESS, "data": 12}], ("transaction.input",)),
    ("eth_call", [{"to": ADDRESS, "data": "0x123"}], ("transaction.input", "odd")),
    ("eth_call", [{"to": ADDRESS, "input": "abcd"}], ("transaction.input",)),
    ("eth_call", [{"to": ADDRESS, "gasPrice": "0x1", "maxFeePerGas": "0x2"}], ("gasPrice",)),
    ("eth_call", [{"to": ADDRESS, "value": "0x"}], ("transaction.value", "no digits")),
    ("eth_call", [{"to": ADDRESS}, "latest", {ADDRESS: {"balance": "0x1"}}], ("argument 2",)),
    ("eth_estimateGas", [{"to": ADDRESS, "value": "-0x1"}], ("transaction.value",)),
    ("web3_sha3", ["hello"], ("argument 0 (data)",)),
    ("eth_getFilterChanges", [5], ("argument 0 (filterId)",)),
    ("eth_feeHistory", [True, "latest", []], ("blockCount",)),
    ("eth_feeHistory", ["0x1", 5, []], ("argument 1 (newestBlock)",)),
    # missing params
    ("eth_getBalance", [], ("missing value for required argument 0",)),
    ("eth_getBlockByNumber", ["latest"], ("missing value for required argument 1",)),
    ("eth_getBlockByHash", [], ("missing value for required argument 0",)),
    ("eth_getStorageAt", [ADDRESS], ("missing value for required argument 1",)),
    ("eth_call", [], ("missing value for required argument 0",)),
    ("eth_sendRawTransaction", [], ("missing value for required argument 0",)),
    ("eth_getLogs", [], ("missing value for required argument 0",)),
    ("eth_feeHistory", ["0x1"], ("missing value for required argument 1",)),
    ("eth_getFilterChanges", [], ("missing value for required argument 0",)),
    # extra params
    ("eth_chainId", [1], ("too many arguments, want at most 0, got 1",)),
    ("eth_blockNumber", ["latest"], ("too many arguments, want at most 0, got 1",)),
    ("eth_getBalance", [ADDRESS, "latest", "x"], ("too many arguments, want at most 2, got 3",)),
    ("eth_getBlockByNumber", ["latest", False, True], ("want at most 2, got 3",)),
    ("eth_sendRawTransaction", ["0x00", "0x00"], ("want at most 1, got 2",)),
    ("eth_getTransactionReceipt", [UNKNOWN_HASH, "latest"], ("want at most 1, got 2",)),
    # bad addresses
    ("eth_getBalance", ["0x1234"], ("argument 0 (address)", "20-byte")),
    ("eth_getBalance", ["0x" + "zz" * 20], ("argument 0 (address)", "20-byte")),
    ("eth_getBalance", ["ab" * 20], ("argument 0 (address)", "20-byte")),
    ("eth_getBalance", ["0x" + "ab" * 21], ("argument 0 (address)", "20-byte")),
    ("eth_getBalance", [""], ("argument 0 (address)", "20-byte")),
    ("eth_getBalance", ["0x"], ("argument 0 (address)", "20-byte")),
    ("eth_getCode", ["0x" + "ab" * 19 + "g1"], ("argument 0 (address)", "20-byte")),
    ("eth_getTransactionCount", ["0X" + "ab" * 20], ("argument 0 (address)",)),
    ("eth_getStorageAt", [" 0x" + "ab" * 20, "0x0"], ("argument 0 (address)",)),
    # bad block tags
    ("eth_getBalance", [ADDRESS, "newest"], ("argument 1 (block)", '"latest"')),
    ("eth_getBalance", [ADDRESS, "Latest"], ("argument 1 (block)",)),
    ("eth_getBalance", [ADDRESS, ""], ("argument 1 (block)",)),
    ("eth_getBalance", [ADDRESS, "1"], ("argument 1 (block)",)),
    ("eth_getBalance", [ADDRESS, "0x"], ("argument 1 (block)", "no digits")),
    ("eth_getBalance", [ADDRESS, "0xzz"], ("argument 1 (block)", "invalid hex")),
    ("eth_getBalance", [ADDRESS, "0x1" + "0" * 16], ("argument 1 (block)", "64 bits")),
    ("eth_getBalance", [ADDRESS, {"blockNumber": "x"}], ("argument 1 (block.blockNumber)",)),
    ("eth_getBalance", [ADDRESS, {"foo": 1}], ("argument 1 (block)",)),
    ("eth_getBalance", [ADDRESS, {"blockHash": "0x12"}], ("argument 1 (block.blockHash)",)),
    (
        "eth_getBalance",
        [ADDRESS, {"blockHash": UNKNOWN_HASH, "requireCanonical": "yes"}],
        ("argument 1 (block)", "requireCanonical"),
    ),
    ("eth_getBlockByNumber", ["pending!", False], ("argument 0 (block)",)),
    ("eth_getBlockTransactionCountByNumber", ["0xg"], ("argument 0 (block)",)),
    ("eth_call", [{"to": ADDRESS}, "finalised"], ("argument 1 (block)",)),
    ("eth_getLogs", [{"fromBlock": "first"}], ("filter.fromBlock",)),
    # eth_call: data and input both set and different
    ("eth_call", [{"to": ADDRESS, "data": "0x01", "input": "0x02"}], ('"data"', '"input"')),
    ("eth_estimateGas", [{"to": ADDRESS, "data": "0x", "input": "0x00"}], ('"data"', '"input"')),
    # eth_getLogs
    ("eth_getLogs", [{"fromBlock": "0x2", "toBlock": "0x1"}], ("fromBlock is after toBlock",)),
    ("eth_newFilter", [{"fromBlock": "0x9", "toBlock": "0x3"}], ("fromBlock is after toBlock",)),
    ("eth_getLogs", [{"topics": ["0x12"]}], ("filter.topics[0]", "32-byte")),
    ("eth_getLogs", [{"topics": [None, [UNKNOWN_HASH, "0x12"]]}], ("filter.topics[1]",)),
    ("eth_getLogs", [{"topics": [1]}], ("filter.topics[0]",)),
    ("eth_getLogs", [{"topics": [[True]]}], ("filter.topics[0]",)),
    ("eth_getLogs", [{"topics": "0x" + "00" * 32}], ("topics",)),
    ("eth_getLogs", [{"topics": [None] * 5}], ("topics", "at most 4")),
    ("eth_newFilter", [{"topics": [[1]]}], ("filter.topics[0]",)),
    ("eth_getLogs", [{"address": "0x12"}], ("filter.address", "20-byte")),
    ("eth_getLogs", [{"address": [ADDRESS, 7]}], ("filter.address",)),
    ("eth_getLogs", [{"fromBlock": "0x0", "blockHash": UNKNOWN_HASH}], ("blockHash",)),
    ("eth_getLogs", [{"limit": 10}], ("unknown field", "limit")),
    ("eth_getLogs", ["latest"], ("argument 0 (filter)",)),
    # eth_feeHistory percentiles
    ("eth_feeHistory", ["0x2", "latest", [50, 10]], ("rewardPercentiles", "ascending")),
    ("eth_feeHistory", ["0x2", "latest", [101]], ("rewardPercentiles", "0 to 100")),
    ("eth_feeHistory", ["0x2", "latest", [-1]], ("rewardPercentiles", "0 to 100")),
    ("eth_feeHistory", ["0x2", "latest", ["50"]], ("rewardPercentiles",)),
    ("eth_feeHistory", ["0x2", "latest", [True]], ("rewardPercentiles",)),
    ("eth_feeHistory", ["0x2", "latest", [None]], ("rewardPercentiles",)),
    ("eth_feeHistory", ["0x2", "latest", "x"], ("rewardPercentiles", "array")),
    ("eth_feeHistory", ["0x2", "latest", {"p": 50}], ("rewardPercentiles", "array")),
    ("eth_feeHistory", ["0x401", "latest", []], ("blockCount", "1024")),
]


@pytest.mark.parametrize(
    ("method", "params", "fragments"),
    BAD_PARAMS,
    ids=[f"{i}-{m}" for i, (m, _, _) in enumerate(BAD_PARAMS)],
)
def test_bad_params(node: Any, method: str, params: list[Any], fragments: tuple[str, ...]) -> None:
    expect_error(node.url, method, params, INVALID_PARAMS, *fragments)


def test_the_node_keeps_serving_after_bad_params(node: Any) -> None:
    before = result(node.url, "eth_blockNumber", [])
    for method, params, _ in BAD_PARAMS[:20]:
        rpc(node.url, method, params)
    assert result(node.url, "eth_chainId", []) == hex(CHAIN_ID)
    assert result(node.url, "eth_blockNumber", []) == before


# ---------------------------------------------------------------------------- unknown blocks
def future_block(url: str) -> str:
    return hex(int(result(url, "eth_blockNumber", []), 16) + 1000)


def test_state_queries_at_a_future_block_are_header_not_found(node: Any) -> None:
    future = future_block(node.url)
    for method, params in [
        ("eth_getBalance", [ADDRESS, future]),
        ("eth_getTransactionCount", [ADDRESS, future]),
        ("eth_getCode", [ADDRESS, future]),
        ("eth_getStorageAt", [ADDRESS, "0x0", future]),
        ("eth_call", [{"to": ADDRESS}, future]),
        ("eth_estimateGas", [{"to": ADDRESS}, future]),
        ("eth_feeHistory", ["0x1", future, []]),
        ("eth_getBalance", [ADDRESS, {"blockNumber": future}]),
    ]:
        message = expect_error(node.url, method, params, SERVER_ERROR, "header not found")
        assert message == "header not found", (method, message)


def test_block_lookups_of_a_future_number_are_null(node: Any) -> None:
    future = future_block(node.url)
    assert result(node.url, "eth_getBlockByNumber", [future, False]) is None
    assert result(node.url, "eth_getBlockByNumber", [future, True]) is None
    assert result(node.url, "eth_getBlockTransactionCountByNumber", [future]) is None
    assert result(node.url, "eth_getTransactionByBlockNumberAndIndex", [future, "0x0"]) is None
    assert result(node.url, "eth_getUncleCountByBlockNumber", [future]) is None
    assert result(node.url, "eth_getBlockReceipts", [future]) is None


def test_unknown_block_hash(node: Any) -> None:
    assert result(node.url, "eth_getBlockByHash", [UNKNOWN_HASH, False]) is None
    assert result(node.url, "eth_getBlockTransactionCountByHash", [UNKNOWN_HASH]) is None
    assert result(node.url, "eth_getTransactionByBlockHashAndIndex", [UNKNOWN_HASH, "0x0"]) is None
    assert result(node.url, "eth_getUncleCountByBlockHash", [UNKNOWN_HASH]) is None
    by_hash = {"blockHash": UNKNOWN_HASH}
    for method, params in [
        ("eth_getBalance", [ADDRESS, by_hash]),
        ("eth_getTransactionCount", [ADDRESS, by_hash]),
        ("eth_getCode", [ADDRESS, {**by_hash, "requireCanonical": True}]),
        ("eth_getStorageAt", [ADDRESS, "0x0", by_hash]),
        ("eth_call", [{"to": ADDRESS}, by_hash]),
        ("eth_getBalance", [ADDRESS, UNKNOWN_HASH]),
    ]:
        expect_error(node.url, method, params, SERVER_ERROR, UNKNOWN_HASH[2:], "not found")
    expect_error(node.url, "eth_getLogs", [by_hash], SERVER_ERROR, UNKNOWN_HASH[2:])


# ---------------------------------------------------------------------------- filters
@pytest.mark.parametrize("method", ["eth_getFilterChanges", "eth_getFilterLogs"])
def test_unknown_filter_id(node: Any, method: str) -> None:
    message = expect_error(node.url, method, ["0x" + "7" * 32], SERVER_ERROR)
    assert message == "filter not found"


def test_uninstalling_an_unknown_filter_is_false(node: Any) -> None:
    assert result(node.url, "eth_uninstallFilter", ["0x" + "7" * 32]) is False


def test_a_block_filter_has_no_logs(node: Any) -> None:
    filter_id = result(node.url, "eth_newBlockFilter", [])
    try:
        expect_error(node.url, "eth_getFilterLogs", [filter_id], SERVER_ERROR, "filter not found")
    finally:
        assert result(node.url, "eth_uninstallFilter", [filter_id]) is True
    expect_error(node.url, "eth_getFilterChanges", [filter_id], SERVER_ERROR, "filter not found")


# ---------------------------------------------------------------------------- raw transactions
def test_malformed_raw_transactions(node: Any, funded: Funded) -> None:
    good = sign(funded.key, nonce=0, **fees(node.url))
    kind, fields = typed_fields(good)
    legacy = sign(funded.key, nonce=0, gasPrice=fees(node.url)["maxFeePerGas"])
    junk = [
        bytes.fromhex("f8ff00"),
        bytes.fromhex("02f8"),
        bytes.fromhex("c0"),
        bytes.fromhex("01c0"),
        bytes.fromhex("02c0"),
        bytes.fromhex("80"),
        bytes.fromhex("ff"),
        good[:-3],  # truncated
        good + b"\x00",  # trailing byte
        legacy[:-1],
        legacy + b"\x01",
        typed_raw(kind, fields[:-1]),  # a field short
        typed_raw(kind, [*fields, b"\x01"]),  # a field too many
        typed_raw(kind, [[f] for f in fields]),  # fields nested one level too deep
        rlp.encode(list(rlp.decode(legacy))[:6]),  # legacy without a signature
    ]
    for raw in junk:
        assert_rejected(node.url, raw, INVALID_PARAMS, "transaction", watch=(funded.address,))


def test_empty_raw_transaction(node: Any) -> None:
    expect_error(node.url, "eth_sendRawTransaction", ["0x"], INVALID_PARAMS, "transaction", "empty")
    expect_error(
        node.url, "eth_sendRawTransaction", [""], INVALID_PARAMS, "argument 0 (transaction)"
    )
    expect_error(
        node.url,
        "eth_sendRawTransaction",
        ["0x0"],
        INVALID_PARAMS,
        "argument 0 (transaction)",
        "odd",
    )


def test_tampered_signatures(node: Any, funded: Funded) -> None:
    good = sign(funded.key, nonce=0, **fees(node.url))
    kind, fields = typed_fields(good)
    out_of_range = "invalid transaction v, r, s values"  # geth's words for a malformed signature
    for position, value, expected in [
        (-2, b"\xff" * 32, out_of_range),  # r above the curve order
        (-2, b"", out_of_range),  # r = 0
        (-1, b"", out_of_range),  # s = 0
        (-1, b"\xff" * 32, out_of_range),  # s above the curve order
        (-3, b"\x02", "invalid sender"),  # y parity other than 0 or 1: nothing recovers
    ]:
        changed = list(fields)
        changed[position] = value
        raw = typed_raw(kind, changed)
        assert_rejected(node.url, raw, SERVER_ERROR, expected, watch=(funded.address,))
    # a flipped bit in s recovers some other, unfunded account: refused all the same
    changed = list(fields)
    changed[-1] = (int.from_bytes(fields[-1], "big") ^ 1).to_bytes(32, "big")
    assert_rejected(
        node.url,
        typed_raw(kind, changed),
        SERVER_ERROR,
        "insufficient funds",
        watch=(funded.address,),
    )


def test_wrong_chain_id(node: Any, funded: Funded) -> None:
    for raw in (
        sign(funded.key, nonce=0, **fees(node.url), chainId=1),
        sign(funded.key, nonce=0, gasPrice=fees(node.url)["maxFeePerGas"], chainId=1),
    ):
        assert_rejected(
            node.url, raw, SERVER_ERROR, "invalid chain id for signer", watch=(funded.address,)
        )


def test_legacy_signature_without_chain_id(node: Any, funded: Funded) -> None:
    tx = {
        "nonce": 0,
        "to": SINK,
        "value": 1,
        "gas": 21_000,
        "gasPrice": fees(node.url)["maxFeePerGas"],
    }
    raw = bytes(Account.sign_transaction(tx, funded.key).raw_transaction)
    assert rlp.decode(raw)[6] in (b"\x1b", b"\x1c")  # v = 27 or 28
    message = assert_rejected(node.url, raw, SERVER_ERROR, watch=(funded.address,))
    assert message == "only replay-protected (EIP-155) transactions allowed over RPC"


def test_replaying_a_mined_transaction(node: Any, funded: Funded) -> None:
    before = state(node.url, FUNDER.address)
    message = expect_error(
        node.url,
        "eth_sendRawTransaction",
        ["0x" + funded.funding_raw.hex()],
        SERVER_ERROR,
        "nonce too low",
    )
    assert message.startswith("nonce too low")
    mined = result(node.url, "eth_getTransactionByHash", ["0x" + keccak(funded.funding_raw).hex()])
    assert mined is not None and mined["blockNumber"] is not None
    assert state(node.url, FUNDER.address) == before
    # a new transaction on a used nonce
    stale = sign(FUNDER.key, nonce=0, **fees(node.url))
    assert_rejected(node.url, stale, SERVER_ERROR, "nonce too low", watch=(FUNDER.address,))


def test_nonce_gap_is_queued_up_to_64(node: Any, funded: Funded) -> None:
    url = node.url
    nonce = int(result(url, "eth_getTransactionCount", [funded.address, "latest"]), 16)
    before = state(url, funded.address)

    gapped = sign(funded.key, nonce=nonce + 5, **fees(url))
    tx_hash = send(url, gapped)["result"]
    assert tx_hash == "0x" + keccak(gapped).hex()
    pooled = result(url, "eth_getTransactionByHash", [tx_hash])
    assert pooled is not None and pooled["blockNumber"] is None
    assert state(url, funded.address) == before  # queued: no block, nonces and balance as they were

    again = expect_error(url, "eth_sendRawTransaction", ["0x" + gapped.hex()], SERVER_ERROR)
    assert again == "already known"
    assert result(url, "eth_getTransactionByHash", [tx_hash]) == pooled

    farthest = sign(funded.key, nonce=nonce + 64, **fees(url))
    assert "result" in send(url, farthest)
    too_far = sign(funded.key, nonce=nonce + 65, **fees(url))
    message = assert_rejected(url, too_far, SERVER_ERROR, watch=(funded.address,))
    assert message.startswith("nonce too high")
    assert state(url, funded.address) == before


def test_replacement_needs_a_ten_percent_bump(node: Any, funded: Funded) -> None:
    url = node.url
    nonce = int(result(url, "eth_getTransactionCount", [funded.address, "latest"]), 16) + 7
    fee_cap, tip = 40 * GWEI, 2 * GWEI
    original = sign(funded.key, nonce=nonce, maxFeePerGas=fee_cap, maxPriorityFeePerGas=tip)
    original_hash = send(url, original)["result"]
    before = state(url, funded.address)

    for new_cap, new_tip in [
        (fee_cap * 105 // 100, tip * 105 // 100),  # 5%
        (fee_cap * 110 // 100 - 1, tip * 110 // 100),  # fee cap just short of 10%
        (fee_cap * 110 // 100, tip * 110 // 100 - 1),  # tip just short of 10%
        (fee_cap * 2, tip),  # only the fee cap raised
    ]:
        replacement = sign(
            funded.key, nonce=nonce, value=2, maxFeePerGas=new_cap, maxPriorityFeePerGas=new_tip
        )
        message = assert_rejected(url, replacement, SERVER_ERROR, watch=(funded.address,))
        assert message == "replacement transaction underpriced"
        assert result(url, "eth_getTransactionByHash", [original_hash]) is not None

    replacement = sign(
        funded.key,
        nonce=nonce,
        value=2,
        maxFeePerGas=fee_cap * 110 // 100,
        maxPriorityFeePerGas=tip * 110 // 100,
    )
    new_hash = send(url, replacement)["result"]
    assert result(url, "eth_getTransactionByHash", [new_hash]) is not None
    assert result(url, "eth_getTransactionByHash", [original_hash]) is None
    assert state(url, funded.address) == before


def test_insufficient_funds(node: Any, funded: Funded) -> None:
    pauper = Account.create()
    raw = sign(pauper.key, nonce=0, **fees(node.url))
    message = assert_rejected(node.url, raw, SERVER_ERROR, watch=(pauper.address,))
    assert message.startswith("insufficient funds for gas * price + value")
    balance = int(result(node.url, "eth_getBalance", [funded.address]), 16)
    raw = sign(funded.key, nonce=0, value=balance, **fees(node.url))
    message = assert_rejected(node.url, raw, SERVER_ERROR, watch=(funded.address,))
    assert message.startswith("insufficient funds for gas * price + value")


def test_intrinsic_gas_too_low(node: Any, funded: Funded) -> None:
    for fields in ({"gas": 20_999}, {"gas": 0}, {"gas": 21_000, "data": b"\x01" * 64}):
        raw = sign(funded.key, nonce=0, **fees(node.url), **fields)
        message = assert_rejected(node.url, raw, SERVER_ERROR, watch=(funded.address,))
        assert message.startswith("intrinsic gas too low")


def test_fee_cap_below_base_fee(node: Any, funded: Funded) -> None:
    base = int(head(node.url)["baseFeePerGas"], 16)
    assert base > 1
    for fields in (
        {"maxFeePerGas": 1, "maxPriorityFeePerGas": 1},
        {"maxFeePerGas": base // 2, "maxPriorityFeePerGas": 0},
        {"gasPrice": 1},
    ):
        raw = sign(funded.key, nonce=0, **fields)
        message = assert_rejected(node.url, raw, SERVER_ERROR, watch=(funded.address,))
        assert message.startswith("max fee per gas less than block base fee")


def test_priority_fee_above_fee_cap(node: Any, funded: Funded) -> None:
    raw = sign(funded.key, nonce=0, maxFeePerGas=10 * GWEI, maxPriorityFeePerGas=10 * GWEI + 1)
    message = assert_rejected(node.url, raw, SERVER_ERROR, watch=(funded.address,))
    assert message.startswith("max priority fee per gas higher than max fee per gas")


def test_gas_above_the_block_gas_limit(node: Any, funded: Funded) -> None:
    limit = int(head(node.url)["gasLimit"], 16)
    raw = sign(funded.key, nonce=0, gas=limit + 1, **fees(node.url))
    message = assert_rejected(node.url, raw, SERVER_ERROR, watch=(funded.address,))
    assert message == "exceeds block gas limit"


@pytest.mark.parametrize("kind", [0x03, 0x05, 0x12, 0x7F])
def test_unsupported_transaction_type(node: Any, funded: Funded, kind: int) -> None:
    good = sign(funded.key, nonce=0, **fees(node.url))
    raw = bytes([kind]) + good[1:]
    message = assert_rejected(node.url, raw, SERVER_ERROR, watch=(funded.address,))
    assert message == "transaction type not supported"


# ---------------------------------------------------------------------------- bugs elsewhere
@pytest.mark.parametrize(
    ("method", "params", "code", "fragment"),
    [
        (
            "eth_call",
            [{"from": SINK, "to": ADDRESS, "value": hex(2**255)}],
            SERVER_ERROR,
            "insufficient funds",
        ),
        (
            "eth_estimateGas",
            [{"from": SINK, "to": ADDRESS, "value": hex(2**70)}],
            SERVER_ERROR,
            "insufficient funds",
        ),
        ("eth_call", [{"to": ADDRESS, "gas": hex(2**80)}], INVALID_PARAMS, "gas"),
        (
            "eth_sendTransaction",
            [{"from": FUNDER.address, "to": SINK, "value": hex(2**200)}],
            SERVER_ERROR,
            "insufficient funds",
        ),
    ],
    ids=["call-value", "estimate-value", "call-gas", "send-value"],
)
def test_large_quantities_are_not_internal_errors(
    node: Any, method: str, params: list[Any], code: int, fragment: str
) -> None:
    expect_error(node.url, method, params, code, fragment)


def test_storage_slot_above_64_bits(node: Any) -> None:
    slot = "0x" + "ff" * 32
    assert result(node.url, "eth_getStorageAt", [ADDRESS, slot, "latest"]) == "0x" + "00" * 32


@pytest.mark.parametrize(
    "query",
    [{"fromBlock": 0}, {"toBlock": False}, {"fromBlock": ""}, {"topics": {}}],
    ids=["fromBlock-number", "toBlock-false", "fromBlock-empty", "topics-object"],
)
def test_log_filter_fields_of_the_wrong_type(node: Any, query: dict[str, Any]) -> None:
    expect_error(node.url, "eth_getLogs", [query], INVALID_PARAMS, "filter")


def test_gapped_transactions_count_as_queued(node: Any, funded: Funded) -> None:
    nonce = int(result(node.url, "eth_getTransactionCount", [funded.address, "latest"]), 16)
    gapped = sign(funded.key, nonce=nonce + 9, **fees(node.url))
    assert "result" in send(node.url, gapped)
    assert int(result(node.url, "txpool_status", [])["queued"], 16) >= 1


def test_high_s_signature_is_rejected(fresh_node: Any) -> None:
    url = fresh_node.url
    sender = Account.from_key(DEV_KEYS[0])
    good = sign(sender.key, nonce=0, **fees(url))
    kind, fields = typed_fields(good)
    fields[-3] = b"" if fields[-3] == b"\x01" else b"\x01"  # flip y parity ...
    fields[-1] = (SECP256K1_N - int.from_bytes(fields[-1], "big")).to_bytes(32, "big")  # ... and s
    assert_rejected(url, typed_raw(kind, fields), SERVER_ERROR, watch=(sender.address,))


def test_an_overspending_sender_does_not_stall_the_chain(fresh_node: Any) -> None:
    url = fresh_node.url
    funder, bystander = Account.from_key(DEV_KEYS[0]), Account.from_key(DEV_KEYS[1])
    spender = Account.create()
    fee = fees(url)
    funding = send(url, sign(funder.key, nonce=0, to=spender.address, value=10**17, **fee))
    assert wait_receipt(url, funding["result"]) is not None
    # each transaction alone is affordable, both together are not; nonce 1 first so that
    # both are pooled when the block is built
    cost = 21_000 * fee["maxFeePerGas"]
    second = send(url, sign(spender.key, nonce=1, value=10**17 - cost, **fee))
    first = send(url, sign(spender.key, nonce=0, value=10**17 - cost, **fee))
    assert "result" in first and "result" in second
    assert wait_receipt(url, first["result"], timeout=5) is not None
    later = send(url, sign(bystander.key, nonce=0, **fees(url)))
    assert wait_receipt(url, later["result"], timeout=5) is not None
