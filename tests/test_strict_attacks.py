"""A ``--privacy strict`` node attacked from outside, as nobody and as another signed-in account.

Account A (a dev account) and a victim V (a fresh account A pays) send plain transactions
whose values and data carry markers; then nobody (the public URL) and B (another signed-in
account) try to learn them through everything that executes code (eth_call, eth_estimateGas,
transactions whose storage and logs carry a value out), every handle the node gives out
(filter ids, subscription ids, session tokens) and every error text that could echo state.
docs/SECURITY.md's table is what these tests hold the node to.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from artifacts import load_artifact
from conftest import DEV_KEYS, NodeProcess, rpc
from eth_account import Account
from web3 import Web3
from websockets.sync.client import connect

from gateway.client.session import sign_in

A = Account.from_key(DEV_KEYS[0])
B = Account.from_key(DEV_KEYS[1])
UNAUTHORIZED = -32002
SERVER_ERROR = -32000
INVALID_PARAMS = -32602
GAS_PRICE = 3 * 10**9
PROBE_VALUE = 7  # wei the probe contract is deployed with


class Attacked:
    """The strict node, its users' URLs, and what A and V did on it."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.anon = node.url
        self.victim = Account.create()
        self.a_url = sign_in(node.url, A.key)["rpcUrl"]
        self.b_url = sign_in(node.url, B.key)["rpcUrl"]
        self.v_url = sign_in(node.url, self.victim.key)["rpcUrl"]
        self.raw_by_a: list[str] = []
        probe = load_artifact("BalanceProbe")
        self.abi = probe["abi"]
        deployed = self.send(A, {"data": probe["bytecode"], "value": PROBE_VALUE})
        self.probe = Web3.to_checksum_address(deployed["contractAddress"])
        # marker-carrying plain transfers, each in its own block
        self.markers = [10**15 + secrets.randbelow(10**12) for _ in range(3)]
        self.blocks: list[int] = []
        for marker in self.markers:
            receipt = self.send(
                A, {"to": self.victim.address, "value": marker, "data": marker.to_bytes(32, "big")}
            )
            self.blocks.append(int(receipt["blockNumber"]))

    def url_of(self, account: Any) -> str:
        return {A.address: self.a_url, B.address: self.b_url}.get(account.address, self.v_url)

    def send(self, account: Any, fields: dict[str, Any]) -> dict[str, Any]:
        """Sign and send a plain transaction; its receipt, read on the sender's own URL."""
        url = self.url_of(account)
        nonce = int(rpc(url, "eth_getTransactionCount", [account.address, "pending"])["result"], 16)
        tx = {"chainId": 31337, "nonce": nonce, "gas": 2_000_000, "gasPrice": GAS_PRICE, **fields}
        raw = "0x" + bytes(account.sign_transaction(tx).raw_transaction).hex()
        if account.address == A.address:
            self.raw_by_a.append(raw)
        answer = rpc(url, "eth_sendRawTransaction", [raw])
        assert "result" in answer, answer
        w3 = Web3(Web3.HTTPProvider(url))
        receipt = w3.eth.wait_for_transaction_receipt(answer["result"], timeout=30)
        assert receipt["status"] == 1
        return json.loads(Web3.to_json(receipt))  # type: ignore[arg-type]

    def data(self, fn: str, *args: Any) -> str:
        contract = Web3().eth.contract(abi=self.abi)
        return str(contract.encode_abi(fn, list(args)))

    def call(self, url: str, fn: str, *args: Any, block: Any = "latest") -> int:
        answer = rpc(url, "eth_call", [{"to": self.probe, "data": self.data(fn, *args)}, block])
        assert "result" in answer, answer
        return int(answer["result"], 16)

    def estimate(self, url: str, fn: str, *args: Any, block: Any = "latest") -> int:
        params = [{"to": self.probe, "data": self.data(fn, *args)}, block]
        answer = rpc(url, "eth_estimateGas", params)
        assert "result" in answer, answer
        return int(answer["result"], 16)

    def balance(self, account: Any, block: Any = "latest") -> int:
        """The account's balance, as the account itself reads it on its personal URL."""
        url = self.url_of(account)
        return int(rpc(url, "eth_getBalance", [account.address, block])["result"], 16)


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    node = NodeProcess(tmp_path_factory.mktemp("attacked") / "data", "--privacy", "strict")
    node.start()
    try:
        yield Attacked(node)
    finally:
        node.stop()


def _error(url: str, method: str, params: list[Any]) -> dict[str, Any]:
    answer = rpc(url, method, params)
    assert "error" in answer, (method, answer)
    return dict(answer["error"])


# ---------------------------------------------------------------- balances through the EVM


def test_code_reads_zero_for_another_accounts_balance_at_every_block(attacked: Attacked) -> None:
    first = attacked.blocks[0] - 1
    blocks = range(first, attacked.blocks[-1] + 1)
    for url in (attacked.anon, attacked.b_url):
        for number in blocks:
            for who in (attacked.victim.address, A.address):
                assert attacked.call(url, "balanceOf", who, block=hex(number)) == 0
    # the balances are there: their owners read them through the same code
    for number in blocks:
        real = attacked.balance(attacked.victim, hex(number))
        assert real == sum(attacked.markers[: number - first])
        seen = attacked.call(
            attacked.v_url, "balanceOf", attacked.victim.address, block=hex(number)
        )
        assert seen == real
    assert attacked.call(attacked.a_url, "originBalance") == attacked.balance(A) > 0


def _twin(address: str) -> str:
    """An unused address whose calldata costs the same gas as ``address``'s (the same zero
    bytes), so two estimates differ only by what the code did."""
    raw = bytes.fromhex(address[2:])
    return Web3.to_checksum_address(bytes(0 if b == 0 else 0xFF - (b == 0xFF) for b in raw))


def test_gas_estimates_do_not_carry_another_balance_out(attacked: Attacked) -> None:
    """spendByBalance loops once per wei of the balance it reads (up to a cap): were BALANCE
    to tell, the estimate would grow with the victim's balance across blocks."""
    cap = 10**6
    for url in (attacked.anon, attacked.b_url):
        for who in (attacked.victim.address, A.address):
            baseline = attacked.estimate(url, "spendByBalance", _twin(who), cap)
            for number in range(attacked.blocks[0] - 1, attacked.blocks[-1] + 1):
                estimate = attacked.estimate(url, "spendByBalance", who, cap, block=hex(number))
                assert estimate == baseline
    # the owner's own estimate does grow: the probe would tell if the rule let it
    victim = attacked.victim.address
    own = attacked.estimate(attacked.v_url, "spendByBalance", victim, 50)
    assert own > attacked.estimate(attacked.v_url, "spendByBalance", _twin(victim), 50)


def test_transactions_carry_out_zero_for_another_account(attacked: Attacked) -> None:
    recorded = []
    for marker in (None, 10**14 + secrets.randbelow(10**10)):
        if marker is not None:  # the victim's balance changes between B's two transactions
            attacked.send(A, {"to": attacked.victim.address, "value": marker})
        receipt = attacked.send(
            B, {"to": attacked.probe, "data": attacked.data("record", attacked.victim.address)}
        )
        (log,) = receipt["logs"]
        recorded.append(int(log["data"], 16))
        assert attacked.call(attacked.b_url, "lastSeen") == 0
    assert recorded == [0, 0]
    # the signer reads its own balance in its own transaction
    before = attacked.balance(B)
    receipt = attacked.send(B, {"to": attacked.probe, "data": attacked.data("record", B.address)})
    (log,) = receipt["logs"]
    assert 0 < int(log["data"], 16) <= before


def test_contracts_own_balances_stay_readable(attacked: Attacked) -> None:
    # a contract's balance is readable by any code, as on Ethereum; the constructor saw
    # address(this).balance
    assert attacked.call(attacked.anon, "balanceOf", attacked.probe) == PROBE_VALUE
    # so eth_getBalance tells it too; a contract's nonce stays its own, as an EOA's balance
    for url in (attacked.anon, attacked.b_url):
        answer = rpc(url, "eth_getBalance", [attacked.probe, "latest"])
        assert int(answer["result"], 16) == PROBE_VALUE
        nonce = _error(url, "eth_getTransactionCount", [attacked.probe, "latest"])
        assert nonce["code"] == UNAUTHORIZED
        assert _error(url, "eth_getBalance", [attacked.victim.address, "latest"])["code"] == (
            UNAUTHORIZED
        )
    assert attacked.call(attacked.anon, "seenAtDeploy") == PROBE_VALUE


def test_open_node_keeps_ethereums_balance(node: NodeProcess) -> None:
    w3 = Web3(Web3.HTTPProvider(node.url))
    probe = load_artifact("BalanceProbe")
    factory = w3.eth.contract(abi=probe["abi"], bytecode=probe["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor().transact({"from": A.address}), timeout=30
    )
    contract = w3.eth.contract(address=receipt["contractAddress"], abi=probe["abi"])
    block = receipt["blockNumber"]
    real = w3.eth.get_balance(B.address, block)
    assert real > 0
    assert contract.functions.balanceOf(B.address).call(block_identifier=block) == real


def test_strict_node_refuses_a_chain_without_the_rule(tmp_path: Path) -> None:
    data = tmp_path / "data"
    NodeProcess(data).start().stop()  # an open node creates a chain with Ethereum's BALANCE
    strict = NodeProcess(data, "--privacy", "strict")
    with pytest.raises(RuntimeError, match="exited early"):
        strict.start()
    log = strict.log()
    assert "Traceback" not in log
    (line,) = [x for x in log.splitlines() if "private-balances rule" in x]
    assert "--public-balances" in line and "--data-dir" in line
    # what the line says works: balances are public on that node, by policy
    opened = NodeProcess(data, "--privacy", "strict", "--public-balances").start()
    try:
        assert "result" in rpc(opened.url, "eth_getBalance", [A.address, "latest"])
    finally:
        opened.stop()


# ---------------------------------------------------------------- error texts


def _tells(message: str, *numbers: int) -> bool:
    return any(re.search(rf"\b{n}\b", message) for n in numbers)


def test_calls_with_value_do_not_tell_another_balance(attacked: Attacked) -> None:
    balance = attacked.balance(attacked.victim)
    call = {"from": attacked.victim.address, "to": attacked.probe, "value": hex(balance + 1)}
    for method in ("eth_call", "eth_estimateGas"):
        # nobody: `from` is not who the code runs as, and no number comes back
        error = _error(attacked.anon, method, [call, "latest"])
        assert "insufficient funds" in error["message"]
        assert "have" not in error["message"] and not _tells(error["message"], balance)
        # B cannot claim to be V
        assert _error(attacked.b_url, method, [call, "latest"])["code"] == INVALID_PARAMS
        # V itself is told, as geth tells
        own = _error(attacked.v_url, method, [call, "latest"])["message"]
        assert f"have {balance} want {balance + 1}" in own


def test_refusals_of_someone_elses_transaction_hide_balance_and_nonce(attacked: Attacked) -> None:
    nonce = int(rpc(attacked.a_url, "eth_getTransactionCount", [A.address])["result"], 16)
    replay = attacked.raw_by_a[0]  # mined long ago: a replay of A's first transaction
    for url in (attacked.anon, attacked.b_url):
        message = _error(url, "eth_sendRawTransaction", [replay])["message"]
        assert message.startswith("nonce too low") and "state" not in message
        assert not _tells(message, nonce)
    assert (
        f"state: {nonce}" in _error(attacked.a_url, "eth_sendRawTransaction", [replay])["message"]
    )
    victim = attacked.victim
    balance = attacked.balance(victim)
    v_nonce = int(rpc(attacked.v_url, "eth_getTransactionCount", [victim.address])["result"], 16)
    base = {"chainId": 31337, "gas": 21_000, "gasPrice": GAS_PRICE, "to": A.address}
    too_much = victim.sign_transaction({**base, "nonce": v_nonce, "value": balance})
    too_high = victim.sign_transaction({**base, "nonce": v_nonce + 1000, "value": 1})
    cases = [
        ("0x" + bytes(too_much.raw_transaction).hex(), "insufficient funds", f"have {balance}"),
        ("0x" + bytes(too_high.raw_transaction).hex(), "nonce too high", f"state: {v_nonce}"),
    ]
    for raw, kind, detail in cases:
        for url in (attacked.anon, attacked.b_url):
            message = _error(url, "eth_sendRawTransaction", [raw])["message"]
            assert message.startswith(kind) and detail not in message
            assert not _tells(message, balance) and "state" not in message
        assert detail in _error(attacked.v_url, "eth_sendRawTransaction", [raw])["message"]


def test_unlocked_accounts_sign_only_for_their_own_session(attacked: Attacked) -> None:
    stranger = Account.create().address
    texts = []
    for url in (attacked.anon, attacked.b_url):
        for sender in (A.address, stranger):
            tx = {"from": sender, "to": B.address, "value": "0x1"}
            error = _error(url, "eth_sendTransaction", [tx])
            assert error["code"] == UNAUTHORIZED
            assert "personal RPC URL" in error["message"]
            # the same answer whether or not the node holds the account's key
            texts.append(error["message"].replace(sender.lower()[2:], "X"))
    assert len(set(texts)) == 1
    hash_ = rpc(attacked.a_url, "eth_sendTransaction", [{"from": A.address, "to": B.address}])
    assert "result" in hash_, hash_
    Web3(Web3.HTTPProvider(attacked.a_url)).eth.wait_for_transaction_receipt(
        hash_["result"], timeout=30
    )


# ---------------------------------------------------------------- handles


def test_filters_answer_only_their_creator(attacked: Attacked) -> None:
    logs = {"address": attacked.probe, "fromBlock": "0x0"}
    a_logs = rpc(attacked.a_url, "eth_newFilter", [logs])["result"]
    a_blocks = rpc(attacked.a_url, "eth_newBlockFilter", [])["result"]
    anon_blocks = rpc(attacked.anon, "eth_newBlockFilter", [])["result"]
    unknown = hex(secrets.randbits(128) | 1 << 127)
    attacked.send(B, {"to": attacked.probe, "data": attacked.data("record", B.address)})
    for url, theirs in (
        (attacked.b_url, [a_logs, a_blocks, anon_blocks]),
        (attacked.anon, [a_logs, a_blocks]),
        (attacked.a_url, [anon_blocks]),
    ):
        for method in ("eth_getFilterChanges", "eth_getFilterLogs"):
            expected = _error(url, method, [unknown])
            for filter_id in theirs:
                assert _error(url, method, [filter_id]) == expected
        for filter_id in theirs:
            assert rpc(url, "eth_uninstallFilter", [filter_id])["result"] is False
    # nothing was drained or removed: each creator still gets its changes
    assert rpc(attacked.a_url, "eth_getFilterChanges", [a_blocks])["result"]
    assert rpc(attacked.anon, "eth_getFilterChanges", [anon_blocks])["result"]
    assert rpc(attacked.a_url, "eth_getFilterLogs", [a_logs])["result"] is not None
    for url, filter_id in ((attacked.a_url, a_logs), (attacked.a_url, a_blocks)):
        assert rpc(url, "eth_uninstallFilter", [filter_id])["result"] is True
    assert rpc(attacked.anon, "eth_uninstallFilter", [anon_blocks])["result"] is True


def test_subscriptions_belong_to_their_connection(attacked: Attacked) -> None:
    def ask(ws: Any, method: str, params: list[Any]) -> Any:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        while True:
            answer = json.loads(ws.recv(timeout=30))
            if answer.get("id") == 1:
                return answer

    ws_url = attacked.node.ws_url
    with connect(ws_url, open_timeout=10) as mine, connect(ws_url, open_timeout=10) as other:
        sub = ask(mine, "eth_subscribe", ["newHeads"])["result"]
        assert ask(other, "eth_unsubscribe", [sub])["result"] is False
        attacked.send(B, {"to": A.address, "value": 1})
        while True:  # the subscription still delivers to the connection that made it
            note = json.loads(mine.recv(timeout=30))
            if note.get("method") == "eth_subscription":
                assert note["params"]["subscription"] == sub
                break
        assert ask(mine, "eth_unsubscribe", [sub])["result"] is True


def _variants(token: str) -> list[str]:
    """Texts that decode (leniently) to the same bytes as ``token``, or differ only by case."""
    out = [token + "=" * (-len(token) % 4 or 4), token + "==", token + ".", "." + token]
    out.append(token[:10] + "\n" + token[10:])
    last = token[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if (6 * len(token)) % 8:  # the last character carries bits beyond the data: set one
        out.append(token[:-1] + alphabet[alphabet.index(last) ^ 1])
    out.append(token.replace("-", "+").replace("_", "/"))
    out.append(token.swapcase())
    return [v for v in out if v != token]


def test_tokens_decode_in_one_form_only(attacked: Attacked) -> None:
    token = attacked.a_url.rsplit("/", 1)[1]
    assert "result" in rpc(attacked.a_url, "eth_getBalance", [A.address, "latest"])
    base = attacked.a_url[: -len(token)]
    for variant in _variants(token):
        if "\n" in variant:
            continue  # not a URL path; the enclave's own check is tested below
        url = base + variant.replace("+", "%2B").replace("/", "%2F")
        error = _error(url, "eth_getBalance", [A.address, "latest"])
        assert error["code"] == UNAUTHORIZED, (variant, error)
        assert "invalid session token" in error["message"]


def test_session_book_accepts_only_the_minted_form() -> None:
    from gateway.enclave.sessions import Session, SessionBook

    book = SessionBook(secrets.token_bytes(32), 31337)
    seen_dash = seen_underscore = False
    for _ in range(64):
        session = Session(bytes.fromhex(A.address[2:]), 2**40, secrets.token_bytes(16))
        token = book._mint(session)
        assert book.verify(token, now=0) == session
        seen_dash |= "-" in token
        seen_underscore |= "_" in token
        for variant in _variants(token):
            with pytest.raises(Exception, match="invalid session token"):
                book.verify(variant, now=0)
    assert seen_dash and seen_underscore  # the alphabet variants were tried
