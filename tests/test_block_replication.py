"""Blocks built in one enclave, verified and committed in others (issue 8, items 1, 2, 6).

Three real enclaves (gateway.enclave.core.Enclave, in this process) share one consortium
secret: node A builds blocks, node B accepts them on their attested diff, node C re-executes
them. All three must end with the same head, state, receipts and storage, also for a
contract that draws from the random precompile. Tampered bodies, wrong diffs, headers that
do not match and bad or too few commit seals are refused with their reason and change
nothing. The shared secret is seeded honestly: the second and third data directories get
node A's local sealing key file and its sealed consortium secret (what the join handshake
will deliver), and make their own node keys.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth_keys.datatypes import PrivateKey
from eth_utils import keccak

from gateway.consensus.qbft.messages import Block, commit_seal_digest, recover_signer, sign_digest
from gateway.devaccounts import DEV_MNEMONIC, derive
from gateway.enclave import codec
from gateway.enclave import messages as m
from gateway.enclave.blocks import (
    Candidate,
    check_diff,
    decode_header,
    open_body,
    seal_body,
)
from gateway.enclave.core import Enclave
from gateway.enclave.keys import SEALING_KEY_FILE
from gateway.enclave.runtime import serve
from gateway.errors import BlockRefused, RpcError
from gateway.execution.precompiles import BlockRandomness
from gateway.ledger import LEDGER_FILE, Ledger, read_meta

CHAIN_ID = 4242
GENESIS_TIME = 1_764_000_000
ACCOUNTS = derive(DEV_MNEMONIC, 3)


def _runtime() -> bytes:
    """A contract that draws 32 random bytes twice per call (0xc0c0) and stores them in
    slots 0 and 1."""
    draw = bytes.fromhex("6020600060006000" + "61c0c0" + "5afa50" + "600051")
    return draw + bytes.fromhex("600055") + draw + bytes.fromhex("600155") + b"\x00"


def _initcode(runtime: bytes) -> bytes:
    n = len(runtime)
    return bytes([0x60, n, 0x60, 0x0C, 0x60, 0x00, 0x39, 0x60, n, 0x60, 0x00, 0xF3]) + runtime


def _open(data_dir: Path) -> Enclave:
    alloc = [[bytes.fromhex(a.address[2:]), str(10**21)] for a in ACCOUNTS]
    return Enclave(
        m.Open(
            data_dir=str(data_dir),
            chain_id=CHAIN_ID,
            genesis_timestamp=GENESIS_TIME,
            genesis_alloc=alloc,
            dev_mnemonic=DEV_MNEMONIC,
            dev_accounts=len(ACCOUNTS),
        )
    )


def _seed_secret(source: Path, target: Path) -> None:
    """Give ``target`` the consortium secret of ``source``, sealed as ``source`` keeps it."""
    target.mkdir(parents=True)
    shutil.copyfile(source / SEALING_KEY_FILE, target / SEALING_KEY_FILE)
    sealed = read_meta(source / LEDGER_FILE, "consortium_secret.sealed")
    assert sealed is not None
    ledger = Ledger(target / LEDGER_FILE)
    ledger.put_meta("consortium_secret.sealed", sealed)
    ledger.close()


@dataclass
class Trio:
    a: Enclave  # builds
    b: Enclave  # attested-diff
    c: Enclave  # re-execute

    @property
    def all(self) -> tuple[Enclave, Enclave, Enclave]:
        return (self.a, self.b, self.c)


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[Trio]:
    a = _open(tmp_path / "a")
    _seed_secret(tmp_path / "a", tmp_path / "b")
    _seed_secret(tmp_path / "a", tmp_path / "c")
    b, c = _open(tmp_path / "b"), _open(tmp_path / "c")
    validators = (a.validator, b.validator, c.validator)
    assert len(set(validators)) == 3  # each node its own identity
    for enclave in (a, b, c):
        # what gateway.enclave.consortium sets from the consortium's terms
        enclave.consensus_validators = validators
        enclave.dev_chain = False
    b.validation_rule = "attested-diff"
    c.validation_rule = "re-execute"
    assert a.genesis_hash == b.genesis_hash == c.genesis_hash
    yield Trio(a, b, c)
    for enclave in (a, b, c):
        enclave.close()


def seals_for(
    signers: list[Enclave], candidate: Candidate, round_: int, proposer: bytes
) -> list[bytes]:
    digest = commit_seal_digest(
        Block(candidate.number, proposer, candidate.header_rlp).digest, round_
    )
    return [sign_digest(PrivateKey(e._node_key), digest) for e in signers]


def build(t: Trio, round_: int = 0) -> tuple[Candidate, list[bytes]]:
    """Node A builds the next block and commits it with A's and B's commit seals."""
    candidate = t.a.prepare_candidate(int(time.time()))
    assert candidate is not None
    seals = seals_for([t.a, t.b], candidate, round_, t.a.validator)
    t.a.commit_candidate(candidate, round_, t.a.validator, seals)
    return candidate, seals


def exported(t: Trio, number: int) -> dict[str, Any]:
    (block,) = wire(t.a, m.ExportBlocks(number, 1))
    return block  # type: ignore[no-any-return]


def wire(e: Enclave, msg: Any) -> Any:
    """``msg`` handled as the host's request would be: encoded, decoded, served, and the
    answer (or the refusal) encoded and decoded again (gateway.enclave.codec)."""
    _, decoded = codec.decode_request(codec.encode_request(7, msg))
    _, ok, payload = codec.decode_response(serve(e, 7, decoded))
    if not ok:
        raise codec.error_from(payload)
    return payload


def send(e: Enclave, sender: int, **fields: Any) -> bytes:
    address = bytes.fromhex(ACCOUNTS[sender].address[2:])
    return e.handle(m.SubmitTx(sender=address, **fields))  # type: ignore[no-any-return]


def snapshot(e: Enclave) -> tuple[Any, ...]:
    head = e.engine.head
    return (head.hash, e.ledger.head(), e.ledger.kv.dirty, len(e._candidates))


def refused(reason: str, run: Any) -> None:
    with pytest.raises(BlockRefused) as info:
        run()
    assert info.value.reason_code == reason, info.value.message


def test_three_enclaves_agree_under_both_rules(trio: Trio) -> None:
    t = trio
    contract = keccak(rlp.encode([bytes.fromhex(ACCOUNTS[0].address[2:]), 0]))[12:]
    deploy = send(t.a, 0, data=_initcode(_runtime()), gas=300_000)
    pay = send(t.a, 1, to=bytes(20), value=7)
    # block 1: B and C import it as a finalized block (catch-up, followers)
    build(t)
    result = wire(t.b, m.ImportBlocks([exported(t, 1)]))
    assert result["imported"] == 1 and result["head"] == 1
    assert result["decided"][0]["hash"] == t.a.engine.head.hash
    assert wire(t.c, m.ImportBlocks([exported(t, 1)]))["head"] == 1
    # again: nothing to do
    assert wire(t.b, m.ImportBlocks([exported(t, 1)]))["imported"] == 0
    # a refusal crosses the boundary with its reason code
    with pytest.raises(RpcError) as info:
        wire(t.c, m.ImportBlocks([{**exported(t, 1), "number": 5}]))
    assert info.value.reason_code == "bad-header"

    # block 2: transactions forwarded sealed from A to B's pool; B and C verify the proposal
    # (header + sealed body) before it is decided, and commit it on the decision
    draws = [send(t.a, 0, to=contract, gas=200_000), send(t.a, 2, to=contract, gas=200_000)]
    forwarded = wire(t.a, m.ExportPooledTxs(draws))
    assert len(forwarded) == 2
    raws = [p.raw for p in (t.a.engine.pool.get(d) for d in draws) if p is not None]
    assert len(raws) == 2 and not any(raw in blob for raw in raws for blob in forwarded)
    assert wire(t.b, m.ImportPooledTxs(forwarded)) == {"admitted": draws, "refused": 0}
    assert wire(t.b, m.ImportPooledTxs([forwarded[0][:-1] + b"\x00"]))["refused"] == 1
    proposal = t.a.prepare_candidate(int(time.time()))
    assert proposal is not None and proposal.included == draws
    for follower in (t.b, t.c):
        verified = follower.verify_candidate(proposal.header_rlp, proposal.body)
        assert verified.hash == proposal.hash
    seals = seals_for([t.b, t.c], proposal, 1, t.a.validator)
    for e in t.all:
        mine = e.candidate(proposal.hash)
        assert mine is not None
        summary = e.commit_candidate(mine, 1, t.a.validator, seals)
        assert summary["number"] == 2 and summary["transactions"] == draws
    assert t.b.handle(m.PendingTxs()) == []  # the forwarded transactions left B's pool

    heads = {e.engine.head.hash for e in t.all}
    roots = {e.engine.head.state_root for e in t.all}
    assert len(heads) == 1 and len(roots) == 1
    for tx in [deploy, pay, *draws]:
        receipts = [e.handle(m.GetReceipt(tx)) for e in t.all]
        assert receipts[0] is not None and receipts[0]["status"] == "0x1"
        assert receipts[0] == receipts[1] == receipts[2]
    slots = [[e.handle(m.GetStorage(contract, s, "latest")) for s in (0, 1)] for e in t.all]
    assert slots[0] == slots[1] == slots[2]
    assert slots[0][0] != bytes(32) and slots[0][0] != slots[0][1]  # two different draws
    for e in t.all:
        finalized = e.handle(m.GetBlock("finalized"))
        assert finalized is not None and finalized["hash"] == "0x" + e.engine.head.hash.hex()

    # finality is checkable from the seals alone
    finality = wire(t.b, m.GetFinality(2))
    assert finality["round"] == 1 and finality["quorum"] == 2
    assert finality["digest"] == commit_seal_digest(
        Block(2, t.a.validator, finality["header"]).digest, 1
    )
    signers = {recover_signer(finality["digest"], s) for s in finality["seals"]}
    assert signers == {t.b.validator, t.c.validator}
    # and the public export carries no body
    (public,) = wire(t.a, m.ExportBlocks(2, 1, public=True))
    assert public["body"] is None and public["seals"] == seals


def test_a_build_budget_cuts_the_block_and_leaves_the_rest_pooled(trio: Trio) -> None:
    """The proposer's build budget (docs/qbft.md, "Block size and the round timer"): past it
    no further transaction starts, at least one is always in, the others stay pooled for the
    next block, and a cut block verifies like any other."""
    t = trio
    sent = [send(t.a, i % 3, nonce=i // 3, to=bytes(19) + b"\x01", value=1) for i in range(6)]
    assert len(t.a.engine.pool) == 6
    cut = t.a.prepare_candidate(int(time.time()), budget=0.0)  # already spent
    assert cut is not None and len(cut.included) == 1 and cut.included[0] in sent
    assert cut.prepared is not None and cut.prepared.deferred == 5
    assert t.b.verify_candidate(cut.header_rlp, cut.body).hash == cut.hash
    assert t.c.verify_candidate(cut.header_rlp, cut.body).hash == cut.hash
    t.a.commit_candidate(cut, 0, t.a.validator, seals_for([t.a, t.b], cut, 0, t.a.validator))
    assert len(t.a.engine.pool) == 5
    rest = t.a.prepare_candidate(int(time.time()), budget=60.0)  # ample: everything fits
    assert rest is not None and sorted(rest.included) == sorted(set(sent) - set(cut.included))
    assert rest.prepared is not None and rest.prepared.deferred == 0


def test_random_bytes_of_a_block_are_a_function_of_block_and_transaction() -> None:
    key = b"k" * 32
    one = BlockRandomness(key, b"\x01" * 32, 5, 1000)
    two = BlockRandomness(key, b"\x01" * 32, 5, 1000)
    one.begin_transaction(b"\xaa" * 32)
    two.begin_transaction(b"\xaa" * 32)
    first = one.draw(100)
    assert first == two.draw(100) and len(first) == 100
    assert one.draw(100) != first  # the counter moves within a transaction
    one.begin_transaction(b"\xbb" * 32)
    assert one.draw(100) != first
    other_key = BlockRandomness(b"x" * 32, b"\x01" * 32, 5, 1000)
    other_key.begin_transaction(b"\xaa" * 32)
    assert other_key.draw(100) != first


@pytest.fixture
def proposed(trio: Trio) -> tuple[Trio, Candidate]:
    """Node A's block 1, with a transfer, built but not committed anywhere."""
    send(trio.a, 0, to=bytes(20), value=1)
    candidate = trio.a.prepare_candidate(int(time.time()))
    assert candidate is not None and len(candidate.included) == 1
    return trio, candidate


def _reseal(t: Trio, header_rlp: bytes, txs: list[bytes], writes: dict[bytes, Any]) -> bytes:
    return seal_body(t.a.keys.block_body_key, CHAIN_ID, keccak(header_rlp), txs, writes)


def _with_header(header_rlp: bytes, **changes: Any) -> bytes:
    return rlp.encode(decode_header(header_rlp).copy(**changes))


def test_bad_blocks_are_refused_with_their_reason_and_change_nothing(
    proposed: tuple[Trio, Candidate],
) -> None:
    t, good = proposed
    txs, writes = open_body(t.a.keys.block_body_key, CHAIN_ID, good.hash, good.body)
    before = {e: snapshot(e) for e in (t.b, t.c)}
    header = decode_header(good.header_rlp)
    state_root = bytes(header.state_root)

    # a tampered body does not open
    tampered = good.body[:-1] + bytes([good.body[-1] ^ 1])
    # a body sealed for this block under another secret does not open either
    foreign = seal_body(b"\x07" * 32, CHAIN_ID, good.hash, txs, writes)
    # a wrong state diff: a trie node altered, or the state root's node left out
    altered = dict(writes)
    some_node = next(k for k in writes if len(k) == 32 and k not in (good.hash, state_root))
    altered[some_node] = writes[some_node] + b"\x00"
    rootless = {k: v for k, v in writes.items() if k != state_root}
    # a diff that moves another block's lookups
    moved = dict(writes)
    moved[b"block-number-to-hash:0"] = rlp.encode(good.hash)
    # a header that does not match its diff / its execution (another gas used)
    other = _with_header(good.header_rlp, gas_used=header.gas_used + 1)
    # a header with a state root the transactions do not give
    wrong_root = _with_header(good.header_rlp, state_root=keccak(b"elsewhere"))
    # a body whose transactions are not the header's
    no_txs = _reseal(t, good.header_rlp, [], writes)
    wrong_parent = _with_header(good.header_rlp, parent_hash=keccak(b"another chain"))
    skip = _with_header(good.header_rlp, block_number=2)

    cases: list[tuple[str, Enclave, bytes, bytes]] = []
    for e in (t.b, t.c):
        cases += [
            ("bad-body", e, good.header_rlp, tampered),
            ("bad-body", e, good.header_rlp, foreign),
            ("bad-body", e, good.header_rlp, no_txs),
            ("header-mismatch", e, other, _reseal(t, other, txs, writes)),
            ("unknown-parent", e, wrong_parent, good.body),
            ("not-next", e, skip, good.body),
        ]
    cases += [
        ("bad-diff", t.b, good.header_rlp, _reseal(t, good.header_rlp, txs, altered)),
        ("state-root-mismatch", t.b, good.header_rlp, _reseal(t, good.header_rlp, txs, rootless)),
        ("bad-diff", t.b, good.header_rlp, _reseal(t, good.header_rlp, txs, moved)),
        ("header-mismatch", t.b, wrong_root, _reseal(t, wrong_root, txs, writes)),
        ("state-root-mismatch", t.c, wrong_root, _reseal(t, wrong_root, txs, writes)),
    ]
    for reason, e, header_rlp, body in cases:
        refused(reason, lambda: e.verify_candidate(header_rlp, body))  # noqa: B023
        assert snapshot(e) == before[e], reason

    # seals: too few, from a non-validator, twice the same, for another round
    seals = seals_for([t.a, t.b], good, 0, t.a.validator)
    t.a.commit_candidate(good, 0, t.a.validator, seals)
    block = exported(t, 1)
    outsider = _open(t.a.ledger.path.parent.parent / "outsider")
    try:
        foreign_seal = seals_for([outsider], good, 0, t.a.validator)
    finally:
        outsider.close()
    for bad in (
        seals[:1],
        [seals[0], foreign_seal[0]],
        [seals[0], seals[0]],
        seals_for([t.a, t.b], good, 3, t.a.validator),
        [b"\x00" * 65, seals[1]],
        [],
    ):
        for e in (t.b, t.c):
            refused("bad-seals", lambda: e.handle(m.ImportBlocks([{**block, "seals": bad}])))  # noqa: B023
            assert snapshot(e) == before[e]
    for e in (t.b, t.c):
        # a good quorum with a tampered body: refused after the seals check
        refused("bad-body", lambda: e.handle(m.ImportBlocks([{**block, "body": tampered}])))  # noqa: B023
        assert snapshot(e) == before[e]
        # the genuine block still goes in, to the same state
        assert e.handle(m.ImportBlocks([block]))["head"] == 1
        assert e.engine.head.hash == good.hash == t.a.engine.head.hash
        assert e.engine.head.state_root == t.a.engine.head.state_root
        # and another block at a committed height, with a quorum, is a conflict
        refused(
            "conflicting-block",
            lambda: e.handle(  # noqa: B023
                m.ImportBlocks(
                    [
                        {
                            **block,
                            "hash": keccak(other),
                            "header": other,
                            "seals": seals_for(
                                [t.a, t.b],
                                Candidate(1, keccak(other), b"", other, b"", {}, []),
                                0,
                                t.a.validator,
                            ),
                        }
                    ]
                )
            ),
        )


def test_attested_diff_checks(proposed: tuple[Trio, Candidate]) -> None:
    t, good = proposed
    txs, writes = open_body(t.a.keys.block_body_key, CHAIN_ID, good.hash, good.body)
    hashes = [keccak(raw) for raw in txs]
    have = t.b.ledger.kv.__contains__
    check_diff(writes, good.header_rlp, hashes, have)  # the genuine diff passes

    node = next(k for k in writes if len(k) == 32 and k != good.hash)
    root = bytes(decode_header(good.header_rlp).state_root)
    lookup = next(k for k in writes if k.startswith(b"transaction-hash-to-block:"))
    variants: list[tuple[str, dict[bytes, Any], list[bytes]]] = [
        ("bad-diff", {**writes, node: b"other"}, hashes),
        ("bad-diff", {**writes, node: None}, hashes),
        ("bad-diff", {**writes, b"v1:something-else": b"1"}, hashes),
        ("bad-diff", writes, []),  # a transaction lookup for a transaction not in the block
        ("bad-diff", {**writes, b"v1:canonical_head_hash": b"\x00" * 32}, hashes),
        ("bad-diff", {**writes, lookup: None}, hashes),
        ("header-mismatch", {k: v for k, v in writes.items() if k != good.hash}, hashes),
        ("state-root-mismatch", {k: v for k, v in writes.items() if k != root}, hashes),
    ]
    for reason, variant, tx_hashes in variants:
        refused(reason, lambda: check_diff(variant, good.header_rlp, tx_hashes, have))  # noqa: B023
    # a row already stored resolves the state root (a block that changes no state)
    assert have(bytes(t.b.engine.head.state_root))


def test_sealed_body_is_bound_to_its_block_and_chain() -> None:
    key = b"\x01" * 32
    block_hash = b"\x02" * 32
    blob = seal_body(key, CHAIN_ID, block_hash, [b"tx"], {b"k": b"v", b"gone": None})
    assert blob[0] == 1
    assert open_body(key, CHAIN_ID, block_hash, blob) == ([b"tx"], {b"k": b"v", b"gone": None})
    for args in (
        (key, CHAIN_ID, b"\x03" * 32, blob),
        (key, CHAIN_ID + 1, block_hash, blob),
        (b"\x09" * 32, CHAIN_ID, block_hash, blob),
        (key, CHAIN_ID, block_hash, b"\x02" + blob[1:]),
        (key, CHAIN_ID, block_hash, blob[:20]),
    ):
        refused("bad-body", lambda: open_body(*args))  # noqa: B023


def test_dev_chain_blocks_carry_the_v1_seal(tmp_path: Path) -> None:
    e = _open(tmp_path / "dev")
    try:
        tx = send(e, 0, to=bytes(20), value=3)
        summary = e.handle(m.BuildBlock(int(time.time())))
        assert summary["transactions"] == [tx]
        block = e.ledger.head()
        assert block is not None and block.round == 0 and block.proposer == e.validator
        assert len(block.seals) == 1 and block.body is not None
        finality = e.handle(m.GetFinality("finalized"))
        assert finality["scheme"] == "seal-v1" and finality["number"] == 1
        assert recover_signer(finality["digest"], finality["seals"][0]) == e.validator
        assert e.handle(m.BuildBlock(int(time.time()))) is None  # nothing to build
    finally:
        e.close()


def test_a_format_3_dev_chain_is_migrated_and_keeps_going(tmp_path: Path) -> None:
    """A dev chain's data directory as a format-3 node left it (one block row per height
    with its v1 seal) opens: same head, same seals, and it builds on."""
    data = tmp_path / "dev"
    e = _open(data)
    sent = []
    for value in (1, 2):
        sent.append(send(e, 0, to=bytes(20), value=value))
        assert e.handle(m.BuildBlock(int(time.time())))["number"] == value  # type: ignore[index]
    head = e.engine.head.hash
    seal = e.handle(m.GetSeal("latest"))
    e.close()
    conn = sqlite3.connect(str(data / LEDGER_FILE), isolation_level=None)
    conn.executescript(
        "BEGIN;"
        "CREATE TABLE blocks_v3 (number INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE,"
        " header BLOB NOT NULL, seal BLOB NOT NULL, sealer BLOB NOT NULL);"
        "INSERT INTO blocks_v3 SELECT number, hash, header,"
        " CASE WHEN length(seals) = 0 THEN X'' ELSE substr(seals, 3) END, proposer FROM blocks;"
        "DROP TABLE blocks; DROP TABLE canonical;"
        "ALTER TABLE blocks_v3 RENAME TO blocks;"
        "UPDATE meta SET value = CAST('3' AS BLOB) WHERE name = 'format_version';"
        "COMMIT;"
    )
    conn.close()
    e = _open(data)
    try:
        assert e.ledger.get_meta("format_version") == b"4"
        assert e.engine.head.hash == head
        assert e.handle(m.GetSeal("latest")) == seal
        assert all(e.handle(m.GetReceipt(tx))["status"] == "0x1" for tx in sent)  # type: ignore[index]
        send(e, 1, to=bytes(20), value=3)
        assert e.handle(m.BuildBlock(int(time.time())))["number"] == 3  # type: ignore[index]
    finally:
        e.close()


def test_a_forwarded_sender_is_vouched_for_and_checked_before_a_block(trio: Trio) -> None:
    """A forwarded transaction carries the sender its forwarding enclave recovered (blob
    version 2) and the receiving enclave takes it as given; before the receiver puts such a
    transaction in a block it builds, it recovers the sender itself: a blob that names the
    wrong sender (only a holder of the consortium secret can seal one) is admitted as that
    sender's, but never built into a block, and leaves the pool."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    t = trio
    zero, one = (bytes.fromhex(a.address[2:]) for a in ACCOUNTS[:2])
    genuine = send(t.a, 0, to=one, value=1, gas=21_000)
    blobs = wire(t.a, m.ExportPooledTxs([genuine]))
    assert len(blobs) == 1 and blobs[0][0] == 2
    assert wire(t.b, m.ImportPooledTxs(blobs)) == {"admitted": [genuine], "refused": 0}
    pooled = t.b.engine.pool.get(genuine)
    assert pooled is not None and pooled.vouched and pooled.sender == zero

    # a transaction account 0 signed with account 1's next nonce, forwarded under account
    # 1's name (so it is executable for that sender)
    from eth_account import Account

    signed = Account.sign_transaction(
        {"chainId": CHAIN_ID, "nonce": 0, "to": ACCOUNTS[2].address, "value": 2,
         "gas": 21_000, "gasPrice": 10**10},
        ACCOUNTS[0].private_key,
    )  # fmt: skip
    forged_raw = bytes(signed.raw_transaction)
    nonce = b"\x07" * 12
    sealed = AESGCM(t.b.keys.forwarded_tx_key).encrypt(
        nonce, one + forged_raw, t.b._forwarded_ad(2)
    )
    forged = keccak(forged_raw)
    assert wire(t.b, m.ImportPooledTxs([b"\x02" + nonce + sealed]))["admitted"] == [forged]
    assert t.b.engine.pool.get(forged).sender == one  # type: ignore[union-attr]
    # the old form (the raw transaction alone) is still accepted and recovered here
    v1 = t.a.engine.pool.get(send(t.a, 2, to=one, value=3, gas=21_000))
    assert v1 is not None
    v1_blob = (
        b"\x01"
        + nonce
        + AESGCM(t.b.keys.forwarded_tx_key).encrypt(nonce, v1.raw, t.b._forwarded_ad(1))
    )
    assert wire(t.b, m.ImportPooledTxs([v1_blob]))["admitted"] == [v1.hash]
    assert not t.b.engine.pool.get(v1.hash).vouched  # type: ignore[union-attr]

    built = t.b.prepare_candidate(int(time.time()))
    assert built is not None
    assert genuine in built.included and v1.hash in built.included
    assert forged not in built.included
    assert [h for h, _ in built.dropped] == [forged]
    assert not t.b.engine.pool.get(genuine).vouched  # type: ignore[union-attr]
    t.b.commit_candidate(built, 0, t.b.validator, [])
    assert t.b.engine.pool.get(forged) is None
