"""Signed queries from the client SDK, on a ``--privacy strict`` node's public URL.

A strict node runs an anonymous ``eth_call`` / ``eth_estimateGas`` with msg.sender zero and
opens its envelope for sender zero. With a local account, the SDK attaches a signed query
(docs/PROTOCOL.md, "Signed query, version 3") over the call object's data as sent (the
envelope), so the node runs the call as the account, proven, without a session: the owner
reads its own ConfidentialToken balance (``balanceOf`` reverts ``NotBalanceOwner`` unless
msg.sender is the account) on the base URL, sealed end to end, and ``transact()`` (which
estimates gas first) works there. Without signing the same read runs as address zero. A
query replayed as it is (also after a restart of the node), under another ``from``, at
another block, on another chain with the same chain id, for another node, out of its block
range or after its expiry is refused (-32002, with a reason code in the error's data), and so
is a version 1 or 2 query (an older SDK's). Sync and async.

What the tests check on the wire is recorded below the SDK (what the node received and
answered); the node's own view (nonces, receipts) is read on the owner's personal URL,
which a strict node keeps from the public one.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from artifacts import load_artifact
from conftest import CHAIN_ID, DEV_KEYS, NodeProcess, RecordingProvider, rpc
from eth_abi import encode
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractCustomError, Web3RPCError
from web3.providers.rpc import AsyncHTTPProvider, HTTPProvider

from gateway.client.sdk import ConfidentialSession, Policy
from gateway.client.session import sign_in
from gateway.client.web3 import (
    RefusedError,
    async_confidential_web3,
    confidential,
    confidential_web3,
)
from gateway.protocol import query
from gateway.protocol.envelope import REQUEST_MAGIC, RESPONSE_MAGIC

SUPPLY = 10**24
ZERO = "0x0000000000000000000000000000000000000000"
UNAUTHORIZED = -32002
INVALID_PARAMS = -32602
POLL = 0.05


class AsyncWire(AsyncHTTPProvider):
    def __init__(self, url: str) -> None:
        super().__init__(url, request_kwargs={"timeout": 60})
        self.log: list[tuple[str, Any, Any]] = []

    async def make_request(self, method: Any, params: Any) -> Any:
        response = await super().make_request(method, params)
        self.log.append((str(method), params, response))
        return response


class Chain:
    """A strict node with a ConfidentialToken deployed by a fresh local account (owner)."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.url = node.url
        self.owner = Account.create()
        self.bob = Account.create()  # holds no ether: it only reads
        dev = Account.from_key(DEV_KEYS[0]).address
        funded = rpc(  # a strict node's unlocked account signs only on its personal URL
            sign_in(self.url, DEV_KEYS[0])["rpcUrl"],
            "eth_sendTransaction",
            [{"from": dev, "to": self.owner.address, "value": hex(10**20)}],
        )
        assert "result" in funded, funded
        # the owner's own view (nonce, receipts): its personal URL; the tests use the base URL
        self.personal = sign_in(self.url, self.owner.key)["rpcUrl"]
        self._until(lambda: int(self._mine("eth_getBalance", self.owner.address, "latest"), 16) > 0)
        art = load_artifact("ConfidentialToken")
        self.abi = art["abi"]
        w3 = confidential_web3(self.url, self.owner, allow_virtual=True)
        factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        tx_hash = factory.constructor("Secret", "SEC", SUPPLY).transact({"nonce": self.nonce()})
        receipt = self.receipt(tx_hash)
        self.token = str(receipt["contractAddress"])
        self.genesis = _bytes(rpc(self.url, "coco_nodeInfo")["result"]["genesisHash"])
        report = rpc(self.url, "coco_getAttestation")["result"]["report"]
        self.node_address = _bytes(report["nodeAddress"])  # what a query is bound to

    def check_signed(self, call: dict[str, Any], *, block: Any = None) -> bytes:
        """The signer of the call object's signed query, checked as the node checks it,
        over the data as sent (answered at its own block, the head there)."""
        signed = call["signedQuery"]
        assert signed["version"] == 3
        assert _bytes(signed["leash"]["node"]) == self.node_address
        leash = {k: int(v, 16) for k, v in signed["leash"].items() if k != "node"}
        return query.check(
            _bytes(signed["signature"]),
            chain_id=CHAIN_ID,
            genesis_hash=self.genesis,
            sender=_bytes(call["from"]),
            to=_bytes(call["to"]) if call.get("to") else None,
            value=int(call.get("value", "0x0"), 16),
            data=_bytes(call.get("data") or call.get("input") or "0x"),
            leash=leash,
            node=_bytes(signed["leash"]["node"]),
            this_node=self.node_address,
            block_number=leash["blockNumber"] if block is None else int(block, 16),
            head_number=leash["blockNumber"],
            now=int(time.time()),
        )

    def _mine(self, method: str, *params: Any) -> Any:
        """A plain JSON-RPC read on the owner's personal URL."""
        answer = rpc(self.personal, method, list(params))
        assert "error" not in answer, (method, answer)
        return answer["result"]

    @staticmethod
    def _until(ready: Any, timeout: float = 30) -> Any:
        deadline = time.time() + timeout
        while not (value := ready()):
            assert time.time() < deadline, "timed out"
            time.sleep(POLL)
        return value

    def nonce(self) -> int:
        return int(self._mine("eth_getTransactionCount", self.owner.address, "pending"), 16)

    def receipt(self, tx_hash: Any) -> dict[str, Any]:
        receipt = self._until(lambda: self._mine("eth_getTransactionReceipt", Web3.to_hex(tx_hash)))
        assert receipt["status"] == "0x1", receipt
        return dict(receipt)

    def head(self) -> int:
        return int(rpc(self.url, "eth_blockNumber")["result"], 16)

    def contract(self, w3: Any) -> Any:
        return w3.eth.contract(address=self.token, abi=self.abi)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    node = NodeProcess(tmp_path_factory.mktemp("signed-queries") / "data", "--privacy", "strict")
    node.start()
    try:
        yield Chain(node)
    finally:
        node.stop()


def custom_error(name: str, types: list[str], *args: Any) -> str:
    selector = Web3.keccak(text=f"{name}({','.join(types)})")[:4]
    return "0x" + (selector + encode(types, list(args))).hex()


def not_owner(caller: str, account: str) -> str:
    return custom_error("NotBalanceOwner", ["address", "address"], caller, account)


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def error_of(response: Any) -> dict[str, Any]:
    assert "error" in response, response
    return dict(response["error"])


def reason_of(response: Any) -> str:
    """The machine-readable reason of a refusal (the error's data.reason)."""
    error = error_of(response)
    assert isinstance(error.get("data"), dict), error
    return str(error["data"]["reason"])


# ---------------------------------------------------------------- reads


def test_owner_reads_its_balance_on_the_public_url(chain: Chain) -> None:
    wire = RecordingProvider(chain.url)
    w3 = confidential_web3(wire, chain.owner, allow_virtual=True)
    token = chain.contract(w3)
    head = chain.head()
    assert token.functions.balanceOf(chain.owner.address).call() == SUPPLY
    # msg.sender is the owner, not zero: asking for bob's balance names the owner as caller
    with pytest.raises(ContractCustomError) as other:
        token.functions.balanceOf(chain.bob.address).call()
    assert other.value.data == not_owner(chain.owner.address, chain.bob.address)
    assert token.functions.totalSupply().call() == SUPPLY

    calls = wire.sent("eth_call")
    assert len(calls) == 3
    for params, response in calls:
        call = params[0]
        # sealed for the owner, and signed over the envelope as sent
        assert _bytes(call["data"])[:3] == REQUEST_MAGIC
        assert chain.check_signed(call) == _bytes(chain.owner.address)
        leash = {k: int(v, 16) for k, v in call["signedQuery"]["leash"].items()}
        assert head <= leash["blockNumber"] <= chain.head()
        assert params[1] == hex(leash["blockNumber"])  # answered at the block it is signed for
        assert leash["blockRange"] == 64
        assert 0 < leash["expiry"] - time.time() <= 300
        sealed = response.get("result") or response["error"]["data"]
        assert _bytes(sealed)[:3] == RESPONSE_MAGIC
    nonces = {params[0]["signedQuery"]["leash"]["nonce"] for params, _ in calls}
    assert len(nonces) == 3  # random, one per query
    # the supply never crossed the wire in clear
    assert hex(SUPPLY)[2:] not in repr(wire.log)
    # the head is fetched per query (head_ttl 0): "latest" is the head of the moment
    assert len(wire.sent("eth_blockNumber")) == 3

    # the same holds on the personal URL: the signed query and the session agree
    mine = confidential_web3(chain.personal, chain.owner, allow_virtual=True)
    assert chain.contract(mine).functions.balanceOf(chain.owner.address).call() == SUPPLY


def test_without_signing_the_read_runs_as_nobody(chain: Chain) -> None:
    wire = RecordingProvider(chain.url)
    w3 = confidential_web3(wire, chain.owner, allow_virtual=True, sign_queries=False)
    from gateway.client.web3 import session_of

    assert session_of(w3).query_signers == ()
    token = chain.contract(w3)
    with pytest.raises(ContractCustomError) as failed:
        token.functions.balanceOf(chain.owner.address).call()
    assert failed.value.data == not_owner(ZERO, chain.owner.address)
    # the zero sender holds nothing: the estimate reverts with the zero address's balance
    with pytest.raises(ContractCustomError) as poor:
        token.functions.transfer(chain.bob.address, 1).estimate_gas()
    assert poor.value.data == custom_error("InsufficientBalance", ["uint256", "uint256"], 0, 1)

    # what happened: the SDK asked the node who it runs this URL's calls as (coco_whoami:
    # nobody, on a strict node's public URL) and sealed for the zero address at once;
    # nothing was signed, nothing refused
    (first, answered), (estimate, _) = wire.sent("eth_call") + wire.sent("eth_estimateGas")
    assert "signedQuery" not in first[0] and "signedQuery" not in estimate[0]
    assert _bytes(error_of(answered)["data"])[:3] == RESPONSE_MAGIC
    assert len(wire.sent("coco_whoami")) == 1
    assert not wire.sent("eth_blockNumber")

    with pytest.raises(ValueError, match="needs the local account"):
        confidential_web3(chain.url, allow_virtual=True, sign_queries=True)


def test_value_transfer_estimate_is_signed_too(chain: Chain) -> None:
    """No data to seal, but the estimate still needs the sender's balance."""
    wire = RecordingProvider(chain.url)
    w3 = confidential_web3(wire, chain.owner, allow_virtual=True)
    assert w3.eth.estimate_gas({"to": chain.bob.address, "value": 1}) == 21_000
    ((params, _),) = wire.sent("eth_estimateGas")
    assert "data" not in params[0] and chain.check_signed(params[0]) == _bytes(chain.owner.address)

    unsigned = confidential_web3(chain.url, chain.owner, allow_virtual=True, sign_queries=False)
    with pytest.raises(Web3RPCError, match=f"insufficient funds.*{ZERO[2:]}"):
        unsigned.eth.estimate_gas({"to": chain.bob.address, "value": 1})


# ---------------------------------------------------------------- transactions


def test_transact_on_the_public_url(chain: Chain) -> None:
    wire = RecordingProvider(chain.url)
    w3 = confidential_web3(wire, chain.owner, allow_virtual=True)
    token = chain.contract(w3)
    before = token.functions.balanceOf(chain.owner.address).call()

    # the public URL does not tell anyone a nonce (not even a signed query's signer): web3
    # cannot fill it in there, so it is given; everything else is filled in as usual
    with pytest.raises(Web3RPCError, match="nonce") as hidden:
        token.functions.transfer(chain.bob.address, 7).transact()
    assert hidden.value.rpc_response["error"]["code"] == UNAUTHORIZED

    start = len(wire.log)
    tx_hash = token.functions.transfer(chain.bob.address, 7).transact({"nonce": chain.nonce()})
    receipt = chain.receipt(tx_hash)
    assert int(receipt["gasUsed"], 16) > 21_000
    log = wire.log[start:]
    estimates = [params[0] for method, params, _ in log if method == "eth_estimateGas"]
    assert estimates, [method for method, _, _ in log]
    for call in estimates:  # web3's estimate before sending, with the data sealed and signed
        assert _bytes(call["data"])[:3] == REQUEST_MAGIC
        assert chain.check_signed(call) == _bytes(chain.owner.address)
    (raw,) = [params for method, params, _ in log if method == "eth_sendRawTransaction"]
    assert raw and not any(method == "eth_sendTransaction" for method, _, _ in log)
    tx = chain._mine("eth_getTransactionByHash", Web3.to_hex(tx_hash))
    assert _bytes(tx["input"])[:3] == REQUEST_MAGIC

    assert token.functions.balanceOf(chain.owner.address).call() == before - 7
    reader = confidential_web3(chain.url, chain.bob, allow_virtual=True)  # bob: no ether
    assert chain.contract(reader).functions.balanceOf(chain.bob.address).call() >= 7
    assert reader.eth.estimate_gas({"to": chain.owner.address, "value": 0}) == 21_000


# ---------------------------------------------------------------- refusals


def test_a_signed_query_is_bound_to_its_signer_and_leash(chain: Chain) -> None:
    wire = RecordingProvider(chain.url)
    w3 = confidential_web3(wire, chain.owner, allow_virtual=True)
    assert chain.contract(w3).functions.balanceOf(chain.owner.address).call() == (
        chain.contract(w3).functions.balanceOf(chain.owner.address).call()
    )
    (params, _), _ = wire.sent("eth_call")
    call, block = params
    stock = Web3(HTTPProvider(chain.url, request_kwargs={"timeout": 60}))

    def send(call_object: dict[str, Any], at: str = block) -> Any:
        return stock.provider.make_request("eth_call", [call_object, at])

    # replayed as it is, it is refused: a signed query answers once per nonce
    again = send(call)
    assert error_of(again)["code"] == UNAUTHORIZED and reason_of(again) == "replayed"
    assert "answered already" in error_of(again)["message"]
    # at another block than the one it is signed for: refused, whatever the state there
    assert reason_of(send(call, "latest" if chain.head() != int(block, 16) else "0x0")) == (
        "wrong-block"
    )
    assert reason_of(send(call, hex(int(block, 16) - 1))) == "wrong-block"
    # under another `from`, the signature does not recover it
    claimed = send({**call, "from": chain.bob.address})
    assert error_of(claimed)["code"] == UNAUTHORIZED and reason_of(claimed) == "wrong-signer"
    assert "not by its from address" in error_of(claimed)["message"]
    # over other data (say, the replayer's own envelope), neither
    other = {**call, "data": call["data"][:-2] + ("00" if call["data"][-2:] != "00" else "01")}
    assert reason_of(send(other)) == "wrong-signer"
    # with its expiry moved to the past, it is refused before the signature is looked at
    leash = dict(call["signedQuery"]["leash"], expiry=hex(int(time.time()) - 1))
    expired = send({**call, "signedQuery": {**call["signedQuery"], "leash": leash}})
    assert error_of(expired)["code"] == UNAUTHORIZED and reason_of(expired) == "expired"
    # a version 1 signed query (no version member) is refused with a message to upgrade
    v1 = {k: v for k, v in call["signedQuery"].items() if k != "version"}
    old = send({**call, "signedQuery": v1})
    assert reason_of(old) == "query-version" and "upgrade" in error_of(old)["message"]
    # and so is a version 2 one (an older SDK's: good on every node of a consortium)
    v2_leash = {k: v for k, v in call["signedQuery"]["leash"].items() if k != "node"}
    v2 = send({**call, "signedQuery": {**call["signedQuery"], "version": 2, "leash": v2_leash}})
    assert reason_of(v2) == "query-version" and "version 3 only" in error_of(v2)["message"]
    # signed for another node (a fresh nonce, so not refused as replayed): refused with the
    # node it names and this node's address, before the signature is looked at
    elsewhere = _signed(
        chain.owner.key,
        chain.genesis,
        {k: v for k, v in call.items() if k != "signedQuery"},
        {k: int(v, 16) for k, v in v2_leash.items()} | {"nonce": secrets.randbits(64)},
        b"\x99" * 20,
    )
    refused = send(elsewhere)
    assert error_of(refused)["code"] == UNAUTHORIZED and reason_of(refused) == "wrong-node"
    assert "0x" + "99" * 20 in error_of(refused)["message"]
    assert "0x" + chain.node_address.hex() in error_of(refused)["message"]
    # claiming this node over a query signed for another breaks the signature
    moved = dict(elsewhere["signedQuery"]["leash"], node="0x" + chain.node_address.hex())
    claimed_here = send({**elsewhere, "signedQuery": {**elsewhere["signedQuery"], "leash": moved}})
    assert reason_of(claimed_here) == "wrong-signer"

    # once the chain has moved past blockNumber + blockRange, it is refused
    last = int(call["signedQuery"]["leash"]["blockNumber"], 16) + 64
    while chain.head() <= last:
        assert "result" in rpc(chain.url, "evm_mine")
    stale = send(call)
    assert stale["error"]["code"] == UNAUTHORIZED and reason_of(stale) == "out-of-leash"
    assert "leashed to blocks" in error_of(stale)["message"]


def _sign(chain: Chain, key: Any, call: dict[str, Any], block: int, **leash: int) -> dict[str, Any]:
    """A call object with a version-3 signed query by ``key`` over it, at ``block``, for
    the node of ``chain``."""
    fields = {
        "nonce": secrets.randbits(64),
        "blockNumber": block,
        "blockRange": 16,
        "expiry": int(time.time()) + 120,
        **leash,
    }
    return _signed(key, chain.genesis, call, fields, chain.node_address)


def _node_address(url: str) -> bytes:
    """The attested identity of the node at ``url`` (what a signed query is bound to)."""
    return _bytes(rpc(url, "coco_getAttestation")["result"]["report"]["nodeAddress"])


def _signed(
    key: Any, genesis: bytes, call: dict[str, Any], fields: dict[str, int], node: bytes
) -> dict[str, Any]:
    """``call`` with a version-3 signed query by ``key`` over it, for the chain of ``genesis``,
    the node ``node`` and the leash ``fields``."""
    signature = query.sign(
        bytes(key),
        chain_id=CHAIN_ID,
        genesis_hash=genesis,
        sender=_bytes(call["from"]),
        to=_bytes(call["to"]),
        value=0,
        data=_bytes(call["data"]),
        leash=fields,
        node=node,
    )
    return {
        **call,
        "signedQuery": {
            "version": 3,
            "signature": "0x" + signature.hex(),
            "leash": {**{k: hex(v) for k, v in fields.items()}, "node": "0x" + node.hex()},
        },
    }


def test_a_query_signed_before_a_change_never_shows_the_state_after_it(chain: Chain) -> None:
    """Signed while bob held nothing, sent after bob received tokens: it is answered at the
    block it was signed for (bob's balance then, 0), and named at the new head it is
    refused; once answered it is refused at every block."""
    bob = Account.create()
    data = Web3().eth.contract(abi=chain.abi).encode_abi("balanceOf", [bob.address])
    plain = {"from": bob.address, "to": chain.token, "data": data}
    before = chain.head()
    signed = _sign(chain, bob.key, plain, before)
    w3 = confidential_web3(chain.url, chain.owner, allow_virtual=True)
    tx = chain.contract(w3).functions.transfer(bob.address, 5).transact({"nonce": chain.nonce()})
    chain.receipt(tx)
    assert chain.head() > before
    now_seen = confidential_web3(chain.url, bob, allow_virtual=True)
    assert chain.contract(now_seen).functions.balanceOf(bob.address).call() == 5
    # the SDK signs for the block a call names, and the node answers there
    reader = chain.contract(now_seen).functions.balanceOf(bob.address)
    assert reader.call(block_identifier=before) == 0

    # named at the new head, the old query is refused; anyone sending it gets the old block
    moved = rpc(chain.url, "eth_call", [signed, "latest"])
    assert reason_of(moved) == "wrong-block"
    answered = rpc(chain.url, "eth_call", [signed, hex(before)])
    assert int(answered["result"], 16) == 0
    # and only once
    for at in (hex(before), "latest"):
        assert error_of(rpc(chain.url, "eth_call", [signed, at]))["code"] == UNAUTHORIZED
    assert reason_of(rpc(chain.url, "eth_call", [signed, hex(before)])) == "replayed"
    # without a block parameter the node answers at the signed block: a fresh query by bob
    fresh = _sign(chain, bob.key, plain, before, blockRange=1024)
    assert int(rpc(chain.url, "eth_call", [fresh])["result"], 16) == 0
    # a leash longer than the node remembers nonces for is refused
    long = _sign(chain, bob.key, plain, chain.head(), expiry=int(time.time()) + 7200)
    assert reason_of(rpc(chain.url, "eth_call", [long])) == "leash-too-long"


def test_replay_after_a_restart_and_on_another_chain_is_refused(tmp_path: Path) -> None:
    """Nonces are in the ledger before the answer leaves: a restart does not reopen them.
    Two chains with the same chain id but another genesis do not accept each other's
    queries: the genesis hash is in the signed domain."""
    first = NodeProcess(tmp_path / "a", "--privacy", "strict").start()
    other = NodeProcess(tmp_path / "b", "--privacy", "strict").start()
    try:
        dev = Account.from_key(DEV_KEYS[0])
        genesis = _bytes(rpc(first.url, "coco_nodeInfo")["result"]["genesisHash"])
        assert genesis != _bytes(rpc(other.url, "coco_nodeInfo")["result"]["genesisHash"])
        head = int(rpc(first.url, "eth_blockNumber")["result"], 16)
        call = {"from": dev.address, "to": dev.address, "data": "0x"}
        fields = {"nonce": 1, "blockNumber": head, "blockRange": 64}
        fields["expiry"] = int(time.time()) + 600
        node_a, node_b = (_node_address(n.url) for n in (first, other))
        signed = _signed(dev.key, genesis, call, fields, node_a)
        # on the other chain (same chain id, same head number), the signature does not hold,
        # even when signed for that chain's node
        assert int(rpc(other.url, "eth_blockNumber")["result"], 16) == head
        foreign = rpc(other.url, "eth_estimateGas", [signed, hex(head)])
        assert reason_of(foreign) == "wrong-node"
        for_b = _signed(dev.key, genesis, call, fields, node_b)
        assert reason_of(rpc(other.url, "eth_estimateGas", [for_b, hex(head)])) == "wrong-signer"
        # answered once here (an estimate needs the sender's balance: it is the signer's)
        assert int(rpc(first.url, "eth_estimateGas", [signed, hex(head)])["result"], 16) == 21_000
        assert reason_of(rpc(first.url, "eth_estimateGas", [signed, hex(head)])) == "replayed"
        # a real process restart: the nonce is still remembered
        assert first.stop() == 0
        first.start()
        replayed = rpc(first.url, "eth_estimateGas", [signed, hex(head)])
        assert error_of(replayed)["code"] == UNAUTHORIZED and reason_of(replayed) == "replayed"
        # another nonce is a new query and is answered
        renewed = _signed(dev.key, genesis, call, {**fields, "nonce": 2}, node_a)
        assert "result" in rpc(first.url, "eth_estimateGas", [renewed, hex(head)])
    finally:
        first.stop()
        other.stop()


def test_an_expired_leash_is_refused(chain: Chain) -> None:
    """A client whose clock is an hour behind signs leashes that already expired: the node
    refuses them (the SDK does not retry: signing again would expire as well)."""
    session = ConfidentialSession(
        Policy(allow_virtual=True), clock=lambda: time.time() - 3600, query_signers=[chain.owner]
    )
    wire = RecordingProvider(chain.url)
    w3 = Web3(wire)
    w3.middleware_onion.add(confidential(session=session))
    w3.eth.default_account = chain.owner.address
    with pytest.raises(Web3RPCError, match="expired") as refused:
        chain.contract(w3).functions.balanceOf(chain.owner.address).call()
    assert refused.value.rpc_response["error"]["code"] == UNAUTHORIZED
    # typed: the reason code, not a contract revert (web3 reads any error data as one)
    assert isinstance(refused.value, RefusedError) and refused.value.reason == "expired"
    assert len(wire.sent("eth_call")) == 1


def test_the_sdk_signs_again_when_the_chain_moved_past_the_leash(chain: Chain) -> None:
    """A frozen clock keeps the cached head forever: the node refuses the query once the
    chain is past the leash, and the SDK fetches the head and signs once more."""
    frozen = time.time()
    session = ConfidentialSession(
        Policy(allow_virtual=True, leash_blocks=8, head_ttl=60), clock=lambda: frozen
    )
    assert session.add_query_signer(chain.owner.key) == chain.owner.address  # a raw key
    wire = RecordingProvider(chain.url)
    w3 = Web3(wire)
    w3.middleware_onion.add(confidential(session=session))
    token = chain.contract(w3)
    owner = {"from": chain.owner.address}
    assert token.functions.balanceOf(chain.owner.address).call(owner) > 0
    assert token.functions.balanceOf(chain.owner.address).call(owner) > 0
    assert session.heads_fetched == 1
    first = int(wire.sent("eth_call")[0][0][0]["signedQuery"]["leash"]["blockNumber"], 16)
    assert int(wire.sent("eth_call")[0][0][0]["signedQuery"]["leash"]["blockRange"], 16) == 8
    while chain.head() <= first + 8:
        assert "result" in rpc(chain.url, "evm_mine")

    assert token.functions.balanceOf(chain.owner.address).call(owner) > 0
    assert session.heads_fetched == 2
    *_, (_, refused), (resent, _) = wire.sent("eth_call")
    assert reason_of(refused) == "out-of-leash"
    assert int(resent[0]["signedQuery"]["leash"]["blockNumber"], 16) > first + 8
    # calls from an account the session holds no signer for go out unsigned
    with pytest.raises(ContractCustomError) as anonymous:
        token.functions.balanceOf(chain.bob.address).call({"from": chain.bob.address})
    assert anonymous.value.data == not_owner(ZERO, chain.bob.address)
    assert "signedQuery" not in wire.sent("eth_call")[-1][0][0]


def test_policy_limits_the_leash() -> None:
    with pytest.raises(ValueError, match="leash_blocks"):
        Policy(leash_blocks=query.MAX_BLOCK_RANGE + 1)
    with pytest.raises(ValueError, match="leash_seconds"):
        Policy(leash_seconds=0)


# ---------------------------------------------------------------- async


def test_async_signed_queries(chain: Chain) -> None:
    async def scenario() -> None:
        wire = AsyncWire(chain.url)
        w3 = async_confidential_web3(wire, chain.owner, allow_virtual=True)
        unsigned = async_confidential_web3(
            chain.url, chain.owner, allow_virtual=True, sign_queries=False
        )
        try:
            await exercise(wire, w3, unsigned)
        finally:  # their aiohttp sessions, or "Unclosed client session"
            for used in (w3, unsigned):
                await used.provider.disconnect()

    async def exercise(wire: AsyncWire, w3: Any, unsigned: Any) -> None:
        token = w3.eth.contract(address=chain.token, abi=chain.abi)
        balance = await token.functions.balanceOf(chain.owner.address).call()
        assert 0 < balance <= SUPPLY
        gas = await token.functions.transfer(chain.bob.address, 2).estimate_gas()
        assert gas > 21_000
        tx_hash = await token.functions.transfer(chain.bob.address, 2).transact(
            {"nonce": chain.nonce()}  # estimated again, signed, inside transact()
        )
        chain.receipt(tx_hash)
        assert await token.functions.balanceOf(chain.owner.address).call() == balance - 2
        signed = [p[0] for m, p, _ in wire.log if m in ("eth_call", "eth_estimateGas")]
        assert len(signed) == 4
        assert all(chain.check_signed(call) == _bytes(chain.owner.address) for call in signed)

        anonymous = unsigned.eth.contract(address=chain.token, abi=chain.abi)
        with pytest.raises(ContractCustomError) as failed:
            await anonymous.functions.balanceOf(chain.owner.address).call()
        assert failed.value.data == not_owner(ZERO, chain.owner.address)

    asyncio.run(scenario())
