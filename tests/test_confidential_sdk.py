"""The confidential example contracts through the client SDK, on a ``--privacy strict`` node.

tests/test_confidential_contracts.py shows the contracts' own rules with plain transactions
and claimed ``from`` addresses on an open node. Here every user signs in (SIWE) and talks to
the node on their own personal URL through ``confidential_web3(personal_url, account)``: the
call data, init code, return data, revert data and log data travel sealed, and ``msg.sender``
of a read is the signed-in account, proven instead of claimed. Anyone else reads as address
zero. What reaches the chain is checked with plain JSON-RPC that bypasses the SDK.

Then the node's refusals: tampered, truncated, wrong-chain and stale-epoch envelopes, in a
raw transaction and in a call, each with its own message; and ``--require-encryption``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from artifacts import load_artifact
from conftest import CHAIN_ID, DEV_KEYS, REPO, NodeProcess, rpc
from eth_abi import encode
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractCustomError, Web3RPCError
from web3.providers.rpc import HTTPProvider

from gateway.client.session import sign_in
from gateway.client.web3 import confidential_web3
from gateway.protocol.attestation import Report
from gateway.protocol.envelope import (
    REQUEST_MAGIC,
    RESPONSE_MAGIC,
    Kind,
    Purpose,
    open_response,
    seal_request,
)

OWNER = Account.from_key(DEV_KEYS[0])
ALICE = Account.from_key(DEV_KEYS[1])
BOB = Account.from_key(DEV_KEYS[2])
ZERO = "0x0000000000000000000000000000000000000000"
OPEN_SECONDS = 20  # bidding and voting time, in chain seconds
POLL = 0.05
SERVER_ERROR = -32000
INVALID_PARAMS = -32602


class RecordingProvider(HTTPProvider):
    """HTTPProvider that keeps the text of every answer it carried (the wire, inbound)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, request_kwargs={"timeout": 60})
        self.answers: list[str] = []

    def make_request(self, method: Any, params: Any) -> Any:
        response = super().make_request(method, params)
        self.answers.append(repr(response))
        return response


class User:
    """One signed-in account: its personal URL and an SDK web3 on it."""

    def __init__(self, node: NodeProcess, account: Any) -> None:
        self.account = account
        self.address: str = account.address
        self.url: str = sign_in(node.url, account.key)["rpcUrl"]
        assert self.url != node.url
        self.wire = RecordingProvider(self.url)
        self.w3 = confidential_web3(self.wire, account, allow_virtual=True)

    def contract(self, contract: Any) -> Any:
        """The same contract, called through this user's web3."""
        return self.w3.eth.contract(address=contract.address, abi=contract.abi)

    def deploy(self, name: str, *args: Any) -> tuple[Any, Any]:
        art = load_artifact(name)
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = self.wait(factory.constructor(*args).transact())
        contract = self.w3.eth.contract(address=receipt.contractAddress, abi=art["abi"])
        return contract, receipt

    def wait(self, tx_hash: Any) -> Any:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=POLL)
        assert receipt.status == 1
        return receipt

    def raw(self, method: str, *params: Any) -> Any:
        """A plain JSON-RPC read on the personal URL, without the SDK."""
        answer = rpc(self.url, method, list(params))
        assert "error" not in answer, (method, answer)
        return answer["result"]


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    node = NodeProcess(tmp_path_factory.mktemp("sdk-strict") / "data", "--privacy", "strict")
    node.start()
    try:
        yield {
            "node": node,
            "owner": User(node, OWNER),
            "alice": User(node, ALICE),
            "bob": User(node, BOB),
            # nobody: a stock web3 on the node's public URL, no SDK, no session
            "anon": Web3(HTTPProvider(node.url, request_kwargs={"timeout": 60})),
        }
    finally:
        node.stop()


def custom_error(name: str, types: list[str], *args: Any) -> str:
    """The revert data of a Solidity custom error, 0x-hex."""
    selector = Web3.keccak(text=f"{name}({','.join(types)})")[:4]
    return "0x" + (selector + encode(types, list(args))).hex()


def reverts_with(call: Any, name: str, types: list[str], *args: Any) -> None:
    """``call()`` raises web3's ContractCustomError carrying exactly ``name(args)``."""
    with pytest.raises(ContractCustomError) as err:
        call()
    assert err.value.data == custom_error(name, types, *args)


def anon_contract(strict: dict[str, Any], contract: Any) -> Any:
    return strict["anon"].eth.contract(address=contract.address, abi=contract.abi)


def mine_until(url: str, timestamp: int) -> None:
    """Mine empty blocks (evm_mine, a dev-node method) until the head reaches ``timestamp``."""
    while int(rpc(url, "eth_getBlockByNumber", ["latest", False])["result"]["timestamp"], 16) < (
        timestamp
    ):
        assert "result" in rpc(url, "evm_mine")


def word(value: int) -> bytes:
    return value.to_bytes(32, "big")


# ---------------------------------------------------------------- ConfidentialToken


def test_token_amounts_and_balances_stay_with_their_owners(strict: dict[str, Any]) -> None:
    owner, alice, bob = strict["owner"], strict["alice"], strict["bob"]
    supply = 10**24
    token, deployed = owner.deploy("ConfidentialToken", "Secret", "SCRT", supply)

    # the deployment's init code reached the chain as an envelope (constructor arguments too)
    deploy_tx = owner.raw("eth_getTransactionByHash", deployed.transactionHash.to_0x_hex())
    init = bytes.fromhex(deploy_tx["input"][2:])
    assert init[:3] == REQUEST_MAGIC
    assert b"Secret" not in init and word(supply) not in init
    assert bytes.fromhex(load_artifact("ConfidentialToken")["bytecode"][2:40]) not in init

    receipt = owner.wait(token.functions.transfer(ALICE.address, 1234).transact())
    tx_hash = receipt.transactionHash.to_0x_hex()
    plain_call_data = bytes.fromhex(
        token.encode_abi("transfer", [ALICE.address, 1234]).removeprefix("0x")
    )

    # the sender's own view of the transaction: its input is an envelope, not the call data
    tx = owner.raw("eth_getTransactionByHash", tx_hash)
    assert tx["from"] == OWNER.address
    sent = bytes.fromhex(tx["input"][2:])
    assert sent[:3] == REQUEST_MAGIC and plain_call_data not in sent and word(1234) not in sent
    assert len(sent) == len(plain_call_data) + 77  # the envelope's size, and nothing else

    # the raw receipt (no SDK) on the sender's own URL: the parties are topics, the amount is
    # sealed; the SDK opens it
    (raw_log,) = owner.raw("eth_getTransactionReceipt", tx_hash)["logs"]
    assert raw_log["topics"][0] == Web3.keccak(text="Transfer(address,address,uint256)").to_0x_hex()
    assert raw_log["topics"][2].endswith(ALICE.address[2:].lower())
    data = bytes.fromhex(raw_log["data"][2:])
    assert data[:3] == RESPONSE_MAGIC and word(1234) not in data
    assert len(data) == 32 + 37
    (event,) = token.events.Transfer().process_receipt(receipt)
    assert (event.args["from"], event.args.to, event.args.value) == (
        OWNER.address,
        ALICE.address,
        1234,
    )

    # nobody else gets the transaction or its receipt; the recipient, named in a topic, gets
    # the log from eth_getLogs with its data still sealed
    for url in (alice.url, bob.url, strict["node"].url):
        assert rpc(url, "eth_getTransactionReceipt", [tx_hash])["result"] is None
        assert rpc(url, "eth_getTransactionByHash", [tx_hash])["result"] is None
    query = {"fromBlock": hex(receipt.blockNumber), "address": token.address}
    (alice_log,) = alice.raw("eth_getLogs", query)
    assert alice_log["data"] == raw_log["data"]
    assert bob.raw("eth_getLogs", query) == []

    # each owner reads their own balance, msg.sender being the signed-in account
    start = len(owner.wire.answers)
    assert token.functions.balanceOf(OWNER.address).call() == supply - 1234
    assert hex(supply - 1234)[2:] not in "".join(owner.wire.answers[start:])  # sealed answer
    assert alice.contract(token).functions.balanceOf(ALICE.address).call() == 1234
    assert token.functions.totalSupply().call() == supply  # public

    # another signed-in user is refused: NotBalanceOwner(caller, account), opened by their SDK
    reverts_with(
        bob.contract(token).functions.balanceOf(ALICE.address).call,
        "NotBalanceOwner",
        ["address", "address"],
        BOB.address,
        ALICE.address,
    )
    reverts_with(
        token.functions.balanceOf(ALICE.address).call,
        "NotBalanceOwner",
        ["address", "address"],
        OWNER.address,
        ALICE.address,
    )
    # a personal URL cannot claim another sender
    with pytest.raises(Web3RPCError) as claimed:
        bob.contract(token).functions.balanceOf(ALICE.address).call({"from": ALICE.address})
    assert claimed.value.rpc_response["error"]["code"] == INVALID_PARAMS

    # nobody (a stock web3 on the public URL) reads as address zero, whatever `from` it claims
    plain = anon_contract(strict, token)
    for tx_fields in ({}, {"from": OWNER.address}):
        reverts_with(
            lambda fields=tx_fields: plain.functions.balanceOf(OWNER.address).call(fields),
            "NotBalanceOwner",
            ["address", "address"],
            ZERO,
            OWNER.address,
        )
    # and so does an SDK client without a session (its call is sealed for sender zero)
    sealed_anon = confidential_web3(strict["node"].url, allow_virtual=True)
    reverts_with(
        sealed_anon.eth.contract(address=token.address, abi=token.abi)
        .functions.balanceOf(OWNER.address)
        .call,
        "NotBalanceOwner",
        ["address", "address"],
        ZERO,
        OWNER.address,
    )
    assert plain.functions.totalSupply().call() == supply


# ---------------------------------------------------------------- SealedBidAuction


def test_sealed_bids_through_the_sdk(strict: dict[str, Any]) -> None:
    owner, alice, bob = strict["owner"], strict["alice"], strict["bob"]
    auction, _ = owner.deploy("SealedBidAuction", OPEN_SECONDS)
    end = auction.functions.endTime().call()
    bids = {ALICE.address: 500, BOB.address: 700}
    for user in (alice, bob):
        receipt = user.wait(user.contract(auction).functions.bid(bids[user.address]).transact())
        sent = bytes.fromhex(
            user.raw("eth_getTransactionByHash", receipt.transactionHash.to_0x_hex())["input"][2:]
        )
        assert sent[:3] == REQUEST_MAGIC and word(bids[user.address]) not in sent
    assert auction.functions.bidderCount().call() == 2  # how many bid is public

    def sealed(reader: Any, bidder: str, caller: str) -> None:
        reverts_with(
            reader.functions.bidOf(bidder).call,
            "BidSealed",
            ["address", "address"],
            caller,
            bidder,
        )

    # each bidder reads their own bid, and nobody reads another's before the close: not the
    # other bidder, not the seller, not nobody
    for user in (alice, bob):
        assert user.contract(auction).functions.bidOf(user.address).call() == bids[user.address]
    sealed(alice.contract(auction), BOB.address, ALICE.address)
    sealed(bob.contract(auction), ALICE.address, BOB.address)
    sealed(auction, BOB.address, OWNER.address)
    plain = anon_contract(strict, auction)
    for bidder in bids:
        sealed(plain, bidder, ZERO)
    reverts_with(plain.functions.winner().call, "NotClosed", [])
    reverts_with(alice.contract(auction).functions.close().call, "BiddingOpen", ["uint256"], end)

    # bidding time over (the dev node mines on evm_mine): the bids stay sealed until the close
    mine_until(strict["node"].url, end)
    sealed(alice.contract(auction), BOB.address, ALICE.address)
    receipt = alice.wait(alice.contract(auction).functions.close().transact())
    (closed,) = alice.contract(auction).events.Closed().process_receipt(receipt)
    assert (closed.args.winner, closed.args.amount, closed.args.bidders) == (BOB.address, 700, 2)

    # the winner is public, and so is every bid now
    assert plain.functions.winner().call() == [BOB.address, 700]
    assert bob.contract(auction).functions.winner().call() == [BOB.address, 700]
    for bidder, amount in bids.items():
        assert plain.functions.bidOf(bidder).call() == amount


# ---------------------------------------------------------------- PrivateVote


def test_secret_ballot_through_the_sdk(strict: dict[str, Any]) -> None:
    owner, alice, bob = strict["owner"], strict["alice"], strict["bob"]
    voters = [OWNER.address, ALICE.address, BOB.address]
    vote, _ = owner.deploy("PrivateVote", 3, OPEN_SECONDS, voters)
    deadline = vote.functions.deadline().call()
    plain = anon_contract(strict, vote)

    reverts_with(bob.contract(vote).functions.myBallot().call, "NotVoted", ["address"], BOB.address)
    execution_gas = []
    for user, option in ((alice, 1), (bob, 2), (owner, 1)):
        receipt = user.wait(user.contract(vote).functions.vote(option).transact())
        assert receipt.logs == []
        sent = bytes.fromhex(
            user.raw("eth_getTransactionByHash", receipt.transactionHash.to_0x_hex())["input"][2:]
        )
        assert sent[:3] == REQUEST_MAGIC  # the choice is not on chain in clear
        # gas used varies with the envelope's random bytes (a zero byte costs 4, others 16);
        # beyond that calldata cost, every vote costs the same whatever the choice
        calldata_cost = sum(4 if byte == 0 else 16 for byte in sent)
        execution_gas.append(receipt.gasUsed - calldata_cost)
    assert len(set(execution_gas)) == 1, execution_gas

    # myBallot answers each voter with their own ballot; nobody has none
    assert alice.contract(vote).functions.myBallot().call() == 1
    assert bob.contract(vote).functions.myBallot().call() == 2
    assert vote.functions.myBallot().call() == 1
    reverts_with(plain.functions.myBallot().call, "NotVoted", ["address"], ZERO)

    # the tallies wait for the deadline, for everyone
    for reader in (vote, alice.contract(vote), plain):
        reverts_with(reader.functions.results().call, "VotingOpen", ["uint256"], deadline)
    mine_until(strict["node"].url, deadline)
    assert plain.functions.results().call() == [0, 2, 1]
    assert bob.contract(vote).functions.results().call() == [0, 2, 1]
    # the ballots themselves stay secret after the deadline
    assert alice.contract(vote).functions.myBallot().call() == 1
    reverts_with(plain.functions.myBallot().call, "NotVoted", ["address"], ZERO)


# ---------------------------------------------------------------- RandomDraw


def test_random_draw_through_the_sdk(strict: dict[str, Any]) -> None:
    owner, alice, bob = strict["owner"], strict["alice"], strict["bob"]
    draw, _ = owner.deploy("RandomDraw")
    assert draw.functions.organizer().call() == OWNER.address
    for user in (alice, bob):
        user.wait(user.contract(draw).functions.enter().transact())
    assert draw.functions.entrantCount().call() == 2
    reverts_with(
        alice.contract(draw).functions.draw().call, "NotOrganizer", ["address"], ALICE.address
    )

    receipt = owner.wait(draw.functions.draw().transact())
    (drawn,) = draw.events.Drawn().process_receipt(receipt)
    assert drawn.args.entrants == 2

    # the organizer alone reads the winner; each entrant learns only whether they won
    winner = draw.functions.winner().call()
    assert winner in (ALICE.address, BOB.address)
    won = {user.address: user.contract(draw).functions.hasWon().call() for user in (alice, bob)}
    assert won == {ALICE.address: winner == ALICE.address, BOB.address: winner == BOB.address}
    plain = anon_contract(strict, draw)
    for user in (alice, bob):
        reverts_with(
            user.contract(draw).functions.winner().call, "NotOrganizer", ["address"], user.address
        )
    reverts_with(plain.functions.winner().call, "NotOrganizer", ["address"], ZERO)
    assert plain.functions.hasWon().call() is False
    assert plain.functions.drawn().call() is True


# ---------------------------------------------------------------- who the SDK seals for


def test_the_sdk_seals_for_the_sender_the_node_runs_the_call_as(strict: dict[str, Any]) -> None:
    """No local account: on the owner's personal URL a call without ``from`` runs as the
    owner, on the public URL as nobody; the SDK seals for exactly that sender (it asks
    coco_whoami once), so no envelope is refused on the way."""
    owner, node = strict["owner"], strict["node"]
    token, _ = owner.deploy("ConfidentialToken", "Who", "WHO", 50)
    wire = RecordingProvider(owner.url)
    personal = confidential_web3(wire, allow_virtual=True)
    mine = personal.eth.contract(address=token.address, abi=token.abi)
    assert mine.functions.balanceOf(OWNER.address).call() == 50
    reverts_with(
        lambda: mine.functions.balanceOf(BOB.address).call(),
        "NotBalanceOwner",
        ["address", "address"],
        OWNER.address,
        BOB.address,
    )
    public_wire = RecordingProvider(node.url)
    public = confidential_web3(public_wire, allow_virtual=True)
    theirs = public.eth.contract(address=token.address, abi=token.abi)
    reverts_with(
        lambda: theirs.functions.balanceOf(OWNER.address).call({"from": OWNER.address}),
        "NotBalanceOwner",
        ["address", "address"],
        ZERO,
        OWNER.address,
    )
    for answers in (wire.answers, public_wire.answers):
        assert not any("invalid call envelope" in a for a in answers), answers
        assert sum("'address'" in a and "'privacy'" in a for a in answers) == 1  # coco_whoami

    # a session that learnt the public URL's identity, reused on the personal URL, seals
    # for the zero address there: refused with reason wrong-sender, sealed again for runAs
    from gateway.client.web3 import confidential, session_of

    moved_wire = RecordingProvider(owner.url)
    moved = Web3(moved_wire)
    moved.middleware_onion.add(confidential(session=session_of(public)))
    again = moved.eth.contract(address=token.address, abi=token.abi)
    assert again.functions.balanceOf(OWNER.address).call() == 50
    refused = [a for a in moved_wire.answers if "wrong-sender" in a]
    assert len(refused) == 1 and "'runAs': '" + OWNER.address.lower() in refused[0], refused


# ---------------------------------------------------------------- bad envelopes over RPC


def _attestation(url: str) -> tuple[Report, int]:
    answer = rpc(url, "coco_getAttestation")["result"]
    return Report.from_json(answer["report"]), int(answer["currentEpoch"])


def _seal(
    report: Report,
    epoch: int,
    data: bytes,
    sender: str,
    to: str,
    *,
    chain_id: int = CHAIN_ID,
    seal_epoch: int | None = None,
) -> Any:
    """``data`` sealed to the node's key of ``epoch``, declaring ``seal_epoch`` (default the
    same) in the header."""
    (key,) = [k for k in report.tx_keys if k.epoch == epoch]
    return seal_request(
        data,
        kind=Kind.CALL,
        chain_id=chain_id,
        epoch=epoch if seal_epoch is None else seal_epoch,
        enclave_public=key.public_key,
        sender=bytes.fromhex(sender[2:]),
        to=bytes.fromhex(to[2:]),
    )


def _raw_tx(account: Any, nonce: int, to: str, data: bytes) -> str:
    tx = {
        "chainId": CHAIN_ID,
        "nonce": nonce,
        "to": to,
        "value": 0,
        "data": data,
        "gas": 300_000,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
    }
    return "0x" + bytes(account.sign_transaction(tx).raw_transaction).hex()


def _refusals(
    url: str, account: Any, to: str, envelope: bytes, nonce: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The node's errors for ``envelope`` in a raw transaction and in an eth_call."""
    sent = rpc(url, "eth_sendRawTransaction", [_raw_tx(account, nonce, to, envelope)])
    called = rpc(
        url, "eth_call", [{"from": account.address, "to": to, "data": "0x" + envelope.hex()}]
    )
    assert "error" in sent, sent
    assert "error" in called, called
    return sent["error"], called["error"]


def _call_sealed(owner: Any, to: str, sealed: Any) -> bytes:
    """``sealed`` sent by hand as OWNER's eth_call to ``to``: the sealed answer, opened."""
    answer = owner.raw(
        "eth_call", {"from": OWNER.address, "to": to, "data": "0x" + sealed.envelope.hex()}
    )
    return open_response(
        bytes.fromhex(answer[2:]),
        response_key=sealed.response_key,
        request_digest=sealed.request_digest,
        purpose=Purpose.RESULT,
    )


def test_bad_envelopes_get_distinct_clear_errors(strict: dict[str, Any]) -> None:
    owner = strict["owner"]
    token, _ = owner.deploy("ConfidentialToken", "Envelopes", "ENV", 1000)
    report, epoch = _attestation(owner.url)
    assert report.chain_id == CHAIN_ID and report.grace == 1
    data = bytes.fromhex(token.encode_abi("balanceOf", [OWNER.address]).removeprefix("0x"))
    good = _seal(report, epoch, data, OWNER.address, token.address)

    # the well-formed envelope, sent by hand, works: a sealed answer that opens to the balance
    assert int.from_bytes(_call_sealed(owner, token.address, good), "big") == 1000

    tampered = bytearray(good.envelope)
    tampered[-1] ^= 0x01  # one bit of the authentication tag
    # case: (envelope, message, the reason code in the error's data)
    bad = {
        "tampered": (
            bytes(tampered),
            "envelope failed authentication: it was altered",
            "authentication-failed",
        ),
        "truncated": (
            good.envelope[:60],
            "envelope is truncated: 60 bytes end inside its nonce",
            "truncated",
        ),
        "wrong chain": (
            _seal(
                report, epoch, data, OWNER.address, token.address, chain_id=CHAIN_ID + 1
            ).envelope,
            f"envelope is for chain {CHAIN_ID + 1}, this node serves chain {CHAIN_ID}",
            "wrong-chain",
        ),
        "stale epoch": (
            _seal(report, epoch, data, OWNER.address, token.address, seal_epoch=epoch - 2).envelope,
            f"envelope is sealed to the transaction key of epoch {epoch - 2}, which has expired",
            "stale-epoch",
        ),
        "future epoch": (
            _seal(report, epoch, data, OWNER.address, token.address, seal_epoch=epoch + 2).envelope,
            f"envelope is sealed to the transaction key of epoch {epoch + 2}",
            "future-epoch",
        ),
        "unsupported version": (
            good.envelope[:3] + b"\x07" + good.envelope[4:],
            "envelope version 7 is not supported",
            "unsupported-version",
        ),
    }
    nonce = int(owner.raw("eth_getTransactionCount", OWNER.address, "pending"), 16)
    messages: dict[str, set[str]] = {"tx": set(), "call": set()}
    for case, (envelope, expected, reason) in bad.items():
        sent, called = _refusals(owner.url, OWNER, token.address, envelope, nonce)
        assert sent["code"] == SERVER_ERROR, (case, sent)
        assert sent["message"].startswith(f"invalid transaction envelope: {expected}"), (case, sent)
        assert called["code"] == INVALID_PARAMS, (case, called)
        assert called["message"].startswith(f"invalid call envelope: {expected}"), (case, called)
        assert sent["data"]["reason"] == called["data"]["reason"] == reason, (case, sent, called)
        messages["tx"].add(sent["message"])
        messages["call"].add(called["message"])
    assert len(messages["tx"]) == len(messages["call"]) == len(bad)
    # a failed authentication names the sender and recipient the node opened it for (here
    # the signer / the signed-in caller and the token), so a client can compare
    sent, called = _refusals(owner.url, OWNER, token.address, bytes(tampered), nonce)
    opened_for = {"sender": OWNER.address.lower(), "recipient": token.address.lower()}
    assert sent["data"] == called["data"] == {"reason": "authentication-failed", **opened_for}
    assert called["message"].endswith(
        f"(the node opened it for sender {OWNER.address.lower()} and recipient "
        f"{token.address.lower()})"
    ), called
    assert bad["truncated"][2] == "truncated" and len(sent["data"]) == 3
    # nothing was admitted
    assert int(owner.raw("eth_getTransactionCount", OWNER.address, "pending"), 16) == nonce

    # the next epoch's key, which the attestation publishes, is admitted (lookahead 1)
    assert [k.epoch for k in report.tx_keys] == [epoch, epoch + 1]
    ahead = _seal(report, epoch + 1, data, OWNER.address, token.address)
    assert int.from_bytes(_call_sealed(owner, token.address, ahead), "big") == 1000


def test_an_envelope_sealed_for_another_sender_says_so(strict: dict[str, Any]) -> None:
    """Sealed for the owner, sent to the strict node's public URL, where an unauthenticated
    call runs as the zero address: the error names both senders and the reason, not
    "altered"; sealed for the zero address and sent on the owner's personal URL, likewise."""
    owner = strict["owner"]
    node = strict["node"]
    token, _ = owner.deploy("ConfidentialToken", "Senders", "SND", 10)
    report, epoch = _attestation(node.url)
    data = bytes.fromhex(token.encode_abi("balanceOf", [OWNER.address]).removeprefix("0x"))
    for_owner = _seal(report, epoch, data, OWNER.address, token.address).envelope
    call = {"from": OWNER.address, "to": token.address, "data": "0x" + for_owner.hex()}
    public = rpc(node.url, "eth_call", [call])["error"]
    assert public["code"] == INVALID_PARAMS
    assert public["message"].startswith(
        f"invalid call envelope: sealed for sender {OWNER.address.lower()} but the node runs "
        f"this call as {ZERO}: "
    ), public
    assert "altered" not in public["message"]
    assert public["data"] == {
        "reason": "wrong-sender",
        "sealedFor": OWNER.address.lower(),
        "runAs": ZERO,
    }
    for_nobody = _seal(report, epoch, data, ZERO, token.address).envelope
    personal = rpc(owner.url, "eth_call", [{**call, "data": "0x" + for_nobody.hex()}])["error"]
    assert personal["data"] == {
        "reason": "wrong-sender",
        "sealedFor": ZERO,
        "runAs": OWNER.address.lower(),
    }
    assert "personal RPC URL runs as its signed-in account" in personal["message"]


def test_oversized_data_names_the_limit(strict: dict[str, Any]) -> None:
    """A raw transaction over the 128 KiB limit is refused with the limit in the message."""
    too_big = "0x02" + "00" * (128 * 1024)
    refused = rpc(strict["node"].url, "eth_sendRawTransaction", [too_big])["error"]
    assert refused["code"] == SERVER_ERROR
    assert refused["message"] == (
        f"oversized data: the transaction is {128 * 1024 + 1} bytes, the limit is "
        f"{128 * 1024} bytes"
    )


@pytest.mark.parametrize("period", ["0", "-5", "1.5", "day"])
def test_a_bad_epoch_period_is_refused_at_start(period: str, tmp_path: Path) -> None:
    """Epochs divide time by the period: 0 or less (or not a whole number) is refused before
    anything starts or is written, in one line naming the option."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "dev",
            "--port",
            "1",
            "--data-dir",
            str(tmp_path / "data"),
            f"--epoch-period={period}",
        ],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "argument --epoch-period" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and not done.stdout
    assert not (tmp_path / "data").exists()


def test_an_envelope_goes_stale_when_its_epoch_leaves_the_window(tmp_path: Path) -> None:
    """One-second epochs: an envelope the node accepts now is refused, as a transaction and
    as a call, once its epoch is more than ``grace`` (1) epochs old."""
    node = NodeProcess(tmp_path / "data", "--epoch-period", "1").start()
    try:
        report, epoch = _attestation(node.url)
        assert (report.epoch_period, report.grace) == (1, 1)
        # an envelope is admitted before anything runs: a recipient without code will do
        to = BOB.address
        sealed = _seal(report, epoch, b"stale soon", OWNER.address, to).envelope
        call = {"from": OWNER.address, "to": to, "data": "0x" + sealed.hex()}
        assert "result" in rpc(node.url, "eth_call", [call])

        deadline = time.time() + 10
        while _attestation(node.url)[1] < epoch + 2:
            assert time.time() < deadline, "the epoch did not advance"
            time.sleep(0.1)
        nonce = int(rpc(node.url, "eth_getTransactionCount", [OWNER.address])["result"], 16)
        sent, called = _refusals(node.url, OWNER, to, sealed, nonce)
        stale = f"envelope is sealed to the transaction key of epoch {epoch}, which has expired"
        assert (sent["code"], called["code"]) == (SERVER_ERROR, INVALID_PARAMS)
        assert sent["message"].startswith(f"invalid transaction envelope: {stale}"), sent
        assert called["message"].startswith(f"invalid call envelope: {stale}"), called
        assert "fetch the current transaction key and seal again" in called["message"]
    finally:
        node.stop()


# ---------------------------------------------------------------- --require-encryption


def test_require_encryption(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "data", "--require-encryption").start()
    try:
        plain = Web3(HTTPProvider(node.url))
        sdk = confidential_web3(node.url, OWNER, allow_virtual=True)
        art = load_artifact("ConfidentialToken")
        refusal = "this node requires encrypted call data and init code"

        def send_plain(tx: dict[str, Any]) -> Any:
            tx = {
                "chainId": CHAIN_ID,
                "nonce": plain.eth.get_transaction_count(OWNER.address, "pending"),
                "gas": 1_000_000,
                "maxFeePerGas": 10**10,
                "maxPriorityFeePerGas": 10**9,
                "value": 0,
                **tx,
            }
            return plain.eth.send_raw_transaction(OWNER.sign_transaction(tx).raw_transaction)

        # a plain deployment is refused with the node's message
        init = art["bytecode"] + encode(["string", "string", "uint256"], ["P", "P", 5]).hex()
        with pytest.raises(Web3RPCError) as deploy_refused:
            send_plain({"data": init})
        assert deploy_refused.value.rpc_response["error"]["code"] == SERVER_ERROR
        assert refusal in deploy_refused.value.rpc_response["error"]["message"]

        # an enveloped deployment and an enveloped call pass
        factory = sdk.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = sdk.eth.wait_for_transaction_receipt(
            factory.constructor("Sealed", "SLD", 1000).transact(), timeout=30
        )
        assert receipt.status == 1
        token = sdk.eth.contract(address=receipt.contractAddress, abi=art["abi"])
        receipt = sdk.eth.wait_for_transaction_receipt(
            token.functions.transfer(ALICE.address, 10).transact(), timeout=30
        )
        assert receipt.status == 1
        assert token.functions.balanceOf(OWNER.address).call() == 990

        # plain call data to the contract is refused, with the node's message
        nonce = plain.eth.get_transaction_count(OWNER.address, "pending")
        call_data = token.encode_abi("transfer", [ALICE.address, 1])
        with pytest.raises(Web3RPCError) as refused:
            send_plain({"to": token.address, "data": call_data})
        error = refused.value.rpc_response["error"]
        assert error["code"] == SERVER_ERROR
        assert error["message"] == (
            "this node requires encrypted call data and init code: seal the data to the "
            "enclave's transaction key (coco_getAttestation) in an envelope; plain value "
            "transfers are accepted"
        )
        assert error["data"] == {"reason": "encryption-required"}  # programs decide on it
        assert plain.eth.get_transaction_count(OWNER.address, "pending") == nonce

        # a plain value transfer passes
        before = plain.eth.get_balance(BOB.address)
        receipt = plain.eth.wait_for_transaction_receipt(
            send_plain({"to": BOB.address, "value": 12345, "gas": 21000}), timeout=30
        )
        assert receipt.status == 1
        assert plain.eth.get_balance(BOB.address) == before + 12345
    finally:
        node.stop()
