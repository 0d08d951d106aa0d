"""The observer's own checks of finality: a quorum of validators' commit seals, the parent
link, the genesis commitment to the terms (pure; no node, no enclave)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from eth_keys import keys
from eth_utils import keccak

from gateway.consensus.qbft import Block, commit_seal_digest
from gateway.consensus.qbft.messages import rlp_encode, sign_digest
from gateway.enclave import messages as m
from gateway.observer import (
    BlockRefused,
    HeaderStore,
    ObserverBackend,
    ObserverRefusal,
    decode_header,
    terms_digest,
)

KEYS = [keys.PrivateKey(keccak(b"observer test validator %d" % i)) for i in range(5)]
VALIDATORS = [k.public_key.to_canonical_address() for k in KEYS[:4]]
TERMS: dict[str, Any] = {"chainId": 1337, "validators": ["0x" + v.hex() for v in VALIDATORS]}


def header(number: int, parent: bytes, extra: bytes = b"") -> bytes:
    fields: list[object] = [
        parent, keccak(rlp_encode([])), b"\x00" * 20, b"\x11" * 32, b"\x22" * 32, b"\x33" * 32,
        b"\x00" * 256, 0, number, 30_000_000, 21_000 * number, 1_764_000_000 + number, extra,
        b"\x00" * 32, b"\x00" * 8, 7,
    ]  # fmt: skip
    return rlp_encode(fields)


def block(number: int, parent: bytes, signers: list[int], round_: int = 0,
          extra: bytes = b"") -> dict[str, Any]:  # fmt: skip
    raw = header(number, parent, extra)
    proposer = VALIDATORS[number % 4]
    digest = commit_seal_digest(Block(number, proposer, raw).digest, round_)
    return {
        "number": number,
        "hash": keccak(raw),
        "header": raw,
        "body": None,
        "round": round_,
        "proposer": proposer,
        "seals": [sign_digest(KEYS[i], digest) for i in signers],
    }


@pytest.fixture
def chain(tmp_path: Path) -> tuple[HeaderStore, dict[str, Any]]:
    store = HeaderStore(tmp_path, 1337, VALIDATORS)
    genesis = block(0, b"\x00" * 32, [], extra=terms_digest(TERMS))
    store.pin_genesis(genesis["hash"])
    store.check(genesis, terms_digest(TERMS))
    store.add(genesis)
    return store, genesis


def test_a_quorum_of_seals_is_final(chain: tuple[HeaderStore, dict[str, Any]]) -> None:
    store, genesis = chain
    one = block(1, genesis["hash"], [0, 1, 2], round_=2)
    store.check(one, None)
    store.add(one)
    two = block(2, one["hash"], [1, 2, 3])
    store.check(two, None)
    store.add(two)
    assert store.head == 2
    assert decode_header(two["header"])["number"] == "0x2"


@pytest.mark.parametrize(
    ("signers", "what"),
    [
        ([0, 1], "two of four"),
        ([0, 0, 0], "one validator three times"),
        ([0, 1, 4], "a non-validator's seal"),
    ],
)
def test_without_a_quorum_a_block_is_refused(
    chain: tuple[HeaderStore, dict[str, Any]], signers: list[int], what: str
) -> None:
    store, genesis = chain
    with pytest.raises(BlockRefused) as caught:
        store.check(block(1, genesis["hash"], signers), None)
    assert caught.value.reason == "no-quorum", what


def test_seals_of_another_round_or_header_are_refused(
    chain: tuple[HeaderStore, dict[str, Any]],
) -> None:
    store, genesis = chain
    moved = block(1, genesis["hash"], [0, 1, 2], round_=0)
    moved["round"] = 1  # the seals signed round 0
    with pytest.raises(BlockRefused, match="no-quorum"):
        store.check(moved, None)
    other = block(1, genesis["hash"], [0, 1, 2])
    swapped = {**other, "header": header(1, genesis["hash"], b"x")}
    swapped["hash"] = keccak(swapped["header"])
    with pytest.raises(BlockRefused, match="no-quorum"):
        store.check(swapped, None)


def test_chain_links_and_hashes_are_checked(chain: tuple[HeaderStore, dict[str, Any]]) -> None:
    store, _ = chain
    with pytest.raises(BlockRefused, match="bad-parent"):
        store.check(block(1, b"\x99" * 32, [0, 1, 2]), None)
    with pytest.raises(BlockRefused, match="gap"):
        store.check(block(5, b"\x99" * 32, [0, 1, 2]), None)
    lying = block(1, b"\x99" * 32, [0, 1, 2])
    lying["hash"] = b"\x01" * 32
    with pytest.raises(BlockRefused, match="bad-hash"):
        store.check(lying, None)


def test_genesis_must_commit_to_the_terms(tmp_path: Path) -> None:
    store = HeaderStore(tmp_path, 1337, VALIDATORS)
    with pytest.raises(BlockRefused, match="wrong-terms"):
        store.check(block(0, b"\x00" * 32, [], extra=b"other terms"), terms_digest(TERMS))


def test_the_backend_serves_headers_and_finality_only(
    chain: tuple[HeaderStore, dict[str, Any]],
) -> None:
    store, genesis = chain
    one = block(1, genesis["hash"], [0, 1, 3], round_=1)
    store.add(one)
    backend = ObserverBackend(store, TERMS)

    async def scenario() -> None:
        latest = await backend.request(m.GetBlock("finalized"))
        assert latest["hash"] == "0x" + one["hash"].hex() and latest["transactions"] == []
        by_hash = await backend.request(m.GetBlock({"hash": genesis["hash"]}))
        assert by_hash["number"] == "0x0"
        proof = await backend.request(m.GetFinality(1))
        assert proof["seals"] == one["seals"] and proof["quorum"] == 3 and proof["round"] == 1
        with pytest.raises(ObserverRefusal) as caught:
            await backend.request(m.GetAccount("balance", b"\x00" * 20, "latest"))
        assert caught.value.reason_code == "observer-node"
        assert "observer" in caught.value.message

    asyncio.run(scenario())


# ----------------------------------------------------------------------------- governance


def governed_terms() -> dict[str, Any]:
    """Terms with members (so with governance) whose validators are this file's four."""
    from eth_account import Account

    addrs = ["0x" + v.hex() for v in VALIDATORS]
    return {
        **TERMS,
        "validators": addrs,
        "nodes": [
            {"name": f"n{i}", "address": a, "role": "validator"} for i, a in enumerate(addrs)
        ],
        "measurements": ["0x" + "00" * 32],
        "platforms": ["virtual"],
        "allowVirtual": True,
        "privacy": "open",
        "members": [{"address": Account.from_key(k).address.lower()} for k in MEMBER_KEYS],
    }


MEMBER_KEYS = [keccak(b"observer test member %d" % i) for i in range(3)]


def test_an_observer_follows_governance_from_the_public_sections(tmp_path: Path) -> None:
    """On a chain with governance each block brings its section in the clear: the observer
    checks it against the header's extraData and applies it as a node does, so its validator
    set follows the votes (here a validator removed by two of three members), it serves the
    coco_gov* reads, and it keeps the state across a restart. A missing, altered or
    uncommitted section is refused as ``bad-governance``."""
    from gateway.governance import section as gsec
    from gateway.governance import state as gs
    from gateway.governance import typed

    terms = governed_terms()
    store = HeaderStore(tmp_path, 1337, VALIDATORS, terms)
    genesis = block(0, b"\x00" * 32, [], extra=terms_digest(terms))
    store.pin_genesis(genesis["hash"])
    store.check(genesis, terms_digest(terms))
    store.add(genesis)
    domain = typed.Domain(1337, genesis["hash"])
    gone = VALIDATORS[3]
    proposal = typed.Proposal(
        bytes.fromhex(typed_address(MEMBER_KEYS[0])),
        1_764_000_001,
        (typed.Action.make("remove_validator", {"address": "0x" + gone.hex()}),),
    )
    pid = typed.proposal_id(proposal)
    first = [
        typed.encode_record(typed.sign(MEMBER_KEYS[0], domain, proposal)),
        typed.encode_record(typed.sign(MEMBER_KEYS[0], domain, typed.Ballot(pid, True, 0))),
    ]
    second = [typed.encode_record(typed.sign(MEMBER_KEYS[1], domain, typed.Ballot(pid, True, 0)))]

    def governed(number: int, parent: bytes, records: list[bytes], signers: list[int]) -> dict:
        made = block(number, parent, signers, extra=gsec.commitment(records))
        return {**made, "gov": gsec.section_bytes(records)}

    one = governed(1, genesis["hash"], first, [0, 1, 2])
    for bad, what in [
        ({**one, "gov": None}, "no section"),
        ({**one, "gov": gsec.section_bytes(second)}, "another section"),
        ({**one, "gov": gsec.section_bytes(first) + b" "}, "not canonical"),
        ({**block(1, genesis["hash"], [0, 1, 2]), "gov": one["gov"]}, "not committed"),
    ]:
        with pytest.raises(BlockRefused) as refused:
            store.check(bad, None)
        assert refused.value.reason == "bad-governance", what
    store.check(one, None)
    store.add(one)
    two = governed(2, one["hash"], second, [0, 1, 2])
    store.check(two, None)
    store.add(two)
    state = store.governance()
    assert state is not None and state.proposals[pid].status == "accepted"
    effective = next(h for h, vals in state.validators if gone not in vals)
    assert effective > 2
    # blocks up to the change are sealed by the four; from it on by the three left
    parent, number = two, 3
    while number < effective:
        nxt = governed(number, parent["hash"], [], [0, 1, 3])
        store.check(nxt, None)
        store.add(nxt)
        parent, number = nxt, number + 1
    with_gone = governed(number, parent["hash"], [], [0, 3])  # one of three, and the removed
    with pytest.raises(BlockRefused) as refused:
        store.check(with_gone, None)
    assert refused.value.reason == "no-quorum"
    after = governed(number, parent["hash"], [], [0, 1])
    store.check(after, None)
    store.add(after)

    backend = ObserverBackend(store, terms)
    view = asyncio.run(backend.request(m.GovQuery("proposal", "0x" + pid.hex())))
    assert view["status"] == "accepted"
    proof = asyncio.run(backend.request(m.GetFinality(number)))
    assert gone not in proof["validators"] and proof["quorum"] == 2
    row = asyncio.run(backend.request(m.GovQuery("block", 1)))
    assert [typed.canonical_json(r).encode() for r in row["records"]] == first
    head_row = store.governance_row(number)
    store.close()
    again = HeaderStore(tmp_path, 1337, VALIDATORS, terms)
    reopened = again.governance()
    assert reopened is not None and head_row is not None
    assert again.head == number and gs.state_digest(reopened) == head_row[2]
    assert again.validators_for(number + 1) == list(reopened.validators_at(number + 1))
    assert gone not in again.validators_for(number + 1)
    again.close()


def typed_address(key: bytes) -> str:
    from eth_account import Account

    return str(Account.from_key(key).address[2:])
