"""QBFT per-round and per-height bookkeeping, each bounded by the validator count (pure).

Besu's ``RoundState`` (one round's proposal, prepares and commits) and ``RoundChangeManager``
(round changes at this height), plus the buffer of messages for later rounds and heights, with a
cap per sender so that no sender, honest or not, can grow a node's memory.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gateway.consensus.qbft.messages import (
    Block,
    Commit,
    Prepare,
    Proposal,
    RoundChange,
    SignedCommit,
    SignedPrepare,
    SignedRoundChange,
)

__all__ = [
    "FutureMessages",
    "PreparedCertificate",
    "RoundChangeManager",
    "RoundSnapshot",
    "RoundState",
]


@dataclass(frozen=True, slots=True)
class PreparedCertificate:
    """A block, the round it was prepared in and the quorum of prepares that prove it (the
    spec's ``lastPreparedBlock``/``lastPreparedRound`` with their justification)."""

    block: Block
    round: int
    prepares: tuple[SignedPrepare, ...]


@dataclass(frozen=True, slots=True)
class RoundSnapshot:
    """What a validator must keep on disk to restart without contradicting itself: the height
    and round it is in, the digest it prepared in that round (it will prepare no other), and
    its latest prepared certificate (which its round changes must carry)."""

    height: int
    round: int
    voted_digest: bytes | None
    prepared: PreparedCertificate | None


@dataclass(slots=True)
class RoundState:
    """One round at one height: the accepted proposal, and prepares and commits per sender
    (the first one from each sender counts; a second, conflicting one is equivocation)."""

    round: int
    proposal: Proposal | None = None
    pending: Proposal | None = None  # valid, waiting for the shell's block validation
    prepares: dict[bytes, SignedPrepare] = field(default_factory=dict)
    commits: dict[bytes, SignedCommit] = field(default_factory=dict)
    sent_commit: bool = False
    proposed: bool = False  # this node sent the round's proposal
    # Set when this node leads the round and asked the shell for a new value.
    awaiting_value: tuple[SignedRoundChange, ...] | None = None

    def add_prepare(self, author: bytes, p: SignedPrepare) -> bool:
        if author in self.prepares:
            return False
        self.prepares[author] = p
        return True

    def add_commit(self, author: bytes, c: SignedCommit) -> bool:
        if author in self.commits:
            return False
        self.commits[author] = c
        return True

    def prepares_for(self, digest: bytes) -> list[SignedPrepare]:
        return [p for p in self.prepares.values() if p.unsigned_payload.digest == digest]

    def commits_for(self, digest: bytes) -> list[tuple[bytes, SignedCommit]]:
        return [(a, c) for a, c in self.commits.items() if c.unsigned_payload.digest == digest]


@dataclass(slots=True)
class RoundChangeManager:
    """Round changes at this height: the latest (highest-round) one per validator.

    Keeping one per sender bounds memory by the validator count whatever rounds arrive; an
    honest validator only moves up, so its latest round change supersedes the earlier ones.
    """

    latest: dict[bytes, RoundChange] = field(default_factory=dict)

    def add(self, author: bytes, m: RoundChange) -> bool:
        old = self.latest.get(author)
        if old is not None and old.round >= m.round:
            return False
        self.latest[author] = m
        return True

    def for_round(self, round_: int) -> list[RoundChange]:
        return [m for m in self.latest.values() if m.round == round_]

    def rounds_above(self, round_: int) -> dict[bytes, int]:
        return {a: m.round for a, m in self.latest.items() if m.round > round_}

    def signed_for_round(self, round_: int) -> list[SignedRoundChange]:
        return [m.round_change_payload for m in self.for_round(round_)]


@dataclass(slots=True)
class FutureMessages:
    """Messages for later heights or rounds, at most ``per_sender`` per sender (oldest dropped)."""

    per_sender: int
    by_sender: dict[bytes, deque[Proposal | Prepare | Commit | RoundChange]] = field(
        default_factory=dict
    )

    def add(self, author: bytes, m: Proposal | Prepare | Commit | RoundChange) -> None:
        q = self.by_sender.get(author)
        if q is None:
            q = self.by_sender[author] = deque(maxlen=self.per_sender)
        if m not in q:
            q.append(m)

    def take(
        self, height: int, round_: int | None
    ) -> list[Proposal | Prepare | Commit | RoundChange]:
        """Remove and return the messages for ``height`` (and ``round_``, if given); drop those
        for earlier heights or rounds, keep later ones."""
        out: list[Proposal | Prepare | Commit | RoundChange] = []
        for author, q in list(self.by_sender.items()):
            keep: deque[Proposal | Prepare | Commit | RoundChange] = deque(maxlen=self.per_sender)
            for m in q:
                if m.height < height or (
                    m.height == height and round_ is not None and m.round < round_
                ):
                    continue
                if m.height == height and (round_ is None or m.round == round_):
                    out.append(m)
                else:
                    keep.append(m)
            if keep:
                self.by_sender[author] = keep
            else:
                del self.by_sender[author]
        return out

    def __len__(self) -> int:
        return sum(len(q) for q in self.by_sender.values())
