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
