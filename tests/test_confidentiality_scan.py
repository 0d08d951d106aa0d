"""Confidentiality at rest: nothing a transaction carried is readable in what the node wrote.

A real node (a ``coco-gateway dev`` process on a fresh data directory) is driven by a stock
client (web3.py, plain signed transactions, no envelopes) with a unique random marker in
every place a transaction can carry a secret:

* calldata: ``Events.echo(marker)``, ``Events.note(marker)``, and a transaction left waiting
  in the pool behind a nonce gap (so the pool table holds it when the node stops);
* constructor arguments and contract storage: ``Token(name, symbol, supply)`` with the
  marker as name, a marker-derived symbol and the marker's bytes as the supply, which the
  constructor stores; ``Events.setValue(uint)`` stores the marker's bytes as a uint256;
* event data and topics: ``Note(from, text)`` carries the marker string, ``ValueChanged``
  the marker's uint as data, then (after a second ``setValue``) as an indexed topic; the
  token's ``Transfer`` carries the supply;
* revert data: ``Events`` has no revert whose *reason string* the caller chooses
  (``failRequire`` has a fixed one), so the revert carries the marker in the code of the
  custom error ``Custom(code, why)``: ``failCustom(marker uint)`` is mined (status 0), and
  also sent as ``eth_call`` and ``eth_estimateGas``, whose revert data goes back to the
  client only.

Then the node is stopped, cleanly (SIGINT) or with kill -9 of the host and enclave (the WAL
then still holds the last pages), and every byte it wrote is scanned: every file under the
data directory (``ledger.sqlite``, ``-wal``, ``-shm``, ``sealing.key``) and its log (stdout
and stderr of the host and the enclave), for the marker as raw bytes, as lower- and
upper-case hex, as an ABI string argument (length word and right-padded data), as a uint256
word (left-padded) and as a right-padded 32-byte word (and their hex forms). None may be
found. The same scenario with ``--insecure-plaintext-storage`` finds the marker in the
data directory, which shows that the scan can fail; the log must stay clean there too.

The data directory is also scanned for py-evm's own kv keys, which sealed storage blinds
(ledger format 3): ``keccak(code)`` of the deployed ``Events`` contract, the storage-trie
root node its one storage value implies (what someone guessing a small value would build
and hash), a mined transaction's ``transaction-hash-to-block:`` lookup key and that prefix
alone. None may be found in a sealed ledger; all are found in a plaintext one.

Not scanned: SQLite's temporary files (sorts, large transactions; made in the temp
directory and unlinked at once) and what the operating system may have swapped out.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rlp
from artifacts import load_artifact
from conftest import DEV_KEYS, NodeProcess
from eth.db.schema import SchemaV1
from eth_account import Account
from eth_utils import keccak
from trie import HexaryTrie
from web3 import Web3

ALICE = Account.from_key(DEV_KEYS[0])
BOB = Account.from_key(DEV_KEYS[1])
CAROL = Account.from_key(DEV_KEYS[2])


@dataclass(frozen=True)
class Marker:
    text: str

    @property
    def raw(self) -> bytes:
        return self.text.encode()

    @property
    def uint(self) -> int:
        return int.from_bytes(self.raw, "big")

    @property
    def symbol(self) -> str:
        return self.text[::-1]  # marker-derived: the reversed string, scanned as well

    def forms(self) -> dict[str, bytes]:
        """Every encoding the scan looks for, by name."""
        encodings: dict[str, bytes] = {}
        for label, value in (("marker", self.raw), ("symbol", self.symbol.encode())):
            words = {
                "raw": value,
                "uint256 word": value.rjust(32, b"\0"),
                "right-padded word": value.ljust(32, b"\0"),
                "ABI string": len(value).to_bytes(32, "big") + value.ljust(32, b"\0"),
            }
            for name, data in words.items():
                encodings[f"{label} {name}"] = data
                encodings[f"{label} {name} hex"] = data.hex().encode()
                encodings[f"{label} {name} HEX"] = data.hex().upper().encode()
        return encodings


def new_marker() -> Marker:
    # 24 printable bytes: fits one storage slot as a short string and one uint256
    return Marker("cocomark" + secrets.token_hex(8))


def scan(paths: list[Path], marker: Marker) -> list[str]:
    """Where any form of the marker occurs: "file: form" lines."""
    found: list[str] = []
    forms = marker.forms()
    for path in paths:
        data = path.read_bytes()
        found += [f"{path.name}: {name}" for name, form in forms.items() if form in data]
    return found


def raw_kv_keys(where: dict[str, Any], marker: Marker) -> dict[str, bytes]:
    """py-evm's kv keys for what ``exercise`` did, as an unblinded ledger would store them."""
    # Events keeps one storage slot (value, slot 0) after exercise: its storage trie is one
    # leaf, so a guess of the value gives the root node, hence its keccak, the node's key
    storage = HexaryTrie({})
    storage[keccak((0).to_bytes(32, "big"))] = rlp.encode(marker.uint)
    lookup = SchemaV1.make_transaction_hash_to_block_lookup_key(where["mined"])
    return {
        "keccak(Events code)": keccak(where["code"]),
        "storage trie root node key": storage.root_hash,
        "transaction-hash-to-block lookup key": lookup,
        "lookup key prefix": b"transaction-hash-to-block:",
    }


def scan_keys(paths: list[Path], keys: dict[str, bytes]) -> list[str]:
    found: list[str] = []
    for path in paths:
        data = path.read_bytes()
        found += [f"{path.name}: {name}" for name, key in keys.items() if key in data]
    return found


def written_files(node: NodeProcess) -> list[Path]:
    files = sorted(p for p in node.data_dir.rglob("*") if p.is_file())
    assert any(p.name == "ledger.sqlite" for p in files), files
    return [*files, node.log_path]


# ---------------------------------------------------------------------------- client side


def transact(w3: Web3, sender: Any, tx: dict[str, Any], *, wait: bool = True) -> Any:
    tx = {"from": sender.address, "chainId": w3.eth.chain_id, **tx}
    tx.setdefault("nonce", w3.eth.get_transaction_count(sender.address, "pending"))
    if "gasPrice" not in tx:
        tx.setdefault("maxFeePerGas", 2 * w3.eth.get_block("latest").baseFeePerGas + 10**9)
        tx.setdefault("maxPriorityFeePerGas", 10**9)
    if "gas" not in tx:
        tx["gas"] = w3.eth.estimate_gas(tx)
    tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    if not wait:
        return tx_hash
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.05)


def deploy(w3: Web3, name: str, *args: Any) -> Any:
    art = load_artifact(name)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    receipt = transact(w3, ALICE, {"data": factory.constructor(*args).data_in_transaction})
    assert receipt.status == 1
    return w3.eth.contract(address=receipt.contractAddress, abi=art["abi"])


def call_data(fn: Any) -> str:
    return str(fn._encode_transaction_data())


def exercise(node: NodeProcess, marker: Marker) -> dict[str, Any]:
    """Put the marker everywhere a plain transaction can; returns what to check later."""
    w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
    events = deploy(w3, "Events")
    token = deploy(w3, "Token", marker.text, marker.symbol, marker.uint)
    assert token.functions.name().call() == marker.text

    def run(fn: Any, sender: Any = ALICE, **extra: Any) -> Any:
        return transact(w3, sender, {"to": fn.address, "data": call_data(fn), **extra})

    mined = run(events.functions.setValue(marker.uint))
    assert mined.status == 1
    # the marker's uint becomes the indexed oldValue topic of this one
    assert run(events.functions.setValue(marker.uint + 1)).status == 1
    assert run(events.functions.setValue(marker.uint)).status == 1
    assert run(events.functions.note(marker.text), sender=BOB).status == 1
    assert run(events.functions.echo(marker.raw), sender=BOB).status == 1
    assert run(token.functions.transfer(BOB.address, marker.uint // 3)).status == 1
    # a revert that carries the marker: mined with status 0, and asked as call and estimate
    failing = events.functions.failCustom(marker.uint)
    assert run(failing, gas=100_000).status == 0
    request = {"from": ALICE.address, "to": events.address, "data": call_data(failing)}
    for method, params in (("eth_call", [request, "latest"]), ("eth_estimateGas", [request])):
        reply = w3.provider.make_request(method, params)  # type: ignore[arg-type]
        assert "error" in reply, reply
        assert marker.uint.to_bytes(32, "big").hex() in str(reply["error"].get("data", ""))
    # node-signed (eth_sendTransaction from an unlocked dev account) is a plain path too
    tx_hash = w3.eth.send_transaction(
        {
            "from": CAROL.address,
            "to": events.address,
            "data": call_data(events.functions.note(marker.symbol)),
        }
    )
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30).status == 1
    # left in the pool behind a nonce gap: the pool table holds it when the node stops
    gap_nonce = w3.eth.get_transaction_count(BOB.address, "pending") + 1
    pooled = transact(
        w3,
        BOB,
        {
            "to": events.address,
            "data": call_data(events.functions.note(marker.text)),
            "nonce": gap_nonce,
            "gas": 100_000,
        },
        wait=False,
    )
    assert w3.eth.get_storage_at(events.address, 0) == marker.uint.to_bytes(32, "big")
    return {
        "events": events.address,
        "pooled": pooled,
        "mined": bytes(mined.transactionHash),
        "code": bytes(w3.eth.get_code(events.address)),
    }


def check_still_there(node: NodeProcess, marker: Marker, where: dict[str, Any]) -> None:
    """After a restart the node still reads what it sealed: storage, logs, the pool."""
    w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
    assert w3.eth.get_storage_at(where["events"], 0) == marker.uint.to_bytes(32, "big")
    notes = w3.eth.get_logs({"address": where["events"], "fromBlock": 0, "toBlock": "latest"})
    assert any(marker.raw in bytes(entry["data"]) for entry in notes)
    pooled = w3.eth.get_transaction(where["pooled"])
    assert pooled["blockNumber"] is None  # restored into the pool, still waiting


# ---------------------------------------------------------------------------- the tests


def test_nothing_readable_after_a_clean_stop(tmp_path: Path) -> None:
    marker = new_marker()
    node = NodeProcess(tmp_path / "data").start()
    try:
        where = exercise(node, marker)
    finally:
        code = node.stop()
    assert code == 0, node.log()[-3000:]
    found = scan(written_files(node), marker)
    assert not found, f"the marker is readable in what the node wrote: {found}"
    found = scan_keys(written_files(node)[:-1], raw_kv_keys(where, marker))
    assert not found, f"py-evm's kv keys are stored unblinded: {found}"


def test_nothing_readable_after_kill_9_and_restart(tmp_path: Path) -> None:
    marker = new_marker()
    node = NodeProcess(tmp_path / "data").start()
    try:
        where = exercise(node, marker)
    except BaseException:
        node.stop()
        raise
    node.kill9()
    wal = node.data_dir / "ledger.sqlite-wal"
    assert wal.exists() and wal.stat().st_size > 0, "the kill left no WAL to scan"
    found = scan(written_files(node), marker)
    assert not found, f"the marker is readable after kill -9 (WAL included): {found}"
    found = scan_keys(written_files(node)[:-1], raw_kv_keys(where, marker))
    assert not found, f"py-evm's kv keys are stored unblinded (WAL included): {found}"

    node.start()
    try:
        check_still_there(node, marker, where)
    finally:
        code = node.stop()
    assert code == 0, node.log()[-3000:]
    found = scan(written_files(node), marker)
    assert not found, f"the marker is readable after the restart: {found}"


def test_the_scan_finds_plaintext_storage(tmp_path: Path) -> None:
    """--insecure-plaintext-storage keeps the marker readable: the scan can fail."""
    marker = new_marker()
    node = NodeProcess(tmp_path / "data", "--insecure-plaintext-storage").start()
    try:
        where = exercise(node, marker)
    except BaseException:
        node.stop()
        raise
    node.kill9()
    found = scan(written_files(node)[:-1], marker)
    assert any(line.endswith(": marker raw") for line in found), found
    assert any(line.endswith(": symbol raw") for line in found), found
    # plaintext storage keeps py-evm's keys: the key scan finds each of them
    keys = raw_kv_keys(where, marker)
    key_found = scan_keys(written_files(node)[:-1], keys)
    assert {line.split(": ", 1)[1] for line in key_found} == set(keys), key_found

    node.start()
    try:
        check_still_there(node, marker, where)
    finally:
        code = node.stop()
    assert code == 0, node.log()[-3000:]
    data_found = scan(written_files(node)[:-1], marker)
    # calldata, constructor arguments, storage and logs in the clear, in each encoding
    for form in ("marker raw", "marker uint256 word", "marker ABI string", "symbol ABI string"):
        assert f"ledger.sqlite: {form}" in data_found, data_found
    # the flag changes storage only: the log stays as clean as with sealed storage
    log_found = scan([node.log_path], marker)
    assert not log_found, f"the node's log prints plaintext: {log_found}"
    assert "IN PLAINTEXT" in node.log()


@pytest.mark.parametrize("flag_first", [True, False])
def test_storage_modes_do_not_mix(tmp_path: Path, flag_first: bool) -> None:
    first = ("--insecure-plaintext-storage",) if flag_first else ()
    second = () if flag_first else ("--insecure-plaintext-storage",)
    node = NodeProcess(tmp_path / "data", *first).start()
    assert node.stop() == 0
    other = NodeProcess(tmp_path / "data", *second)
    with pytest.raises(RuntimeError, match="node exited early") as refused:
        other.start()
    expected = (
        "created with --insecure-plaintext-storage"
        if flag_first
        else "cannot be opened with --insecure-plaintext-storage"
    )
    assert expected in str(refused.value)
    assert "cannot start:" in str(refused.value)


class LoggedPlaintext(AssertionError):
    """The node's log printed something confidential."""


def test_dropped_transactions_do_not_log_balances(tmp_path: Path) -> None:
    """An account's balance is confidential state: a block that drops its transaction for
    want of funds must not print the balance in the node's log."""
    balance = int.from_bytes(secrets.token_bytes(7), "big")  # the marker, in wei
    gas_price = 2 * 10**9
    # blocks every second, so that both of the account's transactions meet in one block
    node = NodeProcess(tmp_path / "data", "--block-time", "1").start()
    try:
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
        spender = Account.create()
        funding = {"to": spender.address, "value": balance + 21_000 * gas_price + 1}
        assert transact(w3, ALICE, {**funding, "gas": 21_000}).status == 1
        # the first leaves exactly `balance`; the second wants one wei more, and fails then
        for nonce, value in ((0, 1), (1, balance + 1)):
            tx = {"to": ALICE.address, "value": value, "nonce": nonce, "gas": 21_000}
            transact(w3, spender, {**tx, "gasPrice": gas_price}, wait=False)
        deadline = time.time() + 20
        while "dropped tx" not in node.log() and time.time() < deadline:
            time.sleep(0.2)
        assert "dropped tx" in node.log()
    finally:
        assert node.stop() == 0
    if str(balance) in node.log():
        raise LoggedPlaintext("the node's log prints an account's balance")
