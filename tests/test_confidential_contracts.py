"""The confidential example contracts, deployed and used through a real node with web3.py.

These tests show the contracts' own rules, which is what a contract can promise: who may read
what, and when. They send plain transactions and make reads with ``.call({"from": ...})``,
which the node honours today; once reads are authenticated (the client SDK signs them), the
same rules apply with ``msg.sender`` proven instead of claimed, and a read without a signer
runs as address zero, as the ``.call()`` without ``from`` below does. That the storage behind
these functions cannot be read around them is the node's part (no ``eth_getStorageAt`` on a
confidential node), not tested here.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import DEV_KEYS
from eth_account import Account
from test_precompile import custom_error
from test_web3_e2e import deploy, send
from web3 import Web3
from web3.exceptions import ContractCustomError
from web3.types import RPCEndpoint

OWNER = Account.from_key(DEV_KEYS[0])
ALICE = Account.from_key(DEV_KEYS[1])
BOB = Account.from_key(DEV_KEYS[2])
ZERO = "0x0000000000000000000000000000000000000000"
OPEN_SECONDS = 30  # bidding and voting time, in chain seconds


def funded_account(w3: Web3) -> Any:
    account = Account.create()
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": OWNER.address, "to": account.address, "value": 10**18}),
        timeout=30,
    )
    return account


def mine_until(w3: Web3, timestamp: int) -> None:
    """Mine empty blocks until the head's timestamp reaches ``timestamp`` (one second each)."""
    while w3.eth.get_block("latest").timestamp < timestamp:
        w3.provider.make_request(RPCEndpoint("evm_mine"), [])


def reverts_with(call: Any, tx: dict[str, Any], name: str, types: list[str], *args: Any) -> None:
    """``call(tx)`` reverts with the custom error ``name(types)`` carrying ``args``."""
    with pytest.raises(ContractCustomError) as err:
        call(tx)
    assert err.value.data == custom_error(name, types, list(args))


def views_taking_an_address(contract: Any) -> set[str]:
    return {
        entry["name"]
        for entry in contract.abi
        if entry["type"] == "function"
        and entry["stateMutability"] == "view"
        and any(i["type"] == "address" for i in entry["inputs"])
    }


# ---------------------------------------------------------------- ConfidentialToken


def test_token_balances_are_for_their_owners_only(w3: Web3) -> None:
    supply = 10**24
    token = deploy(w3, "ConfidentialToken", "Secret", "SCRT", supply)
    balance_of = token.functions.balanceOf

    # the total supply is public; every balance is its owner's
    assert token.functions.totalSupply().call() == supply
    assert token.functions.symbol().call() == "SCRT"
    assert balance_of(OWNER.address).call({"from": OWNER.address}) == supply
    reverts_with(
        balance_of(OWNER.address).call,
        {"from": ALICE.address},
        "NotBalanceOwner",
        ["address", "address"],
        ALICE.address,
        OWNER.address,
    )
    # a read without a signer runs as address zero, and is refused too
    reverts_with(
        balance_of(OWNER.address).call,
        {},
        "NotBalanceOwner",
        ["address", "address"],
        ZERO,
        OWNER.address,
    )

    receipt = send(w3, token.functions.transfer(ALICE.address, 1234))
    assert receipt.status == 1
    (event,) = token.events.Transfer().process_receipt(receipt)
    # a plain transaction's log shows the amount; an enveloped one's is sealed to its sender
    assert (event.args["from"], event.args.to, event.args.value) == (
        OWNER.address,
        ALICE.address,
        1234,
    )

    assert balance_of(ALICE.address).call({"from": ALICE.address}) == 1234
    assert balance_of(OWNER.address).call({"from": OWNER.address}) == supply - 1234
    for reader in (OWNER, BOB):
        reverts_with(
            balance_of(ALICE.address).call,
            {"from": reader.address},
            "NotBalanceOwner",
            ["address", "address"],
            reader.address,
            ALICE.address,
        )
    assert token.functions.totalSupply().call() == supply
    # nothing can be sent to address zero, so the zero sender's own balance is empty
    assert balance_of(ZERO).call() == 0
    assert views_taking_an_address(token) == {"balanceOf"}


def test_token_transfer_errors(w3: Web3) -> None:
    token = deploy(w3, "ConfidentialToken", "Secret", "SCRT", 1000)
    transfer = token.functions.transfer
    # the shortfall error tells the sender their own balance, and nobody else's
    reverts_with(
        transfer(ALICE.address, 1001).call,
        {"from": OWNER.address},
        "InsufficientBalance",
        ["uint256", "uint256"],
        1000,
        1001,
    )
    reverts_with(
        transfer(ZERO, 1).call, {"from": OWNER.address}, "InvalidReceiver", ["address"], ZERO
    )
    assert send(w3, transfer(ALICE.address, 400)).status == 1
    reverts_with(
        transfer(BOB.address, 401).call,
        {"from": ALICE.address},
        "InsufficientBalance",
        ["uint256", "uint256"],
        400,
        401,
    )


# ---------------------------------------------------------------- SealedBidAuction


def test_sealed_bids_stay_hidden_until_the_auction_closes(w3: Web3) -> None:
    carol = funded_account(w3)
    auction = deploy(w3, "SealedBidAuction", OPEN_SECONDS)
    end = auction.functions.endTime().call()
    assert auction.functions.seller().call() == OWNER.address
    bids = {ALICE.address: 500, BOB.address: 700, carol.address: 650}
    for bidder in (ALICE, BOB, carol):
        assert send(w3, auction.functions.bid(bids[bidder.address]), sender=bidder).status == 1
    assert auction.functions.bidderCount().call() == 3

    # each bidder sees their own bid; nobody sees another's, the seller included
    for bidder in (ALICE, BOB, carol):
        assert (
            auction.functions.bidOf(bidder.address).call({"from": bidder.address})
            == (bids[bidder.address])
        )
    for reader in (ALICE.address, OWNER.address, carol.address, None):
        reverts_with(
            auction.functions.bidOf(BOB.address).call,
            {"from": reader} if reader else {},
            "BidSealed",
            ["address", "address"],
            reader or ZERO,
            BOB.address,
        )
    assert views_taking_an_address(auction) == {"bidOf"}
    reverts_with(auction.functions.winner().call, {}, "NotClosed", [])
    reverts_with(
        auction.functions.close().call, {"from": ALICE.address}, "BiddingOpen", ["uint256"], end
    )
    reverts_with(
        auction.functions.bid(1).call,
        {"from": ALICE.address},
        "AlreadyBid",
        ["address"],
        ALICE.address,
    )
    reverts_with(auction.functions.bid(0).call, {"from": OWNER.address}, "ZeroBid", [])

    # bidding time is over: no more bids, and the bids stay sealed until someone closes
    mine_until(w3, end)
    reverts_with(
        auction.functions.bid(900).call, {"from": OWNER.address}, "BiddingClosed", ["uint256"], end
    )
    reverts_with(
        auction.functions.bidOf(BOB.address).call,
        {"from": ALICE.address},
        "BidSealed",
        ["address", "address"],
        ALICE.address,
        BOB.address,
    )

    receipt = send(w3, auction.functions.close(), sender=ALICE)
    assert receipt.status == 1
    (closed,) = auction.events.Closed().process_receipt(receipt)
    assert (closed.args.winner, closed.args.amount, closed.args.bidders) == (BOB.address, 700, 3)
    assert auction.functions.closed().call()
    assert auction.functions.winner().call() == [BOB.address, 700]
    # once closed, every bid is open to anyone
    for bidder, amount in bids.items():
        assert auction.functions.bidOf(bidder).call() == amount
    reverts_with(auction.functions.close().call, {"from": BOB.address}, "AlreadyClosed", [])


def test_auction_ties_go_to_the_earliest_bid(w3: Web3) -> None:
    auction = deploy(w3, "SealedBidAuction", OPEN_SECONDS)
    assert send(w3, auction.functions.bid(300), sender=ALICE).status == 1
    assert send(w3, auction.functions.bid(300), sender=BOB).status == 1
    mine_until(w3, auction.functions.endTime().call())
    assert send(w3, auction.functions.close()).status == 1
    assert auction.functions.winner().call() == [ALICE.address, 300]


# ---------------------------------------------------------------- PrivateVote


def test_ballots_are_secret_and_tallies_wait_for_the_deadline(w3: Web3) -> None:
    dave = funded_account(w3)
    outsider = funded_account(w3)
    voters = [OWNER.address, ALICE.address, BOB.address, dave.address]
    vote = deploy(w3, "PrivateVote", 3, OPEN_SECONDS, voters)
    deadline = vote.functions.deadline().call()
    assert vote.functions.optionCount().call() == 3
    assert all(vote.functions.isVoter(v).call() for v in voters)
    assert not vote.functions.isVoter(outsider.address).call()

    reverts_with(vote.functions.results().call, {}, "VotingOpen", ["uint256"], deadline)
    reverts_with(
        vote.functions.myBallot().call,
        {"from": dave.address},
        "NotVoted",
        ["address"],
        dave.address,
    )

    # OWNER is first to pick option 1, ALICE second; BOB first to pick option 2. Receipts show
    # gas used, so every vote must cost the same, whatever was voted before it.
    gas = []
    for voter, option in ((OWNER, 1), (ALICE, 1), (BOB, 2)):
        receipt = send(w3, vote.functions.vote(option), sender=voter)
        assert receipt.status == 1
        assert receipt.logs == []
        gas.append(receipt.gasUsed)
    assert len(set(gas)) == 1, gas

    # each voter reads back their own ballot only; there is no function for anyone else's
    assert vote.functions.myBallot().call({"from": OWNER.address}) == 1
    assert vote.functions.myBallot().call({"from": BOB.address}) == 2
    assert views_taking_an_address(vote) == {"isVoter"}
    reverts_with(
        vote.functions.results().call, {"from": OWNER.address}, "VotingOpen", ["uint256"], deadline
    )

    reverts_with(
        vote.functions.vote(0).call,
        {"from": outsider.address},
        "NotAVoter",
        ["address"],
        outsider.address,
    )
    reverts_with(
        vote.functions.vote(2).call,
        {"from": ALICE.address},
        "AlreadyVoted",
        ["address"],
        ALICE.address,
    )
    reverts_with(
        vote.functions.vote(3).call,
        {"from": dave.address},
        "InvalidOption",
        ["uint256", "uint256"],
        3,
        3,
    )

    mine_until(w3, deadline)
    reverts_with(
        vote.functions.vote(0).call, {"from": dave.address}, "VotingClosed", ["uint256"], deadline
    )
    assert vote.functions.results().call() == [0, 2, 1]
    # after the deadline the ballots are still secret; only the tallies are out
    assert vote.functions.myBallot().call({"from": ALICE.address}) == 1
