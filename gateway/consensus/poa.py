"""Proof-of-authority as a pure state machine: schedule, block checks, fork choice, finality.

Nothing here does I/O, reads a clock, sleeps or draws randomness. Time comes in as an argument
(``now``, seconds since the epoch as a float), and what the node should do goes out as values
(``ProposeBlock``, ``Wait``; ``Accept``, ``Reject``). The shell (the node's block-production loop
and the ``p2p`` room) owns the clock, the network, the enclave and the ledger, and feeds this
module. The rules follow EIP-225 (Clique) where they still apply after the merge; the seal itself
lives in ``gateway.consensus.seal``, outside the EVM header.

Rules
-----

*Validators.* ``N`` validators, addresses sorted ascending (as Clique orders its signers).

*Turn.* The in-turn validator for block ``n`` is ``validators[n % N]``.

*Recent-sealer rule.* No validator seals more than one of any ``floor(N/2) + 1`` consecutive
blocks. Equivalently, the sealer of block ``n`` must not have sealed any of blocks
``n - floor(N/2) .. n - 1`` of the same chain (``ValidatorSet.recent_window = floor(N/2)``; zero
for a single validator, who may seal every block).

*Timestamps.* Header timestamps are whole seconds and strictly increase. A block's timestamp must
be at least ``min_timestamp(parent.timestamp, period) = parent.timestamp + max(1, ceil(period))``:
a fractional period is honoured by rounding it up to whole seconds, and a period of ``0`` (blocks
on demand only, the dev automine mode) still requires one second between blocks, as anvil does.
A block whose timestamp is more than ``FUTURE_TOLERANCE`` seconds ahead of the checker's clock is
rejected as ``FUTURE`` (retryable: keep it and check again later).

*Schedule.* With ``period > 0``, the in-turn validator proposes block ``n + 1`` once
``now >= min_timestamp(head)``. An out-of-turn validator waits an extra "wiggle" of
``rand * N * WIGGLE_UNIT`` seconds (EIP-225's ``rand(SIGNER_COUNT * 500ms)``), where ``rand`` in
``[0, 1)`` is passed in, or by default derived deterministically from
``keccak(local address || head hash)`` so that different validators wait different times and a
replay is exact. A validator that sealed recently (rule above) never proposes. Proposals carry
``timestamp = max(floor(now), min_timestamp(head))``.

*Automine and on-demand blocks* exist for a single validator only (the dev node, like anvil's
automine): with ``automine`` and pending transactions it proposes at once, whatever the period,
with the same timestamp rule, so a burst of automined blocks runs ahead of the wall clock by one
second per block, exactly like anvil. A period of ``0`` (blocks on demand only) therefore needs a
one-validator set (``PoaState`` refuses it otherwise), and without automine it never proposes.
With several validators ``automine`` is ignored: racing proposers would fork the chain at every
transaction.

*Weight and fork choice.* A block weighs ``2`` when sealed in turn and ``1`` otherwise (Clique's
difficulty). A chain's weight is the sum over its blocks (genesis weighs ``0``). The preferred
chain is the heavier; on equal weight the one with the lower head number (it has more in-turn
blocks, as in go-ethereum's Clique); then the one whose head hash is lower as a 256-bit big-endian
number. Every node therefore picks the same head from the same blocks, with no randomness.
A node never switches to a chain that does not contain its finalized block
(``should_switch`` takes the fork point and refuses).

*Finality.* A block is **finalized** once a majority, ``floor(N/2) + 1``, of distinct validators
have sealed it or a descendant of it on the head chain. A block is **safe** once
``min(2, floor(N/2) + 1)`` distinct validators have: its sealer and at least one other validator
built on it. Both are the highest such block number on the head chain (0, the genesis, is final by
definition), and ``safe >= finalized``. ``finalized`` never decreases (``PoaState`` keeps it as
a floor, with the finalized block's hash, and refuses any head change that would replace that
block); ``safe`` never decreases while the head only advances, and a permitted reorganisation may
lower it (never below ``finalized``). These are the JSON-RPC ``safe`` and ``finalized`` block
tags. With one validator every block is final as soon as it is sealed
(``safe == finalized == latest``). On a chain that obeys the recent rule,
``floor(N/2) + 1`` consecutive blocks always have that many distinct sealers, so in steady
state ``finalized == head - floor(N/2)`` and ``safe == head - 1`` (``N >= 3``; for ``N = 2``
both are ``head - 1``).

What finality promises, and under which assumption: two conflicting blocks can both be finalized
only if some validator sealed blocks on both branches after they diverged (a majority on each side
must overlap). A malicious validator can do so deliberately, and its two seals then prove it. An
honest validator does so only in a reorganisation race, when blocks take longer than the period to
reach it: it seals on one branch, then learns of a heavier branch and seals there, while others
finalize the first. **The assumption is that every block reaches every online validator within
the block period.** The randomized simulation in the tests measures it: with message delays up to
0.95 times the period no conflict occurs; with delays of 1.2 times the period conflicts start,
and from twice the period they are the rule. Because a node never reverts its finalized block
(``should_switch``), a conflict splits the validators for good and needs an operator; so choose a
period well above the worst delay between validators, and let a node that is catching up not
seal until it has caught up. This is Clique-grade finality for a permissioned consortium under
synchrony, not Byzantine fault tolerance; a stronger rule would need votes, which this version
does not have.

Validator-set changes (decided by governance) are outside this module: the shell builds a new
``PoaState`` with the new set at the height governance says, and finality is counted against the
set in force.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from itertools import pairwise

from eth_utils import keccak

__all__ = [
    "FUTURE_TOLERANCE",
    "WEIGHT_IN_TURN",
    "WEIGHT_OUT_OF_TURN",
    "WIGGLE_UNIT",
    "Accept",
    "BlockInfo",
    "ChainTip",
    "Effect",
    "FinalityViolation",
    "HeadInfo",
    "PoaState",
    "ProposeBlock",
    "Reject",
    "RejectReason",
    "ValidatorSet",
    "Verdict",
    "Wait",
    "block_weight",
    "chain_weight",
    "check_block",
    "finalized_number",
    "fork_choice_key",
    "min_timestamp",
    "prefer",
    "safe_number",
    "should_switch",
    "wiggle_delay",
]

WEIGHT_IN_TURN = 2
WEIGHT_OUT_OF_TURN = 1
WIGGLE_UNIT = 0.5  # seconds of maximum out-of-turn delay per validator (EIP-225: 500 ms)
FUTURE_TOLERANCE = 15.0  # seconds a block's timestamp may run ahead of the checker's clock

_WIGGLE_DOMAIN = b"coco-gateway/wiggle/v1"


def _address(value: bytes | str) -> bytes:
    if isinstance(value, str):
        text = value[2:] if value[:2] in ("0x", "0X") else value
        try:
            value = bytes.fromhex(text)
        except ValueError as exc:
            raise ValueError(f"not a hex address: {value!r}") from exc
    if not isinstance(value, bytes | bytearray) or len(value) != 20:
        raise ValueError("an address must be 20 bytes")
    return bytes(value)


def _check_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes")


# --------------------------------------------------------------------------------------------
# Validators


class ValidatorSet:
    """An immutable, ascending-ordered set of validator addresses (20-byte ``bytes``)."""

    __slots__ = ("_index", "_validators")

    def __init__(self, validators: Iterable[bytes | str]) -> None:
        addresses = [_address(v) for v in validators]
        if not addresses:
            raise ValueError("a validator set needs at least one validator")
        if len(set(addresses)) != len(addresses):
            raise ValueError("duplicate validator address")
        self._validators: tuple[bytes, ...] = tuple(sorted(addresses))
        self._index: dict[bytes, int] = {a: i for i, a in enumerate(self._validators)}

    @property
    def validators(self) -> tuple[bytes, ...]:
        return self._validators

    @property
    def size(self) -> int:
        return len(self._validators)

    @property
    def recent_window(self) -> int:
        """``floor(N/2)``: how many preceding blocks a sealer must not appear in."""
        return len(self._validators) // 2

    @property
    def majority(self) -> int:
        """``floor(N/2) + 1`` distinct validators: the finality threshold."""
        return len(self._validators) // 2 + 1

    @property
    def safe_threshold(self) -> int:
        """``min(2, majority)`` distinct validators: the ``safe`` threshold."""
        return min(2, self.majority)

    def in_turn(self, number: int) -> bytes:
        """The validator whose turn it is to seal block ``number``."""
        if number < 0:
            raise ValueError("block number must be non-negative")
        return self._validators[number % len(self._validators)]

    def is_in_turn(self, number: int, address: bytes) -> bool:
        return self.in_turn(number) == address

    def weight(self, number: int, sealer: bytes | None) -> int:
        """Clique's difficulty: 2 in turn, 1 out of turn (0 for the unsealed genesis)."""
        return block_weight(self, number, sealer)

    def __len__(self) -> int:
        return len(self._validators)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._validators)

    def __contains__(self, address: object) -> bool:
        return address in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValidatorSet) and other._validators == self._validators

    def __hash__(self) -> int:
        return hash(self._validators)

    def __repr__(self) -> str:
        return "ValidatorSet([" + ", ".join("0x" + a.hex() for a in self._validators) + "])"


# --------------------------------------------------------------------------------------------
# Blocks, effects, verdicts


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """What consensus needs of a block: its position, time and (recovered) sealer.

    ``sealer`` is the address recovered from the block's seal (``seal.recover_sealer``); it is
    ``None`` only for the genesis block, which nobody seals.
    """

    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    sealer: bytes | None

    def __post_init__(self) -> None:
        if self.number < 0:
            raise ValueError("block number must be non-negative")
        if self.timestamp < 0:
            raise ValueError("timestamp must be non-negative")
        _check_hash("hash", self.hash)
        _check_hash("parent_hash", self.parent_hash)
        if self.sealer is not None and (
            not isinstance(self.sealer, bytes) or len(self.sealer) != 20
        ):
            raise ValueError("sealer must be a 20-byte address or None")


HeadInfo = BlockInfo
"""The head of the local chain is described like any other block."""


@dataclass(frozen=True, slots=True)
class ProposeBlock:
    """Build, seal and publish block ``number`` on ``parent_hash`` with this timestamp."""

    number: int
    timestamp: int
    parent_hash: bytes
    in_turn: bool


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do now: tick again at ``until`` (seconds, same clock as ``now``).

    ``until=None`` means no deadline: tick again when something changes (a new head, a new
    pending transaction).
    """

    until: float | None


Effect = ProposeBlock | Wait


class RejectReason(StrEnum):
    WRONG_PARENT = "wrong-parent"  # block.parent_hash is not the given parent's hash
    WRONG_NUMBER = "wrong-number"  # block.number != parent.number + 1
    UNSEALED = "unsealed"  # no sealer (only genesis may be unsealed)
    NOT_A_VALIDATOR = "not-a-validator"  # sealer is not in the validator set
    RECENTLY_SEALED = "recently-sealed"  # sealer sealed one of the last floor(N/2) blocks
    TOO_EARLY = "too-early"  # timestamp < min_timestamp(parent)
    FUTURE = "future"  # timestamp too far ahead of the clock: retry later
    MISSING_ANCESTRY = "missing-ancestry"  # not enough ancestors given to check the recent rule


_RETRYABLE = frozenset({RejectReason.FUTURE, RejectReason.MISSING_ANCESTRY})


@dataclass(frozen=True, slots=True)
class Accept:
    """The block obeys the consensus rules; ``weight`` is its fork-choice weight."""

    weight: int
    in_turn: bool


@dataclass(frozen=True, slots=True)
class Reject:
    reason: RejectReason
    detail: str = ""

    @property
    def retryable(self) -> bool:
        """True when the block may become acceptable (later time, more ancestors fetched)."""
        return self.reason in _RETRYABLE


Verdict = Accept | Reject


# --------------------------------------------------------------------------------------------
# Pure rules


def min_timestamp(parent_timestamp: int, period: float) -> int:
    """The smallest timestamp a child of a block with ``parent_timestamp`` may carry."""
    if period < 0 or math.isnan(period):
        raise ValueError("period must be >= 0")
    return parent_timestamp + max(1, math.ceil(period))


def wiggle_delay(size: int, rand: float) -> float:
    """Out-of-turn extra delay: ``rand * N * WIGGLE_UNIT`` seconds, ``rand`` in ``[0, 1)``."""
    if not 0.0 <= rand < 1.0:
        raise ValueError("rand must be in [0, 1)")
    return rand * size * WIGGLE_UNIT


def _derived_rand(local: bytes, head_hash: bytes) -> float:
    digest = keccak(_WIGGLE_DOMAIN + local + head_hash)
    return int.from_bytes(digest[:8], "big") / 2.0**64


def block_weight(validators: ValidatorSet, number: int, sealer: bytes | None) -> int:
    """2 if ``sealer`` is in turn for ``number``, 1 if not, 0 for an unsealed (genesis) block."""
    if sealer is None:
        return 0
    return WEIGHT_IN_TURN if validators.in_turn(number) == sealer else WEIGHT_OUT_OF_TURN


def chain_weight(validators: ValidatorSet, blocks: Iterable[BlockInfo]) -> int:
    """Sum of block weights (any order; usually from a common ancestor up to a tip)."""
    return sum(block_weight(validators, b.number, b.sealer) for b in blocks)


def _check_ancestry(ancestry: Sequence[BlockInfo]) -> None:
    for child, parent in pairwise(ancestry):
        if child.parent_hash != parent.hash or child.number != parent.number + 1:
            raise ValueError("ancestry must be a contiguous chain, newest first")


def check_block(
    validators: ValidatorSet,
    period: float,
    block: BlockInfo,
    ancestry: Sequence[BlockInfo],
    *,
    now: float | None = None,
    future_tolerance: float = FUTURE_TOLERANCE,
) -> Verdict:
    """Check ``block`` against the consensus rules, given its ancestors.

    ``ancestry`` is the block's chain, newest first, starting with its parent; it must hold at
    least ``recent_window`` blocks or reach the genesis (otherwise the verdict is the retryable
    ``MISSING_ANCESTRY``). ``now`` enables the future-timestamp check. The seal itself is checked
    before this, by recovering ``block.sealer`` with ``seal.recover_sealer``.
    """
    if not ancestry:
        return Reject(RejectReason.MISSING_ANCESTRY, "the parent is needed")
    window = validators.recent_window
    _check_ancestry(ancestry[: window + 1])
    parent = ancestry[0]
    if block.parent_hash != parent.hash:
        return Reject(RejectReason.WRONG_PARENT, "parent hash does not match the given parent")
    if block.number != parent.number + 1:
        return Reject(
            RejectReason.WRONG_NUMBER,
            f"number {block.number} does not follow parent number {parent.number}",
        )
    sealer = block.sealer
    if sealer is None:
        return Reject(RejectReason.UNSEALED, "only the genesis block is unsealed")
    if sealer not in validators:
        return Reject(RejectReason.NOT_A_VALIDATOR, f"0x{sealer.hex()} is not a validator")
    if window > 0:
        recent = ancestry[:window]  # blocks number - window .. number - 1 (contiguous)
        if len(recent) < window and recent[-1].number != 0:
            return Reject(
                RejectReason.MISSING_ANCESTRY, f"{window} ancestors are needed, got {len(recent)}"
            )
        for earlier in recent:
            if earlier.sealer == sealer:
                return Reject(
                    RejectReason.RECENTLY_SEALED,
                    f"0x{sealer.hex()} sealed block {earlier.number}; the last {window} "
                    f"blocks must have other sealers",
                )
    earliest = min_timestamp(parent.timestamp, period)
    if block.timestamp < earliest:
        return Reject(
            RejectReason.TOO_EARLY,
            f"timestamp {block.timestamp} is before {earliest} (parent {parent.timestamp}, "
            f"period {period})",
        )
    if now is not None and block.timestamp > now + future_tolerance:
        return Reject(
            RejectReason.FUTURE,
            f"timestamp {block.timestamp} is more than {future_tolerance}s ahead of {now}",
        )
    in_turn = validators.in_turn(block.number) == sealer
    return Accept(WEIGHT_IN_TURN if in_turn else WEIGHT_OUT_OF_TURN, in_turn)


def _threshold_number(
    validators: ValidatorSet, chain: Iterable[tuple[int, bytes | None]], threshold: int
) -> int:
    seen: set[bytes] = set()
    previous: int | None = None
    for number, sealer in chain:
        if previous is not None and number != previous - 1:
            raise ValueError("chain sealers must be contiguous, from the head backwards")
        previous = number
        if number == 0:
            return 0
        if sealer is not None and sealer in validators:
            seen.add(sealer)
            if len(seen) >= threshold:
                return number
    return 0


def finalized_number(
    validators: ValidatorSet, chain_sealers: Iterable[tuple[int, bytes | None]]
) -> int:
    """Highest block that a majority of distinct validators sealed or built on.

    ``chain_sealers`` is ``(number, sealer)`` from the head backwards, contiguous. Returns 0 (the
    genesis, final by definition) when the threshold is not reached within what was given.
    """
    return _threshold_number(validators, chain_sealers, validators.majority)


def safe_number(validators: ValidatorSet, chain_sealers: Iterable[tuple[int, bytes | None]]) -> int:
    """Highest block that ``min(2, majority)`` distinct validators sealed or built on."""
    return _threshold_number(validators, chain_sealers, validators.safe_threshold)


@dataclass(frozen=True, slots=True)
class ChainTip:
    """A candidate head for fork choice: its number, hash and total chain weight."""

    number: int
    hash: bytes
    weight: int


def fork_choice_key(tip: ChainTip) -> tuple[int, int, int]:
    """Sort key: the largest key is the preferred head (heavier, then lower number, lower hash)."""
    return (tip.weight, -tip.number, -int.from_bytes(tip.hash, "big"))


def prefer(current: ChainTip, candidate: ChainTip) -> bool:
    """True when ``candidate`` is strictly preferred to ``current`` by fork choice."""
    return fork_choice_key(candidate) > fork_choice_key(current)


def should_switch(
    current: ChainTip, candidate: ChainTip, *, fork_point: int, finalized: int
) -> bool:
    """Fork choice with the finality guard.

    ``fork_point`` is the number of the last common ancestor of the two chains; a chain that
    forks below the local ``finalized`` number would revert a finalized block and is refused
    whatever its weight.
    """
    if fork_point < finalized:
        return False
    return prefer(current, candidate)


# --------------------------------------------------------------------------------------------
# The state machine


class FinalityViolation(ValueError):
    """A head change that would revert the finalized block (a shell bug: use should_switch)."""


@dataclass(frozen=True)
class PoaState:
    """The consensus view of one node: who validates, how fast, who we are, the head chain.

    Immutable: transitions return a new state. ``chain`` is the head chain, newest first, trimmed
    to what the rules need (``majority`` blocks, which covers the recent window and finality on a
    valid chain). ``finalized`` is a floor that never decreases and ``finalized_hash`` lets a
    reorganisation be checked against it; ``safe`` only decreases through a reorganisation.

    Build one with ``PoaState.start``; advance with ``with_block`` (a block on the head) or
    ``with_chain`` (a new head after a reorganisation or catch-up).
    """

    validators: ValidatorSet
    period: float
    local: bytes | None
    chain: tuple[BlockInfo, ...]
    finalized: int = 0
    finalized_hash: bytes | None = None
    safe: int = 0

    def __post_init__(self) -> None:
        if self.period < 0 or math.isnan(self.period):
            raise ValueError("period must be >= 0")
        if not self.chain:
            raise ValueError("the head chain needs at least the head block")
        if self.local is not None:
            _address(self.local)
        if self.period == 0 and self.validators.size > 1:
            raise ValueError("a period of 0 (blocks on demand) needs a single validator")

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        validators: ValidatorSet,
        period: float,
        local: bytes | None,
        chain: Sequence[BlockInfo],
        *,
        finalized: int = 0,
        finalized_hash: bytes | None = None,
    ) -> PoaState:
        """Start from the head chain, newest first (the head and at least ``majority - 1``
        ancestors, or down to the genesis). ``finalized``/``finalized_hash`` restore the floor a
        node had persisted before a restart."""
        chain = tuple(chain)
        if not chain:
            raise ValueError("the head chain needs at least the head block")
        _check_ancestry(chain)
        base = cls(
            validators=validators,
            period=period,
            local=None if local is None else _address(local),
            chain=chain[: validators.majority],
            finalized=finalized,
            finalized_hash=finalized_hash,
            safe=finalized,
        )
        return base._with_floors(chain)

    # -- queries ----------------------------------------------------------------------------

    @property
    def head(self) -> BlockInfo:
        return self.chain[0]

    def sealed_recently(self, address: bytes, number: int | None = None) -> bool:
        """Would ``address`` break the recent rule by sealing block ``number`` (default: the
        next block) on the head chain?"""
        window = self.validators.recent_window
        target = self.head.number + 1 if number is None else number
        return any(b.sealer == address for b in self.chain if target - window <= b.number < target)

    def can_seal_next(self) -> bool:
        """Is the local node a validator allowed to seal the next block on this head?"""
        return (
            self.local is not None
            and self.local in self.validators
            and not self.sealed_recently(self.local)
        )

    # -- transitions ------------------------------------------------------------------------

    def on_tick(
        self,
        now: float,
        head: BlockInfo,
        pending_txs: int,
        automine: bool,
        *,
        rand: float | None = None,
    ) -> list[Effect]:
        """What the local validator should do at time ``now`` on ``head``.

        Idempotent: it says ``ProposeBlock`` every time it is called while a proposal is due on
        this head, so the shell must not tick again until it has handled the proposal (adopted
        the sealed block with ``with_block``, or given up). ``rand`` in ``[0, 1)`` sets the
        out-of-turn wiggle; ``None`` derives it from the local address and the head hash.
        """
        if head.hash != self.head.hash:
            raise ValueError(
                f"state is at head {self.head.number} 0x{self.head.hash.hex()[:12]}…, "
                f"not {head.number} 0x{head.hash.hex()[:12]}…: update it first"
            )
        if not self.can_seal_next():
            return [Wait(None)]
        assert self.local is not None
        number = head.number + 1
        earliest = min_timestamp(head.timestamp, self.period)
        in_turn = self.validators.in_turn(number) == self.local
        timestamp = max(math.floor(now), earliest)
        if automine and pending_txs > 0 and self.validators.size == 1:
            return [ProposeBlock(number, timestamp, head.hash, in_turn)]
        if self.period == 0:
            return [Wait(None)]
        due = float(earliest)
        if not in_turn:
            r = _derived_rand(self.local, head.hash) if rand is None else rand
            due += wiggle_delay(self.validators.size, r)
        if now >= due:
            return [ProposeBlock(number, timestamp, head.hash, in_turn)]
        return [Wait(due)]

    def on_block(
        self,
        block: BlockInfo,
        ancestry: Sequence[BlockInfo] | None = None,
        *,
        now: float | None = None,
    ) -> Verdict:
        """Check a block (its sealer already recovered from the seal). Does not change state.

        Without ``ancestry`` the block must extend the current head (otherwise the verdict is
        ``MISSING_ANCESTRY``: look up its ancestors and pass them, newest first).
        """
        if ancestry is None:
            if block.parent_hash != self.head.hash:
                return Reject(
                    RejectReason.MISSING_ANCESTRY, "not on the head: pass the block's ancestry"
                )
            ancestry = self.chain
        return check_block(self.validators, self.period, block, ancestry, now=now)

    def with_block(self, block: BlockInfo) -> PoaState:
        """The head advanced by one accepted block (check it with ``on_block`` first)."""
        if block.parent_hash != self.head.hash or block.number != self.head.number + 1:
            raise ValueError("with_block takes a child of the current head; use with_chain")
        return self._with_floors((block, *self.chain))

    def with_chain(self, chain: Sequence[BlockInfo]) -> PoaState:
        """A new head chain, newest first, after a reorganisation or a catch-up.

        It must reach down to the finalized number (or contain ``majority`` blocks when the
        head is not ahead of it) and contain the finalized block: otherwise
        ``FinalityViolation`` is raised (decide with ``should_switch`` before calling this).
        """
        chain = tuple(chain)
        if not chain:
            raise ValueError("the head chain needs at least the head block")
        _check_ancestry(chain)
        if chain[0].number < self.finalized:
            raise FinalityViolation(
                f"new head {chain[0].number} is below finalized block {self.finalized}"
            )
        if chain[-1].number > self.finalized:
            raise ValueError(
                f"the new chain must reach down to the finalized block {self.finalized}"
            )
        if self.finalized_hash is not None:
            at = chain[chain[0].number - self.finalized]
            if at.hash != self.finalized_hash:
                raise FinalityViolation(f"the new chain replaces finalized block {self.finalized}")
        return self._with_floors(chain, reorg=True)

    def _with_floors(self, chain: tuple[BlockInfo, ...], *, reorg: bool = False) -> PoaState:
        """Trim ``chain`` (newest first) and move the finalized and safe marks up along it."""
        sealers = [(b.number, b.sealer) for b in chain]
        head_number = chain[0].number
        finalized, finalized_hash = self.finalized, self.finalized_hash
        fin = max(finalized_number(self.validators, sealers), finalized)
        index = head_number - fin
        if 0 <= index < len(chain) and (fin > finalized or finalized_hash is None):
            finalized, finalized_hash = fin, chain[index].hash
        safe = max(safe_number(self.validators, sealers), finalized)
        if not reorg:
            safe = max(safe, self.safe)
        return replace(
            self,
            chain=chain[: self.validators.majority],
            finalized=finalized,
            finalized_hash=finalized_hash,
            safe=min(safe, head_number),
        )
