"""QBFT rules as pure predicates: quorum, proposer, round timer, and message validation.

Each function is named after its counterpart in the formal specification
(``dafny/spec/L1/node_auxiliary_functions.dfy``) or in Besu's ``qbft-core`` validation package,
so a reader can hold one against the other. Validation never changes state: it answers ``None``
(valid) or the ``Invalid`` reason, and the node decides what to do with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from gateway.consensus.qbft.messages import (
    MAX_HEIGHT,
    MAX_PAYLOAD_BYTES,
    MAX_ROUND,
    SIGNATURE_LENGTH,
    Block,
    Commit,
    FinalizedBlock,
    Prepare,
    Proposal,
    RoundChange,
    SignedPrepare,
    SignedRoundChange,
    commit_seal_digest,
    recover_signer,
)

__all__ = [
    "HeightContext",
    "Invalid",
    "f",
    "is_highest_prepared",
    "is_proposal_justification",
    "proposer",
    "quorum",
    "round_timeout",
    "valid_round_change",
    "valid_signed_prepare",
    "validate_commit",
    "validate_finalized_block",
    "validate_prepare",
    "validate_proposal",
    "validate_round_change",
]


class Invalid(StrEnum):
    """Why a message was refused. Stable codes: logs and tests switch on them, never on text."""

    BAD_SIGNATURE = "bad-signature"
    NOT_VALIDATOR = "not-validator"
    WRONG_HEIGHT = "wrong-height"
    ROUND_OUT_OF_RANGE = "round-out-of-range"
    WRONG_PROPOSER = "wrong-proposer"
    DIGEST_MISMATCH = "digest-mismatch"
    BLOCK_HEIGHT_MISMATCH = "block-height-mismatch"
    BLOCK_PROPOSER_MISMATCH = "block-proposer-mismatch"
    BLOCK_TOO_LARGE = "block-too-large"
    UNEXPECTED_JUSTIFICATION = "unexpected-justification"
    DUPLICATE_AUTHORS = "duplicate-authors"
    TOO_FEW_ROUND_CHANGES = "too-few-round-changes"
    BAD_ROUND_CHANGE = "bad-round-change"
    INCONSISTENT_PREPARED = "inconsistent-prepared-metadata"
    PREPARED_VALUE_MISMATCH = "prepared-value-mismatch"
    TOO_FEW_PREPARES = "too-few-prepares"
    BAD_PREPARE = "bad-prepare"
    BAD_COMMIT_SEAL = "bad-commit-seal"
    TOO_FEW_SEALS = "too-few-seals"
    MISSING_PREPARED_BLOCK = "missing-prepared-block"
    TOO_MANY_ENTRIES = "too-many-entries"  # more signatures than validators: refused unread
    # signed for another chain: its domain (chain id, genesis hash) is not this node's
    WRONG_CHAIN = "wrong-chain"


# --------------------------------------------------------------------------- arithmetic


def f(set_size: int) -> int:
    """The most Byzantine validators ``set_size`` validators tolerate: ``(n - 1) // 3``."""
    return 0 if set_size == 0 else (set_size - 1) // 3


def quorum(set_size: int) -> int:
    """The spec's ``(n*2 - 1) / 3 + 1`` in integer arithmetic, which is ceil(2n/3) for n >= 1.

    Two quorums intersect in at least ``f(n) + 1`` validators, so in at least one honest one.
    """
    if set_size <= 0:
        raise ValueError("a validator set has at least one member")
    return (set_size * 2 - 1) // 3 + 1


def round_timeout(round_: int, base: float, cap: float) -> float:
    """Round ``round_`` lasts ``base * 2**round_`` (Besu's ``BftRoundExpiryTimeCalculator``),
    capped at ``cap`` so a long outage does not leave validators waiting for days."""
    if round_ >= 62:  # 2**62 * any positive base is past every sane cap; avoid huge integers
        return cap
    return min(base * (1 << round_), cap)


@dataclass(frozen=True, slots=True)
class HeightContext:
    """What validation needs to know about the chain: the height being decided, the validator
    set for it (sorted, as Besu orders it) and the proposer of the block before it."""

    height: int
    validators: tuple[bytes, ...]
    last_proposer: bytes | None

    @property
    def quorum(self) -> int:
        return quorum(len(self.validators))

    @property
    def f(self) -> int:
        return f(len(self.validators))


def proposer(round_: int, ctx: HeightContext) -> bytes:
    """Round-robin: the validator after the previous block's proposer, then one more per round.

    The spec's ``proposer(round, blockchain)`` and Besu's ``BftProposerSelector`` with
    ``changeEachBlock``: for the first block (no previous proposer) round 0 is the first
    validator; if the previous proposer left the set, start at the first validator sorted after
    it (Besu's ``handleMissingProposer``).
    """
    vals = ctx.validators
    last = ctx.last_proposer
    if last is None:
        start = 0
    elif last in vals:
        start = vals.index(last) + 1
    else:
        later = [i for i, v in enumerate(vals) if v > last]
        start = later[0] if later else 0
    return vals[(start + round_) % len(vals)]


# --------------------------------------------------------------------------- signed payloads


def _distinct_authors(items: Iterable[SignedPrepare | SignedRoundChange]) -> bool:
    seen: set[bytes | None] = set()
    for item in items:
        a = item.author
        if a in seen:
            return False
        seen.add(a)
    return True


def valid_signed_prepare(
    p: SignedPrepare, height: int, round_: int, digest: bytes, validators: Sequence[bytes]
) -> bool:
    """The spec's ``validSignedPrepareForHeightRoundAndDigest``."""
    u = p.unsigned_payload
    return (
        u.height == height
        and u.round == round_
        and u.digest == digest
        and p.author is not None
        and p.author in validators
    )


def valid_round_change(
    rc: SignedRoundChange, height: int, round_: int, validators: Sequence[bytes]
) -> bool:
    """The spec's ``validRoundChange``: right height and round, a prepared round (if any) below
    the target round, signed by a validator."""
    u = rc.unsigned_payload
    if u.height != height or u.round != round_:
        return False
    if (u.prepared_round is None) != (u.prepared_value is None):
        return False
    if u.prepared_round is not None and u.prepared_round >= round_:
        return False
    return rc.author is not None and rc.author in validators


def is_highest_prepared(rc: SignedRoundChange, round_changes: Iterable[SignedRoundChange]) -> bool:
    """The spec's ``isHighestPrepared``: ``rc`` is prepared, and no other is prepared later."""
    pr = rc.unsigned_payload.prepared_round
    if pr is None or rc.unsigned_payload.prepared_value is None:
        return False
    return all(
        m.unsigned_payload.prepared_round is None or m.unsigned_payload.prepared_round <= pr
        for m in round_changes
    )


def highest_prepared(round_changes: Sequence[SignedRoundChange]) -> SignedRoundChange | None:
    """One round change with the highest prepared round, or ``None`` if none is prepared."""
    best: SignedRoundChange | None = None
    for rc in round_changes:
        pr = rc.unsigned_payload.prepared_round
        if pr is None:
            continue
        if best is None or pr > (best.unsigned_payload.prepared_round or 0):
            best = rc
    return best


def _check_prepares(
    prepares: Sequence[SignedPrepare],
    height: int,
    round_: int,
    digest: bytes,
    ctx: HeightContext,
) -> Invalid | None:
    if len(prepares) > len(ctx.validators):
        return Invalid.TOO_MANY_ENTRIES
    if not _distinct_authors(prepares):
        return Invalid.DUPLICATE_AUTHORS
    if len(prepares) < ctx.quorum:
        return Invalid.TOO_FEW_PREPARES
    if not all(valid_signed_prepare(p, height, round_, digest, ctx.validators) for p in prepares):
        return Invalid.BAD_PREPARE
    return None


def _check_block(block: Block, ctx: HeightContext) -> Invalid | None:
    if block.height != ctx.height:
        return Invalid.BLOCK_HEIGHT_MISMATCH
    if len(block.payload) > MAX_PAYLOAD_BYTES or len(block.proposer) != 20:
        return Invalid.BLOCK_TOO_LARGE
    return None


def is_proposal_justification(
    round_changes: Sequence[SignedRoundChange],
    prepares: Sequence[SignedPrepare],
    round_: int,
    block: Block,
    round_leader: bytes,
    ctx: HeightContext,
) -> Invalid | None:
    """The spec's ``isProposalJustification`` with Besu's ``ProposalValidator`` checks.

    Round 0: no justification, and the block is the leader's own. Later rounds: a quorum of
    valid round changes for exactly this round from distinct validators, whose prepared metadata
    agree (one value per prepared round); if any is prepared, the block is the value of the
    highest prepared one and a quorum of prepares for that round and value comes with it;
    otherwise no prepares, and the block is the leader's own.
    """
    if _check_block(block, ctx) is not None:
        return _check_block(block, ctx)
    if round_ == 0:
        if round_changes or prepares:
            return Invalid.UNEXPECTED_JUSTIFICATION
        if block.proposer != round_leader:
            return Invalid.BLOCK_PROPOSER_MISMATCH
        return None
    if len(round_changes) > len(ctx.validators) or len(prepares) > len(ctx.validators):
        return Invalid.TOO_MANY_ENTRIES  # checked before any signature is recovered
    if not _distinct_authors(round_changes):
        return Invalid.DUPLICATE_AUTHORS
    if len(round_changes) < ctx.quorum:
        return Invalid.TOO_FEW_ROUND_CHANGES
    if not all(valid_round_change(rc, ctx.height, round_, ctx.validators) for rc in round_changes):
        return Invalid.BAD_ROUND_CHANGE
    values_by_round: dict[int, bytes] = {}
    for rc in round_changes:
        u = rc.unsigned_payload
        if (
            u.prepared_round is not None
            and u.prepared_value is not None
            and values_by_round.setdefault(u.prepared_round, u.prepared_value) != u.prepared_value
        ):
            return Invalid.INCONSISTENT_PREPARED
    best = highest_prepared(round_changes)
    if best is None:
        if prepares:
            return Invalid.UNEXPECTED_JUSTIFICATION
        if block.proposer != round_leader:
            return Invalid.BLOCK_PROPOSER_MISMATCH
        return None
    assert is_highest_prepared(best, round_changes)
    pr = best.unsigned_payload.prepared_round
    pv = best.unsigned_payload.prepared_value
    assert pr is not None and pv is not None
    if pv != block.digest:
        return Invalid.PREPARED_VALUE_MISMATCH
    return _check_prepares(prepares, ctx.height, pr, pv, ctx)


# --------------------------------------------------------------------------- messages


def _check_author(author: bytes | None, ctx: HeightContext) -> Invalid | None:
    if author is None:
        return Invalid.BAD_SIGNATURE
    if author not in ctx.validators:
        return Invalid.NOT_VALIDATOR
    return None


def _check_height_round(height: int, round_: int, ctx: HeightContext) -> Invalid | None:
    if not 0 <= round_ <= MAX_ROUND:
        return Invalid.ROUND_OUT_OF_RANGE
    if not 0 <= height <= MAX_HEIGHT or height != ctx.height:
        return Invalid.WRONG_HEIGHT
    return None


def validate_proposal(m: Proposal, ctx: HeightContext) -> Invalid | None:
    """The spec's ``isValidProposal`` less the node-state clause (which round the node is in):
    right height, signed by the round's leader, digest of the block it carries, justified."""
    u = m.proposal_payload.unsigned_payload
    bad = _check_height_round(u.height, u.round, ctx) or _check_author(m.author, ctx)
    if bad is not None:
        return bad
    leader = proposer(u.round, ctx)
    if m.author != leader:
        return Invalid.WRONG_PROPOSER
    if u.digest != m.proposed_block.digest:
        return Invalid.DIGEST_MISMATCH
    return is_proposal_justification(
        m.proposal_justification,
        m.round_change_justification,
        u.round,
        m.proposed_block,
        leader,
        ctx,
    )


def validate_prepare(m: Prepare, ctx: HeightContext) -> Invalid | None:
    u = m.prepare_payload.unsigned_payload
    return _check_height_round(u.height, u.round, ctx) or _check_author(m.author, ctx)


def validate_commit(m: Commit, ctx: HeightContext) -> Invalid | None:
    """Besu's ``CommitValidator`` and the spec's ``validateCommit`` minus the digest clause
    (checked against the accepted proposal when counting): the commit seal is the author's
    signature over the digest and round it names."""
    u = m.commit_payload.unsigned_payload
    bad = _check_height_round(u.height, u.round, ctx) or _check_author(m.author, ctx)
    if bad is not None:
        return bad
    if recover_signer(commit_seal_digest(u.digest, u.round), u.commit_seal) != m.author:
        return Invalid.BAD_COMMIT_SEAL
    return None


def validate_round_change(m: RoundChange, ctx: HeightContext) -> Invalid | None:
    """Besu's ``RoundChangeMessageValidator``: a valid payload; if it names a prepared value, the
    block with that digest and a quorum of prepares for that round and value; else neither."""
    u = m.round_change_payload.unsigned_payload
    bad = _check_height_round(u.height, u.round, ctx) or _check_author(m.author, ctx)
    if bad is not None:
        return bad
    if not valid_round_change(m.round_change_payload, ctx.height, u.round, ctx.validators):
        return Invalid.BAD_ROUND_CHANGE
    block = m.proposed_block_for_next_round
    if u.prepared_round is None or u.prepared_value is None:
        if block is not None or m.round_change_justification:
            return Invalid.UNEXPECTED_JUSTIFICATION
        return None
    if block is None:
        return Invalid.MISSING_PREPARED_BLOCK
    bad = _check_block(block, ctx)
    if bad is not None:
        return bad
    if block.digest != u.prepared_value:
        return Invalid.PREPARED_VALUE_MISMATCH
    return _check_prepares(
        m.round_change_justification, ctx.height, u.prepared_round, u.prepared_value, ctx
    )


def validate_finalized_block(fb: FinalizedBlock, ctx: HeightContext) -> Invalid | None:
    """The spec's ``ValidNewBlock``: right height, and a quorum of distinct validators' commit
    seals over the block digest and round. This alone proves finality (no other state needed)."""
    if not 0 <= fb.round <= MAX_ROUND:
        return Invalid.ROUND_OUT_OF_RANGE
    bad = _check_block(fb.block, ctx)
    if bad is not None:
        return bad
    if len(fb.commit_seals) > len(ctx.validators):
        return Invalid.TOO_MANY_ENTRIES  # checked before any seal is recovered
    digest = commit_seal_digest(fb.block.digest, fb.round)
    signers: set[bytes] = set()
    for seal in fb.commit_seals:
        if len(seal) != SIGNATURE_LENGTH:
            return Invalid.BAD_COMMIT_SEAL
        signer = recover_signer(digest, seal)
        if signer is None or signer not in ctx.validators:
            return Invalid.BAD_COMMIT_SEAL
        signers.add(signer)
    if len(signers) < ctx.quorum:
        return Invalid.TOO_FEW_SEALS
    return None
