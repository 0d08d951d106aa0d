"""One QBFT validator as a step function: messages and time in, effects out (no I/O, no clock).

The shell calls ``receive(message, now)``, ``tick(now)``, ``propose_value(height, round, payload,
now)`` and ``block_validated(digest, ok, now)``; each returns a list of effects to carry out *in
order* (a ``Persist`` must be on disk before the ``Broadcast`` after it is sent). The handlers
follow the spec's ``Upon*`` predicates (``dafny/spec/L1/node.dfy``) and Besu's
``QbftBlockHeightManager``/``QbftRound`` structure: one ``RoundState`` per round, one
``RoundChangeManager`` per height, validation (``validation.py``) apart from state changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_keys.datatypes import PrivateKey

from gateway.consensus.qbft.messages import (
    MAX_ROUND,
    Block,
    Commit,
    FinalizedBlock,
    Message,
    NewBlock,
    Prepare,
    Proposal,
    RoundChange,
    SignedPayload,
    SignedPrepare,
    SignedProposal,
    SignedRoundChange,
    UnsignedCommit,
    UnsignedPrepare,
    UnsignedProposal,
    UnsignedRoundChange,
    commit_seal_digest,
    qbft_domain,
    sign_digest,
)
from gateway.consensus.qbft.state import (
    FutureMessages,
    PreparedCertificate,
    RoundChangeManager,
    RoundSnapshot,
    RoundState,
)
from gateway.consensus.qbft.validation import (
    HeightContext,
    Invalid,
    highest_prepared,
    proposer,
    round_timeout,
    validate_commit,
    validate_finalized_block,
    validate_prepare,
    validate_proposal,
    validate_round_change,
)

__all__ = [
    "Broadcast",
    "Decide",
    "Discarded",
    "Effect",
    "PeerBehind",
    "Persist",
    "ProposeNeeded",
    "QbftConfig",
    "QbftNode",
    "ScheduleTimer",
    "ValidateBlock",
]


# --------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``message`` to every other validator (the node has already processed its own)."""

    message: Message


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    """Call ``tick`` at ``deadline`` (replaces any earlier request; extra ticks are harmless)."""

    deadline: float


@dataclass(frozen=True, slots=True)
class ProposeNeeded:
    """This node leads ``round`` at ``height`` and needs a fresh block: answer with
    ``propose_value(height, round, payload, now)``."""

    height: int
    round: int


@dataclass(frozen=True, slots=True)
class ValidateBlock:
    """Check the block's content (the enclave's job, later); answer with
    ``block_validated(block.digest, ok, now)``. The node sends no PREPARE before that."""

    block: Block
    round: int


@dataclass(frozen=True, slots=True)
class Decide:
    """``finalized`` is final: store it (block and seals) and move the chain on."""

    finalized: FinalizedBlock


@dataclass(frozen=True, slots=True)
class Persist:
    """Write ``snapshot`` durably before carrying out the effects after this one."""

    snapshot: RoundSnapshot


@dataclass(frozen=True, slots=True)
class Discarded:
    """A message was refused; ``reason`` is a stable code, ``sender`` the signer if known."""

    reason: Invalid
    sender: bytes | None
    code: int


@dataclass(frozen=True, slots=True)
class PeerBehind:
    """Validator ``peer`` is still deciding ``height``: send it the finalized blocks from there."""

    peer: bytes
    height: int


Effect = (
    Broadcast
    | ScheduleTimer
    | ProposeNeeded
    | ValidateBlock
    | Decide
    | Persist
    | Discarded
    | PeerBehind
)


@dataclass(frozen=True, slots=True)
class QbftConfig:
    """The protocol's parameters. ``validators`` is ordered as Besu orders them (by address).

    ``chain_id`` and ``genesis_hash`` name the chain; the message domain every signature of
    this node binds (``domain``, docs/qbft.md) is derived from them. Left at their defaults
    (chain 0, zero genesis) they name no chain: the simulation's and unit tests' setting."""

    validators: tuple[bytes, ...]
    chain_id: int = 0
    genesis_hash: bytes = bytes(32)
    base_round_timeout: float = 1.0
    max_round_timeout: float = 30.0
    block_period: float = 0.0
    # The f+1 rule: on round changes from f+1 validators for later rounds, move to the lowest.
    early_round_change: bool = True
    future_messages_per_sender: int = 32
    max_future_heights: int = 16
    domain: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "domain", qbft_domain(self.chain_id, self.genesis_hash))
        vals = tuple(sorted(set(self.validators)))
        if not vals or any(len(v) != 20 for v in vals):
            raise ValueError("validators must be a non-empty set of 20-byte addresses")
        object.__setattr__(self, "validators", vals)
        if not 0 < self.base_round_timeout <= self.max_round_timeout:
            raise ValueError("need 0 < base_round_timeout <= max_round_timeout")


class QbftNode:
    """One validator's QBFT state (the spec's ``NodeState``) and its step function."""

    height: int
    last_proposer: bytes | None
    round: int
    round_state: RoundState
    round_changes: RoundChangeManager
    latest_prepared: PreparedCertificate | None  # the spec's lastPreparedBlock/Round
    voted_digest: bytes | None  # what this node prepared (or proposed) in the current round
    validated: dict[bytes, bool]  # the shell's block validation answers at this height
    height_started_at: float
    round_started_at: float  # the spec's timeLastRoundStart
    propose_at: float | None  # the block timer: when round 0's leader asks for a block

    def __init__(
        self,
        config: QbftConfig,
        key: PrivateKey,
        *,
        height: int,
        last_proposer: bytes | None,
        now: float,
        snapshot: RoundSnapshot | None = None,
    ) -> None:
        self.config = config
        self.key = key
        self.address = bytes(key.public_key.to_canonical_address())
        self.future = FutureMessages(config.future_messages_per_sender)
        self.future_blocks: dict[int, FinalizedBlock] = {}
        self._reported: dict[bytes, tuple[int, float]] = {}
        self._timer_sent: float | None = None
        self._start_height(height, last_proposer, now)
        if snapshot is not None and snapshot.height == height:
            self.round = snapshot.round
            self.round_state = RoundState(snapshot.round)
            self.voted_digest = snapshot.voted_digest
            self.latest_prepared = snapshot.prepared
            self.round_started_at = now
            if snapshot.round != 0 or snapshot.voted_digest is not None:
                self.propose_at = None

    # ------------------------------------------------------------------ public step functions

    def receive(self, message: Message, now: float) -> list[Effect]:
        """A message from the network (or the shell's catch-up): the spec's ``Upon*`` events."""
        out: list[Effect] = []
        self._handle(message, now, out)
        self._settle(now, out)
        return out

    def tick(self, now: float) -> list[Effect]:
        """Time passed: the block timer (ask for a proposal) and the round timer (round change).

        Always answers with the next ``ScheduleTimer``, so a tick that came early (a timer that
        fired a little before its deadline) never leaves the node without a timer."""
        out: list[Effect] = []
        self._timer_sent = None
        if self.propose_at is not None and now >= self.propose_at:
            self.propose_at = None
            rs = self.round_state
            if (
                self._is_leader(0)
                and self.round == 0
                and not rs.proposed
                and rs.proposal is None
                and self.voted_digest is None
            ):
                self.round_state.awaiting_value = ()
                out.append(ProposeNeeded(self.height, 0))
        if now >= self._round_deadline():
            # The spec's UponRoundTimeout, with one liveness guard (docs/qbft.md, "a validator
            # alone in a round waits"): past round 1, move up only if f+1 other validators have
            # reached this round; otherwise stay, send this round's round change again and
            # restart the timer, so that a fast clock cannot run away from the others for ever.
            if self.round == 0 or self._has_company():
                self._do_round_change(self.round + 1, now, out)
            else:
                self.round_started_at = now
                self._send_round_change(out)
        self._settle(now, out)
        return out

    def propose_value(self, height: int, round_: int, payload: bytes, now: float) -> list[Effect]:
        """The shell's answer to ``ProposeNeeded``: a fresh block to propose (spec
        ``UponBlockTimeout`` in round 0, the no-prepared-value branch of ``UponRoundChange``)."""
        out: list[Effect] = []
        rs = self.round_state
        if height != self.height or round_ != self.round or rs.awaiting_value is None:
            return out  # stale answer: the node moved on
        justification = rs.awaiting_value
        rs.awaiting_value = None
        block = Block(self.height, self.address, bytes(payload))
        self._send_proposal(block, justification, (), now, out)
        self._settle(now, out)
        return out

    def block_validated(self, digest: bytes, ok: bool, now: float) -> list[Effect]:
        """The shell's answer to ``ValidateBlock``."""
        out: list[Effect] = []
        pending = self.round_state.pending
        if pending is None or pending.proposed_block.digest != digest:
            return out
        self.round_state.pending = None
        self.validated[digest] = bool(ok)
        if ok:
            self._accept_proposal(pending, now, out)
        self._settle(now, out)
        return out

    def set_block_timer(self, height: int, expiry: float, now: float) -> list[Effect]:
        """The shell's block timer for ``height`` (Besu's ``BlockTimer``): round 0 starts, and
        its leader asks for a block, at ``expiry`` = the parent block's timestamp plus the
        block period, or at once if that has passed, rather than a whole block period after
        this node decided the parent. Only moves a round 0 whose block timer has not fired;
        every validator derives the same expiry from the same parent, so their round-0 timers
        line up however late each decided the parent."""
        out: list[Effect] = []
        if height != self.height or self.round != 0 or self.propose_at is None:
            return out
        at = max(expiry, self.height_started_at)
        self.propose_at = at
        self.round_started_at = at
        self._settle(now, out)
        return out

    def snapshot(self) -> RoundSnapshot:
        return RoundSnapshot(self.height, self.round, self.voted_digest, self.latest_prepared)

    @property
    def ctx(self) -> HeightContext:
        return self._ctx

    # ------------------------------------------------------------------ height and round

    def _start_height(self, height: int, last_proposer: bytes | None, now: float) -> None:
        self.height = height
        self.last_proposer = last_proposer
        self._ctx = HeightContext(height, self.config.validators, last_proposer)
        self.round = 0
        self.round_state = RoundState(0)
        self.round_changes = RoundChangeManager()
        self.latest_prepared = None
        self.voted_digest = None
        self.validated = {}
        self.height_started_at = now
        self.round_started_at = now + self.config.block_period
        self.propose_at = now + self.config.block_period

    def _round_deadline(self) -> float:
        c = self.config
        return self.round_started_at + round_timeout(
            self.round, c.base_round_timeout, c.max_round_timeout
        )

    def _is_leader(self, round_: int) -> bool:
        return proposer(round_, self._ctx) == self.address

    def _has_company(self) -> bool:
        """Whether f+1 other validators (so at least one honest one) sent round changes for
        this round or a later one; a single validator needs none."""
        needed = min(self._ctx.f + 1, len(self.config.validators) - 1)
        others = sum(
            1
            for a, m in self.round_changes.latest.items()
            if a != self.address and m.round >= self.round
        )
        return others >= needed

    def _start_round(self, round_: int, now: float, out: list[Effect]) -> None:
        """Besu's ``startNewRound``: a fresh ``RoundState``, then the buffered messages for it."""
        self.round = round_
        self.round_state = RoundState(round_)
        self.round_started_at = now
        self.propose_at = None
        self.voted_digest = None
        for m in self.future.take(self.height, round_):
            self._handle(m, now, out)

    def _do_round_change(self, new_round: int, now: float, out: list[Effect]) -> None:
        """Move to ``new_round`` and multicast a ROUND-CHANGE (spec ``createRoundChange``)."""
        if new_round <= self.round or new_round > MAX_ROUND:
            return
        self._start_round(new_round, now, out)
        out.append(Persist(self.snapshot()))
        self._send_round_change(out)

    def _send_round_change(self, out: list[Effect]) -> None:
        """Multicast this node's ROUND-CHANGE for its current round, carrying the latest prepared
        certificate (made again if it was lost in a restart)."""
        own = self.round_changes.latest.get(self.address)
        if own is None or own.round != self.round:
            cert = self.latest_prepared
            payload = UnsignedRoundChange(
                self.height,
                self.round,
                None if cert is None else cert.round,
                None if cert is None else cert.block.digest,
            )
            own = RoundChange(
                SignedPayload.sign(payload, self.key, self.config.domain),
                None if cert is None else cert.block,
                () if cert is None else cert.prepares,
            )
            self.round_changes.add(self.address, own)
        out.append(Broadcast(own))

    def _decide(self, fb: FinalizedBlock, now: float, out: list[Effect], announce: bool) -> None:
        out.append(Decide(fb))
        if announce:
            out.append(Broadcast(NewBlock(fb, self.config.domain)))
        self._start_height(fb.block.height + 1, fb.block.proposer, now)
        out.append(Persist(self.snapshot()))
        ready = self.future_blocks.pop(self.height, None)
        for h in [h for h in self.future_blocks if h < self.height]:
            del self.future_blocks[h]
        if ready is not None:
            self._decide(ready, now, out, announce=False)
            return
        for m in self.future.take(self.height, None):
            self._handle(m, now, out)

    # ------------------------------------------------------------------ message handling

    def _handle(self, m: Message, now: float, out: list[Effect]) -> None:
        if m.domain != self.config.domain:  # signed for (or announced on) another chain
            sender = None if isinstance(m, NewBlock) else m.author
            out.append(Discarded(Invalid.WRONG_CHAIN, sender, int(m.code)))
            return
        if isinstance(m, NewBlock):
            self._on_new_block(m, now, out)
            return
        author = m.author
        if author is None:
            out.append(Discarded(Invalid.BAD_SIGNATURE, None, int(m.code)))
            return
        if author not in self.config.validators:
            out.append(Discarded(Invalid.NOT_VALIDATOR, author, int(m.code)))
            return
        if not 0 <= m.round <= MAX_ROUND:
            out.append(Discarded(Invalid.ROUND_OUT_OF_RANGE, author, int(m.code)))
            return
        if m.height < self.height:
            self._maybe_report_behind(author, m.height, now, out)
            return
        if m.height > self.height:
            if m.height - self.height > self.config.max_future_heights:
                out.append(Discarded(Invalid.WRONG_HEIGHT, author, int(m.code)))
            elif author != self.address:
                self.future.add(author, m)
            return
        if isinstance(m, Proposal):
            self._on_proposal(m, author, now, out)
        elif isinstance(m, Prepare):
            self._on_prepare(m, author, out)
        elif isinstance(m, Commit):
            self._on_commit(m, author, out)
        else:
            self._on_round_change(m, author, out)

    def _maybe_report_behind(self, peer: bytes, height: int, now: float, out: list[Effect]) -> None:
        if peer == self.address:
            return
        last = self._reported.get(peer)
        if last is None or last[0] != height or now - last[1] >= self.config.base_round_timeout:
            self._reported[peer] = (height, now)
            out.append(PeerBehind(peer, height))

    def _on_new_block(self, m: NewBlock, now: float, out: list[Effect]) -> None:
        fb = m.finalized
        h = fb.block.height
        if h < self.height:
            return
        if h - self.height > self.config.max_future_heights:
            return
        ctx = HeightContext(h, self.config.validators, None)
        bad = validate_finalized_block(fb, ctx)
        if bad is not None:
            out.append(Discarded(bad, None, int(m.code)))
            return
        if h > self.height:
            self.future_blocks.setdefault(h, fb)
            return
        self._decide(fb, now, out, announce=False)  # the spec's UponNewBlock

    def _on_proposal(self, m: Proposal, author: bytes, now: float, out: list[Effect]) -> None:
        rs = self.round_state
        if m.round < self.round:
            return
        if m.round == self.round and (rs.proposal is not None or rs.pending is not None):
            return  # first proposal of a round wins; a different second one is equivocation
        bad = validate_proposal(m, self._ctx)
        if bad is not None:
            out.append(Discarded(bad, author, int(m.code)))
            return
        if m.round > self.round:
            # Besu's FUTURE_ROUND proposal: its justification proves a quorum wants this round.
            self._start_round(m.round, now, out)
            out.append(Persist(self.snapshot()))
            rs = self.round_state
            if rs.proposal is not None or rs.pending is not None:
                return
        if author == self.address:
            self._accept_proposal(m, now, out)
            return
        digest = m.proposed_block.digest
        known = self.validated.get(digest)
        if known is True:
            self._accept_proposal(m, now, out)
        elif known is None:
            rs.pending = m
            out.append(ValidateBlock(m.proposed_block, m.round))

    def _accept_proposal(self, m: Proposal, now: float, out: list[Effect]) -> None:
        """The spec's ``UponProposal``: accept, and multicast a PREPARE for its digest."""
        rs = self.round_state
        digest = m.proposed_block.digest
        self.validated[digest] = True
        if m.round != self.round or rs.proposal is not None:
            return
        if self.voted_digest is not None and self.voted_digest != digest:
            return  # prepared another value in this round before a restart: never contradict it
        rs.proposal = m
        self.voted_digest = digest
        prepare = SignedPayload.sign(
            UnsignedPrepare(self.height, self.round, digest), self.key, self.config.domain
        )
        out.append(Persist(self.snapshot()))
        out.append(Broadcast(Prepare(prepare)))
        rs.add_prepare(self.address, prepare)

    def _on_prepare(self, m: Prepare, author: bytes, out: list[Effect]) -> None:
        if m.round < self.round:
            return
        bad = validate_prepare(m, self._ctx)
        if bad is not None:
            out.append(Discarded(bad, author, int(m.code)))
            return
        if m.round > self.round:
            self.future.add(author, m)
            return
        self.round_state.add_prepare(author, m.prepare_payload)

    def _on_commit(self, m: Commit, author: bytes, out: list[Effect]) -> None:
        if m.round < self.round:
            return
        bad = validate_commit(m, self._ctx)
        if bad is not None:
            out.append(Discarded(bad, author, int(m.code)))
            return
        if m.round > self.round:
            self.future.add(author, m)
            return
        self.round_state.add_commit(author, m.commit_payload)

    def _on_round_change(self, m: RoundChange, author: bytes, out: list[Effect]) -> None:
        if m.round < self.round:
            return  # Besu's PRIOR_ROUND: no use at this height any more
        bad = validate_round_change(m, self._ctx)
        if bad is not None:
            out.append(Discarded(bad, author, int(m.code)))
            return
        self.round_changes.add(author, m)

    # ------------------------------------------------------------------ the upon-conditions

    def _settle(self, now: float, out: list[Effect]) -> None:
        """Apply the spec's sub-steps until none is enabled (``NodeNext``), then ask for a timer."""
        for _ in range(64):
            if not self._step(now, out):
                break
        deadline = self._round_deadline()
        if self.propose_at is not None:
            deadline = min(deadline, self.propose_at)
        if deadline != self._timer_sent:
            self._timer_sent = deadline
            out.append(ScheduleTimer(deadline))

    def _step(self, now: float, out: list[Effect]) -> bool:
        rs = self.round_state
        q = self._ctx.quorum
        proposal = rs.proposal
        if proposal is not None:
            digest = proposal.proposed_block.digest
            # UponPrepare: a quorum of prepares for the accepted block -> prepared, COMMIT.
            if not rs.sent_commit:
                prepares = rs.prepares_for(digest)
                if len(prepares) >= q:
                    rs.sent_commit = True
                    self.latest_prepared = PreparedCertificate(
                        proposal.proposed_block, self.round, tuple(prepares[:q])
                    )
                    seal = sign_digest(self.key, commit_seal_digest(digest, self.round))
                    commit = SignedPayload.sign(
                        UnsignedCommit(self.height, self.round, digest, seal),
                        self.key,
                        self.config.domain,
                    )
                    out.append(Persist(self.snapshot()))
                    out.append(Broadcast(Commit(commit)))
                    rs.add_commit(self.address, commit)
                    return True
            # UponCommit: a quorum of commits for the accepted block -> decided.
            commits = rs.commits_for(digest)
            if len(commits) >= q:
                commits.sort(key=lambda ac: ac[0])
                seals = tuple(c.unsigned_payload.commit_seal for _, c in commits[:q])
                fb = FinalizedBlock(proposal.proposed_block, self.round, seals)
                self._decide(fb, now, out, announce=True)
                return True
        # UponRoundChange, leader branch: a quorum of round changes for a round this node leads.
        if self._try_lead(now, out):
            return True
        # UponRoundChange, f+1 branch: f+1 validators are in later rounds -> join the lowest.
        if self.config.early_round_change:
            above = self.round_changes.rounds_above(self.round)
            if len(above) >= self._ctx.f + 1:
                self._do_round_change(min(above.values()), now, out)
                return True
        return False

    def _try_lead(self, now: float, out: list[Effect]) -> bool:
        rounds = sorted({m.round for m in self.round_changes.latest.values()}, reverse=True)
        for r in rounds:
            if r < self.round or r == 0:
                break
            if r == self.round and (
                self.round_state.proposal is not None
                or self.round_state.proposed
                or self.round_state.awaiting_value is not None
            ):
                continue
            if not self._is_leader(r):
                continue
            rcs = self.round_changes.for_round(r)
            if len(rcs) < self._ctx.quorum:
                continue
            if r > self.round:
                self._start_round(r, now, out)
                out.append(Persist(self.snapshot()))
            signed: tuple[SignedRoundChange, ...] = tuple(m.round_change_payload for m in rcs)
            best = highest_prepared(signed)
            if best is None:
                self.round_state.awaiting_value = signed
                out.append(ProposeNeeded(self.height, r))
                return True
            carrier = next(m for m in rcs if m.round_change_payload is best)
            block = carrier.proposed_block_for_next_round
            assert block is not None  # validated: a prepared round change carries its block
            self._send_proposal(block, signed, carrier.round_change_justification, now, out)
            return True
        return False

    def _send_proposal(
        self,
        block: Block,
        round_changes: tuple[SignedRoundChange, ...],
        prepares: tuple[SignedPrepare, ...],
        now: float,
        out: list[Effect],
    ) -> None:
        if self.voted_digest is not None and self.voted_digest != block.digest:
            self.round_state.proposed = True  # voted otherwise before a restart: stay silent
            return
        payload: SignedProposal = SignedPayload.sign(
            UnsignedProposal(self.height, self.round, block.digest), self.key, self.config.domain
        )
        proposal = Proposal(payload, block, round_changes, prepares)
        self.round_state.proposed = True
        self.voted_digest = block.digest
        out.append(Persist(self.snapshot()))
        out.append(Broadcast(proposal))
        self.voted_digest = None  # _accept_proposal sets it again and sends the PREPARE
        self._accept_proposal(proposal, now, out)
