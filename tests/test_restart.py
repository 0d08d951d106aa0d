"""Clean restarts: what a node keeps across SIGINT and a new start on the same data directory.

Every test runs its own node processes on its own directory (``tmp_path``).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CHAIN_ID, DEV_KEYS, NodeProcess, rpc
from eth_account import Account
from eth_utils import to_checksum_address

ALICE, BOB, CAROL = (Account.from_key(k) for k in DEV_KEYS)
SINK = to_checksum_address("0x" + "5e" * 20)
GWEI = 10**9


def call(url: str, method: str, params: list[Any] | None = None) -> Any:
    reply = rpc(url, method, params or [])
    assert "error" not in reply, f"{method}{params}: {reply['error']}"
    return reply["result"]


def send(
    url: str,
    sender: Any,
    nonce: int,
    *,
    to: str | None = SINK,
    value: int = 10**15,
    gas: int = 21_000,
    data: bytes = b"",
    max_fee: int = 50 * GWEI,
    tip: int = GWEI,
) -> str:
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": CHAIN_ID,
        "nonce": nonce,
        "value": value,
        "gas": gas,
        "data": data,
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": tip,
    }
    if to is not None:
        tx["to"] = to
    signed = Account.sign_transaction(tx, sender.key)
    tx_hash = call(url, "eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
    assert tx_hash == "0x" + bytes(signed.hash).hex()
    return tx_hash


def wait_receipt(url: str, tx_hash: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        receipt = call(url, "eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            return receipt
        time.sleep(0.05)
    raise AssertionError(f"{tx_hash} not mined within {timeout} s")


def block_number(url: str) -> int:
    return int(call(url, "eth_blockNumber"), 16)


def snapshot(url: str, tx_hashes: list[str]) -> dict[str, Any]:
    """Everything a client could have recorded about the chain."""
    head = block_number(url)
    accounts = [ALICE.address, BOB.address, CAROL.address, SINK]
    return {
        "chainId": call(url, "eth_chainId"),
        "netVersion": call(url, "net_version"),
        "head": head,
        "blocks": [call(url, "eth_getBlockByNumber", [hex(n), True]) for n in range(head + 1)],
        "receipts": [call(url, "eth_getTransactionReceipt", [h]) for h in tx_hashes],
        "txs": [call(url, "eth_getTransactionByHash", [h]) for h in tx_hashes],
        "balances": [call(url, "eth_getBalance", [a, "latest"]) for a in accounts],
        "nonces": [call(url, "eth_getTransactionCount", [a, "latest"]) for a in accounts],
        "seal": call(url, "coco_getBlockSeal", [hex(head)]),
        "validators": call(url, "coco_nodeInfo")["validators"],
    }


_runs = 0


def launch(data: Path, *extra: str, start: bool = True) -> NodeProcess:
    """A node on ``data`` with a log file of its own run (the default log is per directory)."""
    global _runs
    _runs += 1
    node = NodeProcess(data, *extra)
    node.log_path = data.parent / f"run{_runs}-node.log"
    return node.start() if start else node


def fee_base(url: str) -> int:
    """The base fee of the next block."""
    return int(call(url, "eth_feeHistory", ["0x1", "latest", []])["baseFeePerGas"][-1], 16)


def stop_cleanly(node: NodeProcess) -> None:
    code = node.stop()
    log = node.log()
    assert code == 0, f"SIGINT should stop the node with exit code 0, got {code}:\n{log[-3000:]}"
    assert log.rstrip().splitlines()[-1].endswith("node stopped cleanly"), log[-3000:]
    assert_no_errors(log)


def assert_no_errors(log: str) -> None:
    bad = [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line]
    assert not bad, "\n".join(bad) + "\n" + log[-3000:]


# --------------------------------------------------------------------------------------------


def test_clean_restart_keeps_the_chain(tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = launch(data)
    try:
        hashes = [send(node.url, ALICE, n) for n in range(3)]
        hashes += [send(node.url, BOB, n, value=n + 1) for n in range(2)]
        for h in hashes:
            assert wait_receipt(node.url, h)["status"] == "0x1"
        before = snapshot(node.url, hashes)
    finally:
        stop_cleanly(node)
    assert before["head"] >= 1
    assert before["chainId"] == hex(CHAIN_ID)

    node = launch(data)
    try:
        after = snapshot(node.url, hashes)
        for key in before:
            assert after[key] == before[key], f"{key} changed across a clean restart"
        assert f"resumed at block {before['head']} " in node.log()
        # and the chain goes on from where it was
        tx_hash = send(node.url, ALICE, 3)
        receipt = wait_receipt(node.url, tx_hash)
        block = call(node.url, "eth_getBlockByNumber", [receipt["blockNumber"], False])
        assert int(block["number"], 16) == before["head"] + 1
        assert block["parentHash"] == before["blocks"][-1]["hash"]
    finally:
        stop_cleanly(node)


def test_restart_with_another_chain_id_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = launch(data)
    try:
        wait_receipt(node.url, send(node.url, ALICE, 0))
        genesis = call(node.url, "eth_getBlockByNumber", ["0x0", False])["hash"]
        head = block_number(node.url)
    finally:
        stop_cleanly(node)

    wrong = launch(data, "--chain-id", "1337", start=False)
    with pytest.raises(RuntimeError, match="exited early"):
        wrong.start()
    assert wrong.proc is not None
    code = wrong.proc.wait(30)
    assert code != 0, "a refused start must exit with a non-zero code"

    # the refusal left the directory as it was
    node = launch(data)
    try:
        assert call(node.url, "eth_chainId") == hex(CHAIN_ID)
        assert call(node.url, "eth_getBlockByNumber", ["0x0", False])["hash"] == genesis
        assert block_number(node.url) == head
    finally:
        stop_cleanly(node)


def test_chain_id_refusal_says_why(tmp_path: Path) -> None:
    data = tmp_path / "data"
    launch(data).stop()
    wrong = launch(data, "--chain-id", "1337", start=False)
    with pytest.raises(RuntimeError):
        wrong.start()
    assert wrong.proc is not None
    assert wrong.proc.wait(30) != 0
    log = wrong.log()
    assert "Chain ID:" not in log, log  # refused before the banner, and in one line
    assert len(log.strip().splitlines()) == 1, log
    assert f"holds chain {CHAIN_ID}, not 1337" in log, log
    assert f"--chain-id {CHAIN_ID}" in log, log
    assert "Traceback" not in log, log
    assert "exited unexpectedly" not in log and "enclave is gone" not in log, log


def test_pending_gapped_transactions_survive_a_clean_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = launch(data)
    try:
        wait_receipt(node.url, send(node.url, CAROL, 0))
        # nonces 2 and 3 wait for the missing nonce 1
        gapped = [send(node.url, CAROL, n) for n in (2, 3)]
        head = block_number(node.url)
        time.sleep(1.5)  # give automine every chance to (wrongly) include them
        assert block_number(node.url) == head
        for h in gapped:
            tx = call(node.url, "eth_getTransactionByHash", [h])
            assert tx is not None and tx["blockHash"] is None
        assert call(node.url, "coco_nodeInfo")["pendingTransactions"] == 2
    finally:
        stop_cleanly(node)

    node = launch(data)
    try:
        assert "restored 2 pending transactions (0 no longer valid)" in node.log()
        assert call(node.url, "coco_nodeInfo")["pendingTransactions"] == 2
        for h in gapped:
            tx = call(node.url, "eth_getTransactionByHash", [h])
            assert tx is not None and tx["blockHash"] is None, tx
        assert call(node.url, "eth_getTransactionCount", [CAROL.address, "latest"]) == "0x1"
        assert call(node.url, "eth_getTransactionCount", [CAROL.address, "pending"]) == "0x1"
        filler = send(node.url, CAROL, 1)
        receipts = [wait_receipt(node.url, h) for h in [filler, *gapped]]
        assert all(r["status"] == "0x1" for r in receipts)
        assert call(node.url, "eth_getTransactionCount", [CAROL.address, "latest"]) == "0x4"
        assert call(node.url, "coco_nodeInfo")["pendingTransactions"] == 0
    finally:
        stop_cleanly(node)


def test_pending_transactions_the_state_outgrew_survive_a_restart(tmp_path: Path) -> None:
    """A pending tx whose fee cap the base fee has outgrown, or whose cost its sender's balance
    no longer covers, still waits in a running node's pool (the base fee can fall, funds can
    arrive); a restart must not turn either into a silent drop."""
    data = tmp_path / "data"
    node = launch(data)
    try:
        wait_receipt(node.url, send(node.url, ALICE, 0))
        # Carol's nonce 2 (5 ETH) is admitted against her full balance, then her nonce 0
        # spends nearly all of it: nonce 2 waits for nonce 1 and for money
        poor = send(node.url, CAROL, 2, value=5 * 10**18)
        wait_receipt(node.url, send(node.url, CAROL, 0, value=9_999 * 10**18))
        assert int(call(node.url, "eth_getBalance", [CAROL.address, "latest"]), 16) < 10**18
        base_fee = fee_base(node.url)
        # Alice's nonce 2 waits for nonce 1 and is priced exactly at today's base fee
        tight = send(node.url, ALICE, 2, max_fee=base_fee, tip=0)
        # Bob fills a block: a creation whose init code is INVALID burns all its gas, the
        # most one transaction may carry (EIP-7825), above the 15M target, so the base fee
        # rises by about 1.5%
        burn = wait_receipt(
            node.url,
            send(node.url, BOB, 0, to=None, value=0, data=b"\xfe", gas=2**24, max_fee=10 * GWEI),
        )
        assert burn["status"] == "0x0" and int(burn["gasUsed"], 16) == 2**24
        assert fee_base(node.url) > base_fee
        for h in (tight, poor):  # both still pending in the running node
            tx = call(node.url, "eth_getTransactionByHash", [h])
            assert tx is not None and tx["blockHash"] is None
    finally:
        stop_cleanly(node)

    node = launch(data)
    try:
        for h in (tight, poor):
            tx = call(node.url, "eth_getTransactionByHash", [h])
            assert tx is not None, f"the restart dropped the accepted pending tx {h}:\n" + (
                "\n".join(line for line in node.log().splitlines() if "dropped" in line)
            )
        assert "restored 2 pending transactions (0 no longer valid)" in node.log()
        # small blocks bring the base fee back down; then Alice fills her gap
        nonce = 1
        while fee_base(node.url) > base_fee:
            wait_receipt(node.url, send(node.url, BOB, nonce))
            nonce += 1
        assert wait_receipt(node.url, send(node.url, ALICE, 1))["status"] == "0x1"
        assert wait_receipt(node.url, tight)["status"] == "0x1"
        # Bob funds Carol, Carol fills her gap
        wait_receipt(node.url, send(node.url, BOB, nonce, to=CAROL.address, value=10 * 10**18))
        assert wait_receipt(node.url, send(node.url, CAROL, 1, value=0))["status"] == "0x1"
        assert wait_receipt(node.url, poor)["status"] == "0x1"
    finally:
        stop_cleanly(node)


def test_restart_with_a_block_time_produces_empty_blocks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = launch(data)  # automine: blocks only for transactions
    try:
        wait_receipt(node.url, send(node.url, ALICE, 0))
        head = block_number(node.url)
        last = call(node.url, "eth_getBlockByNumber", [hex(head), False])
        time.sleep(2.5)
        assert block_number(node.url) == head, "automine made a block without transactions"
    finally:
        stop_cleanly(node)

    node = launch(data, "--block-time", "1")
    try:
        assert "a block every 1 s" in node.log()
        deadline = time.time() + 15
        while block_number(node.url) < head + 3 and time.time() < deadline:
            time.sleep(0.2)
        now = block_number(node.url)
        assert now >= head + 3, f"only {now - head} block(s) in 15 s with --block-time 1"
        blocks = [
            call(node.url, "eth_getBlockByNumber", [hex(n), False]) for n in range(head, now + 1)
        ]
        assert blocks[0]["hash"] == last["hash"]
        for parent, child in itertools.pairwise(blocks):
            assert child["parentHash"] == parent["hash"]
            assert child["transactions"] == []
            assert int(child["timestamp"], 16) > int(parent["timestamp"], 16)
        # roughly one per second, not a burst
        span = int(blocks[-1]["timestamp"], 16) - int(blocks[1]["timestamp"], 16)
        assert span >= len(blocks) - 3, [int(b["timestamp"], 16) for b in blocks]
    finally:
        stop_cleanly(node)
