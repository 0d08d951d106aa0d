"""Crash recovery: kill -9 a busy node at random moments and check that nothing was lost.

One long randomized loop on one data directory. Each round streams signed transfers from a
few accounts (in bursts, several senders at once), polls receipts the way a client would,
kills the whole node (host and enclave) with SIGKILL after a random delay, restarts it on the
same directory and checks what the client was promised:

* the node comes back (its start-up runs SQLite's ``PRAGMA quick_check``) and logs no error;
* its head is at least the highest block the client saw (a block number or a receipt's);
* every receipt the client saw before the kill is returned again, identical;
* every transaction hash the node acknowledged is mined or still pending, and soon mined;
* the header chain links by parentHash, every header hashes to its reported hash, and every
  block's seal recovers to the validator; blocks seen in earlier rounds are unchanged;
* nonces equal the number of each account's mined transactions, and balances equal what the
  mined receipts imply (value, gas, priority fees to the validator);
* a copy of the ledger file taken while the node is dead passes ``PRAGMA integrity_check`` and
  keeps no pool row for a transaction whose receipt the client had seen.

Set ``CRASH_SEED`` to replay a round's random choices (timing still varies).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import CHAIN_ID, REPO, NodeProcess, rpc
from eth_account import Account
from eth_utils import to_checksum_address

from gateway.consensus.seal import recover_sealer
from gateway.devaccounts import DEV_BALANCE_WEI, DEV_MNEMONIC, derive
from gateway.sealcheck import header_hash

ROUNDS = 10
BUDGET_S = 80.0  # stop starting new rounds after this; at least MIN_ROUNDS always run
MIN_ROUNDS = 5
SENDERS = [Account.from_key(a.private_key) for a in derive(DEV_MNEMONIC, 4)]
# fresh addresses, not in the genesis allocation: they hold exactly what they were sent
RECIPIENTS = [f"0x{'c0c0' * 8}{i:08x}" for i in range(1, 4)]
MAX_FEE = 50 * 10**9
TIP = 10**9
TRANSFER_GAS = 21_000
LEDGER_FILE = "ledger.sqlite"
CLIENT_ERRORS = (OSError, http.client.HTTPException, ValueError)


# ---------------------------------------------------------------------------- JSON-RPC


def batch(url: str, calls: list[tuple[str, list[Any]]], chunk: int = 400) -> list[Any]:
    """Results of many calls, in order, sent as JSON-RPC batches; any error object raises."""
    out: list[Any] = []
    for start in range(0, len(calls), chunk):
        part = calls[start : start + chunk]
        body = json.dumps(
            [
                {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
                for i, (method, params) in enumerate(part)
            ]
        ).encode()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            replies = json.loads(resp.read())
        assert isinstance(replies, list), replies
        by_id = {r["id"]: r for r in replies}
        for i, (method, params) in enumerate(part):
            reply = by_id[i]
            if "error" in reply:
                raise AssertionError(f"{method}{params}: {reply['error']}")
            out.append(reply["result"])
    return out


def call(url: str, method: str, params: list[Any] | None = None) -> Any:
    reply = rpc(url, method, params or [])
    assert "error" not in reply, f"{method}: {reply['error']}"
    return reply["result"]


def sign_transfer(sender: Any, nonce: int, to: str, value: int) -> tuple[str, str]:
    signed = Account.sign_transaction(
        {
            "type": 2,
            "chainId": CHAIN_ID,
            "nonce": nonce,
            "to": to,
            "value": value,
            "gas": TRANSFER_GAS,
            "maxFeePerGas": MAX_FEE,
            "maxPriorityFeePerGas": TIP,
        },
        sender.key,
    )
    return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()


# ---------------------------------------------------------------------------- the client


@dataclass
class ClientBook:
    """What the node promised the client, across all rounds."""

    acked: dict[str, tuple[int, int]] = field(default_factory=dict)  # hash -> (sender, nonce)
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)  # seen before a kill
    max_block: int = 0  # highest block number the node reported (eth_blockNumber or receipt)
    errors: list[str] = field(default_factory=list)  # failures while the node was alive
    lock: threading.Lock = field(default_factory=threading.Lock)


class Traffic:
    """Sender threads (one per account) and a receipt poller against one running node."""

    def __init__(self, url: str, book: ClientBook, nonces: list[int], rng: random.Random):
        self.url = url
        self.book = book
        self.nonces = nonces
        self.killed = threading.Event()
        self.seeds = [rng.getrandbits(32) for _ in SENDERS]
        self.sent = 0
        self.threads = [
            threading.Thread(target=self._guard, args=(self._send, i), daemon=True)
            for i in range(len(SENDERS))
        ]
        self.threads.append(threading.Thread(target=self._guard, args=(self._poll,), daemon=True))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        """Call after ``killed`` is set and the node is dead."""
        for t in self.threads:
            t.join(timeout=30)
            assert not t.is_alive(), "a client thread hung after the node was killed"

    def _guard(self, target: Any, *args: Any) -> None:
        try:
            target(*args)
        except Exception as exc:  # a bug in the test itself: never swallow it
            with self.book.lock:
                self.book.errors.append(f"client thread crashed: {exc!r}")

    def _fail(self, what: str) -> None:
        if not self.killed.is_set():
            with self.book.lock:
                self.book.errors.append(what)

    def _send(self, index: int) -> None:
        rng = random.Random(self.seeds[index])
        sender = SENDERS[index]
        nonce = self.nonces[index]
        while not self.killed.is_set():
            for _ in range(rng.randint(1, 8)):  # a burst, back to back
                if self.killed.is_set():
                    return
                to = to_checksum_address(rng.choice(RECIPIENTS))
                raw, tx_hash = sign_transfer(sender, nonce, to, rng.randint(1, 10**15))
                try:
                    reply = rpc(self.url, "eth_sendRawTransaction", [raw])
                except CLIENT_ERRORS as exc:  # the node died under us: outcome unknown
                    self._fail(f"send {tx_hash}: {exc!r}")
                    return
                if "error" in reply:
                    self._fail(f"send {sender.address} nonce {nonce}: {reply['error']}")
                    return
                if reply["result"] != tx_hash:
                    self._fail(f"node acknowledged {reply['result']} for {tx_hash}")
                    return
                with self.book.lock:
                    self.book.acked[tx_hash] = (index, nonce)
                    self.sent += 1
                nonce += 1
            time.sleep(rng.uniform(0, 0.12))

    def _poll(self) -> None:
        while not self.killed.is_set():
            with self.book.lock:
                waiting = [h for h in self.book.acked if h not in self.book.receipts][:300]
            calls = [("eth_blockNumber", [])] + [
                ("eth_getTransactionReceipt", [h]) for h in waiting
            ]
            try:
                results = batch(self.url, calls)
            except (*CLIENT_ERRORS, AssertionError) as exc:
                self._fail(f"poll: {exc!r}")
                return
            with self.book.lock:
                self.book.max_block = max(self.book.max_block, int(results[0], 16))
                for tx_hash, receipt in zip(waiting, results[1:], strict=True):
                    if receipt is not None:
                        self.book.receipts[tx_hash] = receipt
                        self.book.max_block = max(
                            self.book.max_block, int(receipt["blockNumber"], 16)
                        )
            time.sleep(0.02)


# ---------------------------------------------------------------------------- checks


def inspect_dead_ledger(data_dir: Path, scratch: Path, seen: set[str]) -> int:
    """Check a copy of the ledger as the kill left it; returns its committed head number.

    A copy, because opening the real file would recover and checkpoint its WAL before the
    node does, and the node's own recovery is what is under test.
    """
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir()
    for suffix in ("", "-wal"):
        src = data_dir / (LEDGER_FILE + suffix)
        if src.exists():
            shutil.copy2(src, scratch / src.name)
    conn = sqlite3.connect(str(scratch / LEDGER_FILE))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        pooled = {"0x" + bytes(h).hex() for (h,) in conn.execute("SELECT hash FROM pool")}
        head = conn.execute("SELECT MAX(number) FROM blocks").fetchone()[0]
    finally:
        conn.close()
    mined_but_pooled = pooled & seen
    assert not mined_but_pooled, (
        f"the pool table still holds {len(mined_but_pooled)} transaction(s) whose receipt "
        f"the client saw: {sorted(mined_but_pooled)[:3]}"
    )
    return int(head)


def check_promises_kept(url: str, book: ClientBook, earlier: set[str], rng: random.Random) -> None:
    """Right after the restart: nothing the client was told has gone missing.

    Receipts first seen in this round are all fetched again; of those from earlier rounds
    (fetched again after their own restart, and covered since by the verified header chain,
    whose receipts roots commit to them) a random sample.
    """
    head = int(call(url, "eth_blockNumber"), 16)
    assert head >= book.max_block, (
        f"the node restarted at block {head}, but the client had seen block {book.max_block}"
    )
    old = sorted(earlier)
    sample = set(rng.sample(old, min(100, len(old))))
    seen = [(h, r) for h, r in book.receipts.items() if h not in earlier or h in sample]
    again = batch(url, [("eth_getTransactionReceipt", [h]) for h, _ in seen])
    for (tx_hash, before), after in zip(seen, again, strict=True):
        assert after == before, (
            f"the receipt of {tx_hash} changed across the crash:\nbefore {before}\nafter  {after}"
        )
    unmined = [h for h in book.acked if h not in book.receipts]
    receipts = batch(url, [("eth_getTransactionReceipt", [h]) for h in unmined])
    still = [h for h, r in zip(unmined, receipts, strict=True) if r is None]
    txs = batch(url, [("eth_getTransactionByHash", [h]) for h in still])
    lost = [h for h, tx in zip(still, txs, strict=True) if tx is None]
    assert not lost, (
        f"{len(lost)} acknowledged transaction(s) are neither mined nor pending after the "
        f"restart: {lost[:5]}"
    )


def wait_all_mined(url: str, book: ClientBook, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    missing = [h for h in book.acked if h not in book.receipts]
    while True:
        receipts = batch(url, [("eth_getTransactionReceipt", [h]) for h in missing])
        for tx_hash, receipt in zip(missing, receipts, strict=True):
            if receipt is not None:
                book.receipts[tx_hash] = receipt
        missing = [h for h in missing if h not in book.receipts]
        if not missing:
            return
        if time.time() > deadline:
            pool = call(url, "coco_nodeInfo")["pendingTransactions"]
            raise AssertionError(
                f"{len(missing)} acknowledged transaction(s) still unmined after {timeout} s "
                f"(pool size {pool}): {missing[:5]}"
            )
        time.sleep(0.1)


@dataclass
class ChainView:
    """The chain as verified so far: block hashes by number and every mined transaction."""

    hashes: list[str] = field(default_factory=list)
    mined: dict[str, dict[str, Any]] = field(default_factory=dict)  # tx hash -> receipt+

    @property
    def head(self) -> int:
        return len(self.hashes) - 1


def check_chain(url: str, view: ChainView, rng: random.Random, *, full: bool = False) -> None:
    """Extend ``view`` to the node's head, verifying every new block.

    New blocks: each header hashes to its reported hash, links to its parent by parentHash,
    and carries a seal that recovers to the validator. The first new block must link to the
    last verified one, so the verified prefix is committed to by the new head; a sample of
    old blocks (all of them with ``full``) is also fetched again and must be unchanged.
    """
    head = int(call(url, "eth_blockNumber"), 16)
    assert head >= view.head, f"the head went back from {view.head} to {head}"
    validator = call(url, "coco_nodeInfo")["validators"][0].lower()
    if not view.hashes:
        genesis = call(url, "eth_getBlockByNumber", ["0x0", False])
        assert "0x" + header_hash(genesis).hex() == genesis["hash"], "genesis header hash"
        view.hashes.append(genesis["hash"])
    old = range(view.head + 1)
    recheck = list(old) if full else sorted(rng.sample(old, min(20, len(old))))
    recheck = [n for n in recheck if n > 0]
    fresh = list(range(view.head + 1, head + 1))
    numbers = recheck + fresh
    blocks = batch(url, [("eth_getBlockByNumber", [hex(n), True]) for n in numbers])
    seals = batch(url, [("coco_getBlockSeal", [hex(n)]) for n in numbers if n > 0])
    seal_of = dict(zip([n for n in numbers if n > 0], seals, strict=True))
    by_number = dict(zip(numbers, blocks, strict=True))
    for n in numbers:
        block = by_number[n]
        assert block is not None and int(block["number"], 16) == n, f"block {n}: {block}"
        assert "0x" + header_hash(block).hex() == block["hash"], f"block {n} header hash"
        parent = view.hashes[n - 1] if n - 1 <= view.head else by_number[n - 1]["hash"]
        assert block["parentHash"] == parent, f"block {n} does not link to block {n - 1}"
        seal = seal_of[n]
        assert seal is not None and seal["blockHash"] == block["hash"], f"block {n} seal"
        sealer = recover_sealer(
            CHAIN_ID, bytes.fromhex(block["hash"][2:]), bytes.fromhex(seal["seal"][2:])
        )
        assert "0x" + sealer.hex() == validator, f"block {n} sealed by 0x{sealer.hex()}"
        assert seal["sealer"].lower() == validator, f"block {n}: {seal}"
        if n <= view.head:
            assert view.hashes[n] == block["hash"], (
                f"block {n} changed: {view.hashes[n]} -> {block['hash']}"
            )
    with_txs = [by_number[n] for n in fresh if by_number[n]["transactions"]]
    block_receipts = batch(url, [("eth_getBlockReceipts", [b["hash"]]) for b in with_txs])
    for block, receipts in zip(with_txs, block_receipts, strict=True):
        assert [r["transactionHash"] for r in receipts] == [
            tx["hash"] for tx in block["transactions"]
        ]
        for tx, receipt in zip(block["transactions"], receipts, strict=True):
            assert tx["hash"] not in view.mined, f"{tx['hash']} mined twice"
            view.mined[tx["hash"]] = {
                **receipt,
                "nonce": tx["nonce"],
                "value": tx["value"],
                "baseFee": block["baseFeePerGas"],
            }
    view.hashes.extend(by_number[n]["hash"] for n in fresh)


def check_accounts(url: str, view: ChainView, book: ClientBook) -> list[int]:
    """Nonces and balances match the mined transactions; returns each sender's next nonce."""
    missing = set(book.acked) - set(view.mined)
    assert not missing, f"acknowledged but not in any block: {sorted(missing)[:5]}"
    validator = call(url, "coco_nodeInfo")["validators"][0].lower()
    senders = [s.address.lower() for s in SENDERS]
    expected: dict[str, int] = dict.fromkeys(senders, DEV_BALANCE_WEI)
    expected.update(dict.fromkeys(RECIPIENTS, 0))
    expected[validator] = 0
    nonces: dict[str, list[int]] = {s: [] for s in senders}
    for tx_hash, r in view.mined.items():
        sender = r["from"].lower()
        assert sender in nonces, f"{tx_hash} from an unknown account {sender}"
        assert r["status"] == "0x1", f"{tx_hash} failed"
        nonces[sender].append(int(r["nonce"], 16))
        gas, price = int(r["gasUsed"], 16), int(r["effectiveGasPrice"], 16)
        value = int(r["value"], 16)
        expected[sender] -= value + gas * price
        expected[r["to"].lower()] += value
        expected[validator] += gas * (price - int(r["baseFee"], 16))
    addresses = list(expected)
    calls: list[tuple[str, list[Any]]] = [("eth_getBalance", [a, "latest"]) for a in addresses]
    calls += [("eth_getTransactionCount", [s, "latest"]) for s in senders]
    results = batch(url, calls)
    balances = dict(zip(addresses, (int(b, 16) for b in results[: len(addresses)]), strict=True))
    for address in addresses:
        assert balances[address] == expected[address], (
            f"{address}: balance {balances[address]}, the mined receipts imply {expected[address]}"
        )
    counts = [int(c, 16) for c in results[len(addresses) :]]
    for sender, count in zip(senders, counts, strict=True):
        assert sorted(nonces[sender]) == list(range(len(nonces[sender]))), (
            f"{sender}: mined nonces are not 0..n-1"
        )
        assert count == len(nonces[sender]), (
            f"{sender}: nonce {count} but {len(nonces[sender])} mined transactions"
        )
    return counts


def assert_clean_log(text: str, what: str) -> None:
    """No error, and no pooled transaction found invalid on restart: every row in the pool
    table is a transaction still waiting (a row left behind for a mined one would show here)."""
    markers = (" ERROR ", " CRITICAL ", "Traceback", "dropped pooled tx")
    bad = [line for line in text.splitlines() if any(m in line for m in markers)]
    assert not bad, f"{what}: the node logged errors:\n" + "\n".join(bad[:20]) + "\n" + text[-3000:]


# ---------------------------------------------------------------------------- the test


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill9_loop_loses_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    node = NodeProcess(data_dir).start()
    book = ClientBook()
    view = ChainView()
    nonces = [0] * len(SENDERS)
    started = time.monotonic()
    rounds = 0
    log_start = 0
    stats: list[str] = []
    try:
        while rounds < ROUNDS and (rounds < MIN_ROUNDS or time.monotonic() - started < BUDGET_S):
            rounds += 1
            round_start = time.monotonic()
            where = f"seed {seed}, round {rounds}"
            # 1. traffic, then SIGKILL at a random moment: right after start-up (during pool
            #    restoration and mining of the backlog) or mid-stream
            delay = rng.uniform(0.0, 0.15) if rng.random() < 0.2 else rng.uniform(0.2, 2.5)
            earlier = set(book.receipts)
            traffic = Traffic(node.url, book, nonces, rng)
            traffic.start()
            time.sleep(delay)
            pre_kill_log = node.log()
            traffic.killed.set()
            node.kill9()
            traffic.stop()
            assert not book.errors, f"{where}: client errors while the node was alive: " + (
                "; ".join(book.errors[:5])
            )
            assert_clean_log(pre_kill_log[log_start:], where)
            # 2. the file as the kill left it
            on_disk = inspect_dead_ledger(data_dir, tmp_path / "copy", set(book.receipts))
            assert on_disk >= book.max_block, (
                f"{where}: ledger head {on_disk} < block {book.max_block} seen by the client"
            )
            # 3. restart on the same directory and check every promise
            log_start = len(node.log())
            node.start()
            check_promises_kept(node.url, book, earlier, rng)
            wait_all_mined(node.url, book)
            check_chain(node.url, view, rng)
            nonces = check_accounts(node.url, view, book)
            assert_clean_log(node.log()[log_start:], f"{where}, after the restart")
            stats.append(
                f"round {rounds}: kill after {delay:.2f} s, {traffic.sent} acked, head {view.head},"
                f" {time.monotonic() - round_start:.1f} s"
            )
        # a last audit of the whole chain, then the external seal checker, which agrees for
        # the genesis, a middle block and the head
        check_chain(node.url, view, rng, full=True)
        head = view.head
        for number in (0, head // 2, head):
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "verify-seal",
                    "--rpc",
                    node.url,
                    str(number),
                ],
                capture_output=True,
                text=True,
                cwd=str(REPO),
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
        assert len(book.acked) > 10 * rounds, f"too little traffic: {stats}"
    finally:
        code = node.stop()
        print(f"seed {seed}: {len(book.acked)} acked txs, " + "; ".join(stats))
    assert code == 0, node.log()[-3000:]
    conn = sqlite3.connect(str(data_dir / LEDGER_FILE))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT COUNT(*) FROM pool").fetchone() == (0,)
    finally:
        conn.close()
