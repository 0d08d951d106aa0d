"""QBFT justification predicates and message validation, and the node's step function on single
messages: what is refused and why, what waits for block validation, what memory stays bounded."""

from __future__ import annotations

from eth_keys import keys

from gateway.consensus.qbft import (
    MAX_ROUND,
    Block,
    Broadcast,
    Commit,
    Decide,
    Discarded,
    FinalizedBlock,
    HeightContext,
    Invalid,
    NewBlock,
    Prepare,
    PreparedCertificate,
    Proposal,
    ProposeNeeded,
    QbftConfig,
    QbftNode,
    RoundChange,
    RoundSnapshot,
    ScheduleTimer,
    SignedPayload,
    UnsignedCommit,
    UnsignedPrepare,
    UnsignedProposal,
    UnsignedRoundChange,
    ValidateBlock,
    commit_seal_digest,
    decode_message,
    encode_message,
    proposer,
    qbft_domain,
)
from gateway.consensus.qbft.messages import sign_digest
from gateway.consensus.qbft.validation import (
    is_highest_prepared,
    is_proposal_justification,
    valid_round_change,
    validate_commit,
    validate_prepare,
    validate_proposal,
    validate_round_change,
)

N = 4
KEYS = [keys.PrivateKey((i + 1).to_bytes(32, "big")) for i in range(N)]
ADDR = [bytes(k.public_key.to_canonical_address()) for k in KEYS]
VALS = tuple(sorted(ADDR))
KEY_OF = dict(zip(ADDR, KEYS, strict=True))
OUTSIDER = keys.PrivateKey(b"\x42" * 32)
H = 5
CTX = HeightContext(H, VALS, VALS[1])  # previous block by VALS[1]: round r is led by VALS[(2+r)%4]


def leader_key(round_: int, ctx: HeightContext = CTX) -> keys.PrivateKey:
    return KEY_OF[proposer(round_, ctx)]


def others(round_: int) -> list[keys.PrivateKey]:
    return [k for k in KEYS if k is not leader_key(round_)]


def prepare(k: keys.PrivateKey, round_: int, digest: bytes, height: int = H) -> SignedPayload:  # type: ignore[type-arg]
    return SignedPayload.sign(UnsignedPrepare(height, round_, digest), k)


def rc(
    k: keys.PrivateKey, round_: int, prepared: tuple[int, bytes] | None = None, height: int = H
) -> SignedPayload:  # type: ignore[type-arg]
    pr, pv = prepared if prepared is not None else (None, None)
    return SignedPayload.sign(UnsignedRoundChange(height, round_, pr, pv), k)


def proposal(
    round_: int,
    block: Block,
    rcs: tuple[SignedPayload, ...] = (),  # type: ignore[type-arg]
    prepares: tuple[SignedPayload, ...] = (),  # type: ignore[type-arg]
    k: keys.PrivateKey | None = None,
    height: int = H,
) -> Proposal:
    k = k or leader_key(round_)
    return Proposal(
        SignedPayload.sign(UnsignedProposal(height, round_, block.digest), k), block, rcs, prepares
    )


def own_block(round_: int, payload: bytes = b"b") -> Block:
    return Block(H, proposer(round_, CTX), payload)


# --------------------------------------------------------------------------- predicates


def test_round_zero_proposal_valid_and_its_refusals() -> None:
    blk = own_block(0)
    assert validate_proposal(proposal(0, blk), CTX) is None
    not_leader = next(k for k in KEYS if KEY_OF[proposer(0, CTX)] is not k)
    assert validate_proposal(proposal(0, blk, k=not_leader), CTX) == Invalid.WRONG_PROPOSER
    assert validate_proposal(proposal(0, blk, k=OUTSIDER), CTX) == Invalid.NOT_VALIDATOR
    assert validate_proposal(proposal(0, blk, height=H + 1), CTX) == Invalid.WRONG_HEIGHT
    wrong_height_block = Block(H + 1, blk.proposer, b"b")
    assert validate_proposal(proposal(0, wrong_height_block), CTX) == Invalid.BLOCK_HEIGHT_MISMATCH
    someone_elses = Block(H, VALS[0] if VALS[0] != blk.proposer else VALS[1], b"b")
    assert validate_proposal(proposal(0, someone_elses), CTX) == Invalid.BLOCK_PROPOSER_MISMATCH
    p = proposal(0, blk)
    tampered = Proposal(p.proposal_payload, Block(H, blk.proposer, b"other"))
    assert validate_proposal(tampered, CTX) == Invalid.DIGEST_MISMATCH
    bad_sig = Proposal(SignedPayload(p.proposal_payload.unsigned_payload, b"\x00" * 65), blk)
    assert validate_proposal(bad_sig, CTX) == Invalid.BAD_SIGNATURE
    # A well-formed signature over other bytes recovers to a stranger.
    other_sig = SignedPayload.sign(UnsignedProposal(H, 0, b"\x09" * 32), leader_key(0)).signature
    moved = Proposal(SignedPayload(p.proposal_payload.unsigned_payload, other_sig), blk)
    assert validate_proposal(moved, CTX) == Invalid.NOT_VALIDATOR
    with_rc = proposal(0, blk, rcs=(rc(KEYS[0], 1),))
    assert validate_proposal(with_rc, CTX) == Invalid.UNEXPECTED_JUSTIFICATION


def test_later_round_proposal_needs_a_quorum_of_round_changes_for_that_round() -> None:
    blk = own_block(2)
    rcs = tuple(rc(k, 2) for k in KEYS[:3])
    assert validate_proposal(proposal(2, blk, rcs), CTX) is None
    assert validate_proposal(proposal(2, blk, rcs[:2]), CTX) == Invalid.TOO_FEW_ROUND_CHANGES
    dup = (rcs[0], rcs[0], rcs[1])
    assert validate_proposal(proposal(2, blk, dup), CTX) == Invalid.DUPLICATE_AUTHORS
    wrong_round = (rcs[0], rcs[1], rc(KEYS[2], 1))
    assert validate_proposal(proposal(2, blk, wrong_round), CTX) == Invalid.BAD_ROUND_CHANGE
    outsider = (rcs[0], rcs[1], rc(OUTSIDER, 2))
    assert validate_proposal(proposal(2, blk, outsider), CTX) == Invalid.BAD_ROUND_CHANGE
    forged = (rcs[0], rcs[1], SignedPayload(rcs[2].unsigned_payload, rcs[0].signature))
    assert validate_proposal(proposal(2, blk, forged), CTX) in (
        Invalid.DUPLICATE_AUTHORS,
        Invalid.BAD_ROUND_CHANGE,
    )
    # More round changes than validators is refused before any signature is recovered.
    assert validate_proposal(proposal(2, blk, rcs * 2), CTX) == Invalid.TOO_MANY_ENTRIES
    # Nobody prepared: no prepares may ride along.
    extra = (prepare(KEYS[0], 1, blk.digest),)
    assert validate_proposal(proposal(2, blk, rcs, extra), CTX) == Invalid.UNEXPECTED_JUSTIFICATION


def test_later_round_proposal_must_repropose_the_highest_prepared_value() -> None:
    old = Block(H, proposer(0, CTX), b"prepared in round 0")
    newer = Block(H, proposer(1, CTX), b"prepared in round 1")
    prepares1 = tuple(prepare(k, 1, newer.digest) for k in KEYS[:3])
    rcs = (
        rc(KEYS[0], 3, (0, old.digest)),
        rc(KEYS[1], 3, (1, newer.digest)),
        rc(KEYS[2], 3),
    )
    assert is_highest_prepared(rcs[1], rcs) and not is_highest_prepared(rcs[0], rcs)
    assert validate_proposal(proposal(3, newer, rcs, prepares1), CTX) is None
    # The lower prepared value, or a fresh block, is refused.
    prepares0 = tuple(prepare(k, 0, old.digest) for k in KEYS[:3])
    assert (
        validate_proposal(proposal(3, old, rcs, prepares0), CTX) == Invalid.PREPARED_VALUE_MISMATCH
    )
    assert validate_proposal(proposal(3, own_block(3), rcs), CTX) == Invalid.PREPARED_VALUE_MISMATCH
    # The prepares must be a quorum, distinct, for that round and value, from validators.
    assert (
        validate_proposal(proposal(3, newer, rcs, prepares1[:2]), CTX) == Invalid.TOO_FEW_PREPARES
    )
    dup = (prepares1[0], prepares1[0], prepares1[1])
    assert validate_proposal(proposal(3, newer, rcs, dup), CTX) == Invalid.DUPLICATE_AUTHORS
    wrong_round = (*prepares1[:2], prepare(KEYS[2], 0, newer.digest))
    assert validate_proposal(proposal(3, newer, rcs, wrong_round), CTX) == Invalid.BAD_PREPARE
    outsider = (*prepares1[:2], prepare(OUTSIDER, 1, newer.digest))
    assert validate_proposal(proposal(3, newer, rcs, outsider), CTX) == Invalid.BAD_PREPARE
    # Two round changes naming different values for one prepared round cannot both be honest.
    clash = (rc(KEYS[0], 3, (1, old.digest)), rcs[1], rcs[2])
    assert (
        validate_proposal(proposal(3, newer, clash, prepares1), CTX)
        == Invalid.INCONSISTENT_PREPARED
    )


def test_round_change_validation() -> None:
    blk = Block(H, proposer(0, CTX), b"x")
    prepares = tuple(prepare(k, 0, blk.digest) for k in KEYS[:3])
    good = RoundChange(rc(KEYS[3], 1, (0, blk.digest)), blk, prepares)
    assert validate_round_change(good, CTX) is None
    assert validate_round_change(RoundChange(rc(KEYS[3], 1)), CTX) is None
    assert valid_round_change(rc(KEYS[3], 1, (1, blk.digest)), H, 1, VALS) is False
    assert (
        validate_round_change(RoundChange(rc(KEYS[3], 1, (1, blk.digest)), blk, prepares), CTX)
        == Invalid.BAD_ROUND_CHANGE
    )
    assert (
        validate_round_change(RoundChange(rc(KEYS[3], 1, (0, blk.digest))), CTX)
        == Invalid.MISSING_PREPARED_BLOCK
    )
    other = Block(H, blk.proposer, b"y")
    assert (
        validate_round_change(RoundChange(rc(KEYS[3], 1, (0, blk.digest)), other, prepares), CTX)
        == Invalid.PREPARED_VALUE_MISMATCH
    )
    assert (
        validate_round_change(RoundChange(rc(KEYS[3], 1, (0, blk.digest)), blk, prepares[:2]), CTX)
        == Invalid.TOO_FEW_PREPARES
    )
    self_made = (prepare(KEYS[3], 0, blk.digest),) * 3
    assert (
        validate_round_change(RoundChange(rc(KEYS[3], 1, (0, blk.digest)), blk, self_made), CTX)
        == Invalid.DUPLICATE_AUTHORS
    )
    assert (
        validate_round_change(RoundChange(rc(KEYS[3], 1), blk, ()), CTX)
        == Invalid.UNEXPECTED_JUSTIFICATION
    )
    assert validate_round_change(RoundChange(rc(OUTSIDER, 1)), CTX) == Invalid.NOT_VALIDATOR
    assert (
        validate_round_change(RoundChange(rc(KEYS[3], 1, height=H - 1)), CTX)
        == Invalid.WRONG_HEIGHT
    )
    assert validate_round_change(RoundChange(rc(KEYS[3], MAX_ROUND)), CTX) is None
    huge = RoundChange(
        SignedPayload(UnsignedRoundChange(H, MAX_ROUND + 1, None, None), b"\x00" * 65)
    )
    assert validate_round_change(huge, CTX) == Invalid.ROUND_OUT_OF_RANGE


def test_prepare_and_commit_validation() -> None:
    d = b"\x33" * 32
    assert validate_prepare(Prepare(prepare(KEYS[0], 0, d)), CTX) is None
    assert validate_prepare(Prepare(prepare(OUTSIDER, 0, d)), CTX) == Invalid.NOT_VALIDATOR
    assert (
        validate_prepare(Prepare(prepare(KEYS[0], 0, d, height=H + 2)), CTX) == Invalid.WRONG_HEIGHT
    )
    seal = sign_digest(KEYS[0], commit_seal_digest(d, 0))
    good = Commit(SignedPayload.sign(UnsignedCommit(H, 0, d, seal), KEYS[0]))
    assert validate_commit(good, CTX) is None
    # A seal by someone else, or over another round, is not this validator's commit seal.
    other_seal = sign_digest(KEYS[1], commit_seal_digest(d, 0))
    assert (
        validate_commit(
            Commit(SignedPayload.sign(UnsignedCommit(H, 0, d, other_seal), KEYS[0])), CTX
        )
        == Invalid.BAD_COMMIT_SEAL
    )
    late_seal = sign_digest(KEYS[0], commit_seal_digest(d, 1))
    assert (
        validate_commit(
            Commit(SignedPayload.sign(UnsignedCommit(H, 0, d, late_seal), KEYS[0])), CTX
        )
        == Invalid.BAD_COMMIT_SEAL
    )


def test_justification_predicate_directly() -> None:
    blk = own_block(1)
    rcs = tuple(rc(k, 1) for k in KEYS[:3])
    assert is_proposal_justification(rcs, (), 1, blk, proposer(1, CTX), CTX) is None
    assert (
        is_proposal_justification(
            rcs, (), 1, blk, VALS[0] if proposer(1, CTX) != VALS[0] else VALS[1], CTX
        )
        == Invalid.BLOCK_PROPOSER_MISMATCH
    )


# ---------------------------------------------------------------- the node, one step at a time


def make_node(
    i: int,
    *,
    height: int = H,
    last: bytes | None = VALS[1],
    now: float = 0.0,
    snapshot: RoundSnapshot | None = None,
    **cfg: object,
) -> QbftNode:
    config = QbftConfig(validators=VALS, **cfg)  # type: ignore[arg-type]
    return QbftNode(
        config, KEY_OF[VALS[i]], height=height, last_proposer=last, now=now, snapshot=snapshot
    )


def broadcasts(effects: list[object]) -> list[object]:
    return [e.message for e in effects if isinstance(e, Broadcast)]


def discarded(effects: list[object]) -> list[Invalid]:
    return [e.reason for e in effects if isinstance(e, Discarded)]


def test_no_prepare_before_the_block_is_validated_and_none_if_invalid() -> None:
    leader = VALS.index(proposer(0, CTX))
    follower = (leader + 1) % N
    for ok in (True, False):
        node = make_node(follower)
        m = proposal(0, own_block(0))
        effects = node.receive(m, 0.1)
        assert [e for e in effects if isinstance(e, ValidateBlock)] == [
            ValidateBlock(m.proposed_block, 0)
        ]
        assert broadcasts(effects) == []
        effects = node.block_validated(m.proposed_block.digest, ok, 0.2)
        sent = broadcasts(effects)
        if ok:
            assert len(sent) == 1 and isinstance(sent[0], Prepare)
            assert sent[0].prepare_payload.unsigned_payload.digest == m.proposed_block.digest
        else:
            assert sent == []


def test_leader_asks_for_a_block_and_a_quorum_decides_it() -> None:
    leader = VALS.index(proposer(0, CTX))
    node = make_node(leader)
    effects = node.tick(0.0)
    assert ProposeNeeded(H, 0) in effects
    effects = node.propose_value(H, 0, b"the block", 0.0)
    sent = broadcasts(effects)
    assert isinstance(sent[0], Proposal) and isinstance(sent[1], Prepare)
    digest = sent[0].proposed_block.digest
    for k in [KEY_OF[v] for v in VALS if v != VALS[leader]][:2]:
        node.receive(Prepare(prepare(k, 0, digest)), 0.1)
    commits = [KEY_OF[v] for v in VALS if v != VALS[leader]][:2]
    decided: list[object] = []
    for k in commits:
        seal = sign_digest(k, commit_seal_digest(digest, 0))
        decided += node.receive(
            Commit(SignedPayload.sign(UnsignedCommit(H, 0, digest, seal), k)), 0.2
        )
    decides = [e for e in decided if isinstance(e, Decide)]
    assert len(decides) == 1 and decides[0].finalized.block.payload == b"the block"
    assert len(decides[0].finalized.commit_seals) == 3
    assert node.height == H + 1 and node.round == 0


def test_refused_messages_are_reported_with_their_reason_and_change_nothing() -> None:
    node = make_node(0)
    before = node.snapshot()
    assert discarded(node.receive(Prepare(prepare(OUTSIDER, 0, b"\x01" * 32)), 0.1)) == [
        Invalid.NOT_VALIDATOR
    ]
    bad = Prepare(SignedPayload(UnsignedPrepare(H, 0, b"\x01" * 32), b"\x02" * 64 + b"\x07"))
    assert discarded(node.receive(bad, 0.1)) == [Invalid.BAD_SIGNATURE]
    forged = proposal(2, own_block(2), tuple(rc(KEYS[3], 2) for _ in range(3)))
    assert discarded(node.receive(forged, 0.1)) in (
        [Invalid.WRONG_PROPOSER],
        [Invalid.DUPLICATE_AUTHORS],
    )
    far = Prepare(prepare(KEYS[1], 0, b"\x01" * 32, height=H + 1000))
    assert discarded(node.receive(far, 0.1)) == [Invalid.WRONG_HEIGHT]
    assert node.snapshot() == before


def test_huge_rounds_and_floods_do_not_grow_memory() -> None:
    node = make_node(0, future_messages_per_sender=8)
    k = KEYS[ADDR.index(VALS[3])]
    for r in range(1, 2000):
        node.receive(RoundChange(rc(k, MAX_ROUND - r)), 0.1)
        node.receive(Prepare(prepare(k, r, b"\x05" * 32)), 0.1)
        node.receive(Prepare(prepare(k, 0, b"\x05" * 32, height=H + 1 + r % 5)), 0.1)
    assert len(node.round_changes.latest) == 1
    assert len(node.future) <= 8
    assert node.round == 0  # one sender is not f+1


def test_f_plus_one_round_changes_pull_a_node_to_the_lowest_later_round() -> None:
    for early, expect in ((True, 3), (False, 0)):
        node = make_node(0, early_round_change=early)
        ks = [KEY_OF[v] for v in VALS[1:]]
        node.receive(RoundChange(rc(ks[0], 5)), 0.1)
        assert node.round == 0
        effects = node.receive(RoundChange(rc(ks[1], 3)), 0.2)
        assert node.round == expect
        if early:
            sent = broadcasts(effects)
            assert any(isinstance(m, RoundChange) and m.round == 3 for m in sent)


def test_round_timer_expiry_sends_a_round_change_with_the_prepared_certificate() -> None:
    node = make_node(0, base_round_timeout=1.0)
    blk = own_block(0)
    cert = PreparedCertificate(blk, 0, tuple(prepare(k, 0, blk.digest) for k in KEYS[:3]))
    node.latest_prepared = cert
    assert broadcasts(node.tick(0.5)) == []
    sent = broadcasts(node.tick(1.0))
    assert len(sent) == 1 and isinstance(sent[0], RoundChange)
    m = sent[0]
    assert m.round == 1 and m.proposed_block_for_next_round == blk
    assert validate_round_change(m, CTX) is None
    # Timers grow: round 1 lasts 2 s from its start (two others are in round 1 too).
    for k in [KEY_OF[v] for v in VALS if v != VALS[0]][:2]:
        node.receive(RoundChange(rc(k, 1)), 1.5)
    assert broadcasts(node.tick(2.9)) == []
    assert [x.round for x in broadcasts(node.tick(3.0))] == [2]  # type: ignore[attr-defined]


def test_a_restarted_validator_never_prepares_a_second_value_in_a_round() -> None:
    leader = VALS.index(proposer(0, CTX))
    follower = (leader + 1) % N
    first = own_block(0, b"first")
    snap = RoundSnapshot(H, 0, first.digest, None)
    node = make_node(follower, now=5.0, snapshot=snap)
    second = proposal(0, own_block(0, b"second"))
    node.receive(second, 5.1)
    assert broadcasts(node.block_validated(second.proposed_block.digest, True, 5.2)) == []
    node2 = make_node(follower, now=5.0, snapshot=snap)
    same = proposal(0, first)
    node2.receive(same, 5.1)
    assert [type(m) for m in broadcasts(node2.block_validated(first.digest, True, 5.2))] == [
        Prepare
    ]


def test_a_validator_alone_in_a_round_waits_there_and_repeats_its_round_change() -> None:
    node = make_node(0, base_round_timeout=1.0, max_round_timeout=30.0)
    # A long pause: one round change (round 1, which needs nobody), not one per missed round.
    sent = broadcasts(node.tick(1000.0))
    assert [(type(m), m.round) for m in sent] == [(RoundChange, 1)]  # type: ignore[attr-defined]
    # Round 1 expires (2 s) with nobody else past round 0: stay, send the same round change.
    again = broadcasts(node.tick(1002.0))
    assert again == sent and node.round == 1
    # One other validator in round 1 is not f+1 = 2.
    others = [KEY_OF[v] for v in VALS if v != VALS[0]]
    node.receive(RoundChange(rc(others[0], 1)), 1002.5)
    assert [m.round for m in broadcasts(node.tick(1004.0))] == [1]  # type: ignore[attr-defined]
    # Two others at round 1 or later: the timeout moves it on.
    node.receive(RoundChange(rc(others[1], 1)), 1004.5)
    assert [m.round for m in broadcasts(node.tick(1006.0))] == [2]  # type: ignore[attr-defined]
    assert node.round == 2


def test_votes_for_another_round_do_not_count_toward_this_rounds_quorum() -> None:
    leader = VALS.index(proposer(1, CTX))
    node = make_node(leader)
    ks = [KEY_OF[v] for v in VALS if v != VALS[leader]]
    for k in ks:  # round changes into round 1, which this node leads
        node.receive(RoundChange(rc(k, 1)), 0.1)
    assert node.round == 1
    node.propose_value(H, 1, b"round one block", 0.2)
    digest = node.round_state.proposal.proposed_block.digest  # type: ignore[union-attr]
    # Prepares for round 0 (earlier) are dropped; for round 2 (later) they wait in the buffer.
    for k in ks:
        node.receive(Prepare(prepare(k, 0, digest)), 0.3)
        node.receive(Prepare(prepare(k, 2, digest)), 0.3)
    assert set(node.round_state.prepares) == {VALS[leader]}
    assert not node.round_state.sent_commit
    assert len(node.future) == len(ks)
    # The right round's prepares make it prepared and send its COMMIT.
    sent = [
        m for k in ks[:2] for m in broadcasts(node.receive(Prepare(prepare(k, 1, digest)), 0.4))
    ]
    assert [type(m) for m in sent] == [Commit]
    assert node.latest_prepared is not None and node.latest_prepared.round == 1


# ---------------------------------------------------------------- v2: one chain's messages


def test_a_message_signed_for_another_chain_is_refused_as_wrong_chain() -> None:
    """A validator of two consortia (the same key in both): its ROUND-CHANGE, PREPARE and
    proposal for chain B, replayed into chain A, are refused as ``wrong-chain`` and change
    nothing; relabelled with A's domain, the signature no longer recovers to it."""
    genesis_a, genesis_b = b"\xaa" * 32, b"\xbb" * 32
    config_a = {"chain_id": 1001, "genesis_hash": genesis_a}
    config_b = {"chain_id": 1002, "genesis_hash": genesis_b}
    domain_a = QbftConfig(validators=VALS, **config_a).domain  # type: ignore[arg-type]
    domain_b = QbftConfig(validators=VALS, **config_b).domain  # type: ignore[arg-type]
    assert domain_a == qbft_domain(1001, genesis_a) != domain_b
    # the same chain id under another genesis is another chain too
    assert qbft_domain(1001, genesis_b) not in (domain_a, domain_b)
    node = make_node(0, **config_a)
    sender = KEYS[1]
    author = bytes(sender.public_key.to_canonical_address())
    for_b = [
        RoundChange(SignedPayload.sign(UnsignedRoundChange(H, 1, None, None), sender, domain_b)),
        Prepare(SignedPayload.sign(UnsignedPrepare(H, 0, b"\x11" * 32), sender, domain_b)),
    ]
    leader = leader_key(0)
    blk = Block(H, bytes(leader.public_key.to_canonical_address()), b"block of chain b")
    for_b.append(
        Proposal(SignedPayload.sign(UnsignedProposal(H, 0, blk.digest), leader, domain_b), blk)
    )
    for m in for_b:
        decoded = decode_message(encode_message(m))  # as it arrives: B's domain on the wire
        assert decoded.domain == domain_b
        effects = node.receive(decoded, 0.1)
        refused = [e for e in effects if isinstance(e, Discarded)]
        assert [e.reason for e in refused] == [Invalid.WRONG_CHAIN]
        assert refused[0].sender == decoded.author and decoded.author is not None
        assert broadcasts(effects) == [] and not any(isinstance(e, ValidateBlock) for e in effects)
    assert node.round == 0 and node.round_changes.latest == {}
    assert node.round_state.prepares == {} and node.round_state.proposal is None
    # B's signature under A's domain (the envelope rewritten) recovers to someone else
    relabelled = SignedPayload(for_b[0].round_change_payload.unsigned_payload,
                               for_b[0].round_change_payload.signature, domain_a)  # fmt: skip
    assert relabelled.author != author
    assert discarded(node.receive(RoundChange(relabelled), 0.2)) in (
        [Invalid.NOT_VALIDATOR],
        [Invalid.BAD_SIGNATURE],
    )
    # and the same message signed for A is taken
    own = RoundChange(SignedPayload.sign(UnsignedRoundChange(H, 1, None, None), sender, domain_a))
    assert discarded(node.receive(own, 0.3)) == []
    assert author in node.round_changes.latest
    # a decided block announced on another chain is refused before its seals are read
    fb_b = NewBlock(FinalizedBlock(blk, 0, ()), domain_b)
    assert discarded(node.receive(decode_message(encode_message(fb_b)), 0.4)) == [
        Invalid.WRONG_CHAIN
    ]


def test_block_timer_from_the_parents_timestamp() -> None:
    """``set_block_timer``: round 0 starts, and its leader asks for a block, at the expiry the
    shell gives (parent timestamp + block period), not a block period after the height
    started; an expiry already past starts it at once; only round 0's unfired timer moves."""
    leader = VALS.index(proposer(0, CTX))
    node = make_node(leader, now=10.4, block_period=1.0, base_round_timeout=2.0)
    assert node.propose_at == 11.4
    effects = node.set_block_timer(H, 11.0, 10.4)
    assert effects == [ScheduleTimer(11.0)]
    assert not any(isinstance(e, ProposeNeeded) for e in node.tick(10.9))
    assert any(isinstance(e, ProposeNeeded) for e in node.tick(11.0))
    assert node.set_block_timer(H, 12.0, 11.1) == []  # fired: nothing moves

    late = make_node(leader, now=13.2, block_period=1.0, base_round_timeout=2.0)
    late.set_block_timer(H, 11.0, 13.2)  # the parent took longer than the period
    assert late.propose_at == 13.2 and late.round_started_at == 13.2
    assert any(isinstance(e, ProposeNeeded) for e in late.tick(13.2))

    follower = make_node((leader + 1) % N, now=10.4, block_period=1.0, base_round_timeout=2.0)
    follower.set_block_timer(H, 11.0, 10.4)
    assert not any(isinstance(m, RoundChange) for m in broadcasts(follower.tick(12.9)))
    assert any(isinstance(m, RoundChange) for m in broadcasts(follower.tick(13.0)))
    assert follower.set_block_timer(H + 1, 20.0, 13.0) == []  # another height: ignored
