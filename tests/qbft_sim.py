"""A deterministic simulator for the QBFT core: a fake clock, a fake network, crashes, a Byzantine
validator. Every random choice comes from one seeded ``random.Random``, so a schedule replays
exactly from its seed (``QBFT_SIM_SEED=<seed>``).

The network carries encoded bytes (``encode_message``/``decode_message``), so every delivery also
exercises the wire format. The shell around each node is what the asyncio shell will be: it
carries out effects in order (persist, broadcast, timers, block proposals and validation).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_keys import keys

from gateway.consensus.qbft import (
    Block,
    Broadcast,
    Commit,
    Decide,
    Discarded,
    FinalizedBlock,
    HeightContext,
    Message,
    NewBlock,
    PeerBehind,
    Persist,
    Prepare,
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
    validate_finalized_block,
)
from gateway.consensus.qbft.messages import MAX_ROUND, sign_digest

INVALID_PREFIX = b"INVALID:"


@functools.lru_cache(maxsize=2048)
def decode_cached(data: bytes) -> Message:
    """One decode per distinct wire message (messages are immutable, so sharing is safe)."""
    return decode_message(data)


def validator_key(i: int) -> keys.PrivateKey:
    return keys.PrivateKey((i + 1).to_bytes(32, "big"))


class SafetyViolation(AssertionError):
    pass


@dataclass
class Disk:
    """What survives a crash: the decided chain (the ledger) and the last persisted round state."""

    chain: list[FinalizedBlock] = field(default_factory=list)
    snapshot: RoundSnapshot | None = None


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    kind: str = field(compare=False)
    node: int = field(compare=False)
    data: Any = field(compare=False, default=None)


@dataclass
class Faults:
    """Network behaviour while chaos lasts (after ``heal`` the network is reliable)."""

    drop: float = 0.0
    duplicate: float = 0.0
    min_delay: float = 0.01
    max_delay: float = 0.3


class Sim:
    def __init__(
        self,
        seed: int,
        n: int = 4,
        *,
        byzantine: int | None = None,
        config: dict[str, Any] | None = None,
        faults: Faults | None = None,
        validate_delay: float = 0.02,
        clocks: list[tuple[float, float]] | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.n = n
        self.keys = [validator_key(i) for i in range(n)]
        self.addrs = [bytes(k.public_key.to_canonical_address()) for k in self.keys]
        self.index = {a: i for i, a in enumerate(self.addrs)}
        self.config = QbftConfig(
            validators=tuple(self.addrs),
            **({"base_round_timeout": 1.0, "max_round_timeout": 8.0} | (config or {})),
        )
        self.byzantine = byzantine
        self.faults = faults or Faults()
        self.reliable = Faults(0.0, 0.0, 0.01, 0.2)
        self.validate_delay = validate_delay
        self.now = 0.0
        # Each validator's clock: local = now * rate + offset (a clock that runs fast or slow).
        self.rate = [c[0] for c in clocks] if clocks else [1.0] * n
        self.offset = [c[1] for c in clocks] if clocks else [0.0] * n
        self.queue: list[_Event] = []
        self.seq = itertools.count()
        self.disks = [Disk() for _ in range(n)]
        self.nodes: list[QbftNode | None] = [None] * n
        self.timer_gen = [0] * n
        self.groups: list[int] = [0] * n  # partition group per node
        self.decided: dict[int, bytes] = {}  # height -> digest, over all honest decisions
        self.discarded: Counter[str] = Counter()
        self.messages = 0
        self.log: list[str] = []
        for i in range(n):
            self._boot(i)

    # ------------------------------------------------------------------ nodes

    def local(self, i: int) -> float:
        return self.now * self.rate[i] + self.offset[i]

    def honest(self) -> list[int]:
        return [i for i in range(self.n) if i != self.byzantine]

    def up(self, i: int) -> bool:
        return self.nodes[i] is not None

    def height(self, i: int) -> int:
        return len(self.disks[i].chain)

    def _boot(self, i: int) -> None:
        disk = self.disks[i]
        last = disk.chain[-1].block.proposer if disk.chain else None
        node = QbftNode(
            self.config,
            self.keys[i],
            height=len(disk.chain) + 1,
            last_proposer=last,
            now=self.local(i),
            snapshot=disk.snapshot,
        )
        self.nodes[i] = node
        self._run(i, node.tick(self.local(i)))

    def crash(self, i: int) -> None:
        self.nodes[i] = None
        self.timer_gen[i] += 1
        self.log.append(f"{self.now:.2f} crash {i}")

    def restart(self, i: int, *, empty: bool = False, keep_chain: bool = False) -> None:
        """Restart from the persisted state; ``empty``: from an empty data directory (with
        ``keep_chain``, the decided blocks survive but no round state does)."""
        if empty:
            self.disks[i] = Disk(chain=self.disks[i].chain if keep_chain else [])
        mode = (" chain-only" if keep_chain else " empty") if empty else ""
        self.log.append(f"{self.now:.2f} restart {i}{mode}")
        self._boot(i)

    # ------------------------------------------------------------------ effects

    def _run(self, i: int, effects: list[Any]) -> None:
        node = self.nodes[i]
        if node is None:
            return
        for e in effects:
            if isinstance(e, Broadcast):
                if i != self.byzantine:
                    self._check_persisted_before_sending(i, e.message)
                self.broadcast(i, e.message)
            elif isinstance(e, ScheduleTimer):
                self.timer_gen[i] += 1
                at = (e.deadline - self.offset[i]) / self.rate[i]
                while at * self.rate[i] + self.offset[i] < e.deadline:  # float rounding
                    at = math.nextafter(at, math.inf)
                self._push(max(at, self.now), "tick", i, self.timer_gen[i])
            elif isinstance(e, Persist):
                self.disks[i].snapshot = e.snapshot
            elif isinstance(e, Decide):
                self._on_decide(i, e.finalized)
            elif isinstance(e, ProposeNeeded):
                self._push(self.now + 0.01, "propose", i, (e.height, e.round))
            elif isinstance(e, ValidateBlock):
                ok = not e.block.payload.startswith(INVALID_PREFIX)
                self._push(self.now + self.validate_delay, "validated", i, (e.block.digest, ok))
            elif isinstance(e, PeerBehind):
                j = self.index[e.peer]
                chain = self.disks[i].chain
                for fb in chain[e.height - 1 : e.height - 1 + 8]:
                    self.send(i, j, encode_message(NewBlock(fb)))
            elif isinstance(e, Discarded):
                self.discarded[str(e.reason)] += 1

    def _check_persisted_before_sending(self, i: int, m: Message) -> None:
        """What a validator sends, its disk already holds: a crash right after sending never
        lets it contradict itself after the restart."""
        snap = self.disks[i].snapshot
        if isinstance(m, NewBlock):
            return
        assert snap is not None and snap.height == m.height, (i, snap, m.height)
        if isinstance(m, Proposal | Prepare):
            digest = (
                m.proposed_block.digest
                if isinstance(m, Proposal)
                else m.prepare_payload.unsigned_payload.digest
            )
            assert (snap.round, snap.voted_digest) == (m.round, digest)
        elif isinstance(m, Commit):
            cert = snap.prepared
            assert cert is not None and cert.round == m.round
            assert cert.block.digest == m.commit_payload.unsigned_payload.digest
        else:
            assert snap.round == m.round

    def _on_decide(self, i: int, fb: FinalizedBlock) -> None:
        disk = self.disks[i]
        h = fb.block.height
        if h != len(disk.chain) + 1:
            raise SafetyViolation(f"node {i} decided height {h} after {len(disk.chain)}")
        ctx = HeightContext(h, self.config.validators, None)
        bad = validate_finalized_block(fb, ctx)
        if bad is not None:
            raise SafetyViolation(f"node {i} decided a block whose seals do not prove it: {bad}")
        disk.chain.append(fb)
        if i == self.byzantine:
            return
        digest = fb.block.digest
        if self.decided.setdefault(h, digest) != digest:
            raise SafetyViolation(
                f"two blocks decided at height {h}: {self.decided[h].hex()[:12]} and "
                f"{digest.hex()[:12]} (node {i}, seed {self.seed})"
            )

    # ------------------------------------------------------------------ network

    def broadcast(self, i: int, m: Message) -> None:
        if i == self.byzantine:
            self.byzantine_broadcast(i, m)
            return
        data = encode_message(m)
        for j in range(self.n):
            if j != i:
                self.send(i, j, data)

    def send(self, i: int, j: int, data: bytes) -> None:
        f = self.faults if self.chaos else self.reliable
        if self.groups[i] != self.groups[j]:
            return
        if self.rng.random() < f.drop:
            return
        copies = 2 if self.rng.random() < f.duplicate else 1
        for _ in range(copies):
            self._push(
                self.now + self.rng.uniform(f.min_delay, f.max_delay), "deliver", j, (i, data)
            )

    chaos = True

    def _push(self, at: float, kind: str, node: int, data: Any) -> None:
        heapq.heappush(self.queue, _Event(at, next(self.seq), kind, node, data))

    # ------------------------------------------------------------------ the Byzantine validator

    def byzantine_broadcast(self, i: int, m: Message) -> None:
        """Equivocate and forge: split the others into two halves and tell each a different
        story, or send what the honest node would, or garbage that validation must refuse."""
        rng = self.rng
        key = self.keys[i]
        others = [j for j in range(self.n) if j != i]
        rng.shuffle(others)
        half = len(others) // 2
        a, b = others[:half], others[half:]
        alt: Message | None = None
        if isinstance(m, Proposal):
            u = m.proposal_payload.unsigned_payload
            blk = Block(u.height, m.proposed_block.proposer, b"equivocation %d" % rng.randrange(9))
            alt = Proposal(
                SignedPayload.sign(UnsignedProposal(u.height, u.round, blk.digest), key),
                blk,
                m.proposal_justification,
                m.round_change_justification,
            )
        elif isinstance(m, Prepare):
            u2 = m.prepare_payload.unsigned_payload
            alt = Prepare(
                SignedPayload.sign(UnsignedPrepare(u2.height, u2.round, rng.randbytes(32)), key)
            )
        elif isinstance(m, Commit):
            u3 = m.commit_payload.unsigned_payload
            d = rng.randbytes(32)
            seal = sign_digest(key, commit_seal_digest(d, u3.round))
            alt = Commit(SignedPayload.sign(UnsignedCommit(u3.height, u3.round, d, seal), key))
        elif isinstance(m, RoundChange):
            u4 = m.round_change_payload.unsigned_payload
            choice = rng.randrange(4)
            if choice == 0:  # claim a prepared value with forged prepares (all its own)
                blk = Block(u4.height, self.addrs[i], b"forged %d" % rng.randrange(9))
                p = SignedPayload.sign(UnsignedPrepare(u4.height, 0, blk.digest), key)
                alt = RoundChange(
                    SignedPayload.sign(
                        UnsignedRoundChange(u4.height, u4.round, 0, blk.digest), key
                    ),
                    blk,
                    (p,) * self.config_quorum,
                )
            elif choice == 1:  # a round far in the future
                alt = RoundChange(
                    SignedPayload.sign(
                        UnsignedRoundChange(u4.height, MAX_ROUND - rng.randrange(3), None, None),
                        key,
                    )
                )
            elif choice == 2:  # a prepared claim with no certificate at all
                alt = RoundChange(
                    SignedPayload.sign(
                        UnsignedRoundChange(u4.height, u4.round, 0, rng.randbytes(32)), key
                    )
                )
            else:  # hide its prepared certificate: a well-formed "nothing prepared"
                alt = RoundChange(
                    SignedPayload.sign(UnsignedRoundChange(u4.height, u4.round, None, None), key)
                )
        if rng.random() < 0.15:
            self._forge_proposal(i, m.height, others)
        if rng.random() < 0.05:  # a "decided" block carrying only its own seal, repeated
            blk = Block(m.height, self.addrs[i], b"fake final")
            seal = sign_digest(key, commit_seal_digest(blk.digest, 0))
            fake = encode_message(NewBlock(FinalizedBlock(blk, 0, (seal,) * self.config_quorum)))
            for j in others:
                self.send(i, j, fake)
        if alt is None or rng.random() < 0.2:
            targets_m, targets_alt = others, []
        else:
            targets_m, targets_alt = a, b
        dm = encode_message(m)
        for j in targets_m:
            self.send(i, j, dm)
        if alt is not None:
            da = encode_message(alt)
            for j in targets_alt:
                self.send(i, j, da)

    @property
    def config_quorum(self) -> int:
        return (2 * self.n - 1) // 3 + 1

    def _forge_proposal(self, i: int, height: int, targets: list[int]) -> None:
        """A proposal for a later round justified by round changes it signed itself, or by
        copies of one honest round change, with a block it says was prepared."""
        key = self.keys[i]
        r = self.rng.randrange(1, 6)
        blk = Block(height, self.addrs[i], b"forged proposal")
        rc = SignedPayload.sign(UnsignedRoundChange(height, r, None, None), key)
        fake_prepare = SignedPayload.sign(UnsignedPrepare(height, r - 1, blk.digest), key)
        m = Proposal(
            SignedPayload.sign(UnsignedProposal(height, r, blk.digest), key),
            blk,
            (rc,) * self.config_quorum,
            (fake_prepare,) * self.config_quorum,
        )
        data = encode_message(m)
        for j in targets:
            self.send(i, j, data)

    # ------------------------------------------------------------------ the loop

    def run_until(self, t_end: float, on_event: Callable[[], None] | None = None) -> None:
        while self.queue and self.queue[0].at <= t_end:
            ev = heapq.heappop(self.queue)
            self.now = max(self.now, ev.at)
            node = self.nodes[ev.node]
            if node is None:
                continue
            if ev.kind == "deliver":
                src, data = ev.data
                if self.groups[src] != self.groups[ev.node]:
                    continue  # cut while in flight
                self.messages += 1
                effects = node.receive(decode_cached(data), self.local(ev.node))
            elif ev.kind == "tick":
                if ev.data != self.timer_gen[ev.node]:
                    continue
                effects = node.tick(self.local(ev.node))
            elif ev.kind == "propose":
                h, r = ev.data
                payload = b"block h%d r%d by %d #%d" % (h, r, ev.node, self.rng.randrange(1000))
                effects = node.propose_value(h, r, payload, self.local(ev.node))
            elif ev.kind == "validated":
                digest, ok = ev.data
                effects = node.block_validated(digest, ok, self.local(ev.node))
            else:
                raise AssertionError(ev.kind)
            self._run(ev.node, effects)
            if on_event is not None:
                on_event()
        self.now = max(self.now, t_end)

    def partition(self, groups: list[list[int]]) -> None:
        for g, members in enumerate(groups):
            for i in members:
                self.groups[i] = g
        self.log.append(f"{self.now:.2f} partition {groups}")

    def heal(self) -> None:
        self.groups = [0] * self.n
        self.chaos = False
        self.log.append(f"{self.now:.2f} heal")

    def min_honest_height(self, which: list[int] | None = None) -> int:
        return min(self.height(i) for i in (which if which is not None else self.honest()))

    def describe(self) -> str:
        heights = [self.height(i) for i in range(self.n)]
        rounds = [n.round if n is not None else None for n in self.nodes]
        return (
            f"seed={self.seed} t={self.now:.1f} heights={heights} rounds={rounds} "
            f"messages={self.messages} log={self.log[-12:]}"
        )


# --------------------------------------------------------------------------- random schedules

LIVENESS_BOUND = 150.0  # simulated seconds after healing within which progress must show
PROGRESS = 2  # new heights every honest node must decide after healing


@dataclass
class Outcome:
    seed: int
    heights_at_heal: list[int]
    heights_at_end: list[int]
    progress_time: float  # simulated seconds from heal to the progress target
    plan: list[str]
    discarded: dict[str, int]  # refusals by reason (what the Byzantine validator tried)


def run_until_cond(sim: Sim, cond: Callable[[], bool], t_max: float) -> bool:
    """Advance the simulation until ``cond()`` holds (checked after every event) or ``t_max``."""
    while sim.queue and sim.queue[0].at <= t_max:
        sim.run_until(sim.queue[0].at)
        if cond():
            return True
    sim.now = max(sim.now, t_max)
    return cond()


def check_bounded(sim: Sim) -> None:
    """Memory stays bounded by the validator count and the configured caps, whatever arrived."""
    cap = sim.config.future_messages_per_sender
    for node in sim.nodes:
        if node is None:
            continue
        assert len(node.round_changes.latest) <= sim.n
        assert len(node.future) <= sim.n * cap
        assert all(len(q) <= cap for q in node.future.by_sender.values())
        assert len(node.future_blocks) <= sim.config.max_future_heights
        assert len(node.round_state.prepares) <= sim.n
        assert len(node.round_state.commits) <= sim.n


def random_schedule(seed: int) -> Outcome:
    """One seeded schedule: chaos (drops, delays, duplicates, reordering, partitions, crashes
    and restarts, maybe a Byzantine validator), then healing; safety is checked on every
    decision, liveness after healing."""
    rng = random.Random(seed)
    n = rng.choice([4, 4, 4, 4, 5, 7])
    f = (n - 1) // 3
    byzantine = rng.randrange(n) if rng.random() < 0.5 else None
    faults = Faults(
        drop=rng.choice([0.0, 0.05, 0.2, 0.4]),
        duplicate=rng.choice([0.0, 0.1, 0.3]),
        min_delay=0.005,
        max_delay=rng.choice([0.05, 0.3, 1.5]),
    )
    # The f+1 rule stays on (the default): without it, capped timers and drifting clocks leave
    # honest validators' rounds apart for ever once they have drifted (seeds 3769502784 and
    # 7001992 of an earlier version; docs/qbft.md).
    config = {"block_period": rng.choice([0.5, 1.0])}
    clocks = None
    if rng.random() < 0.5:  # clocks that run at different speeds (and show different times)
        clocks = [(rng.uniform(0.7, 1.4), rng.uniform(-1000.0, 1000.0)) for _ in range(n)]
    sim = Sim(seed, n, byzantine=byzantine, faults=faults, config=config, clocks=clocks)
    honest = sim.honest()
    chaos = rng.uniform(1.0, 6.0)
    # Empty-data-dir restarts lose a validator's votes at its height: they count as faults,
    # so at most f of them together with the Byzantine validator.
    amnesia_budget = f - (1 if byzantine is not None else 0)
    plan: list[tuple[float, str, Any]] = []
    for _ in range(rng.randrange(0, 4)):
        t = rng.uniform(0, chaos)
        kind = rng.choice(["crash", "partition"])
        if kind == "crash":
            i = rng.choice(honest)
            back = t + rng.uniform(0.1, 3.0)
            empty = amnesia_budget > 0 and rng.random() < 0.3
            keep_chain = rng.random() < 0.5
            if empty:
                amnesia_budget -= 1
            plan.append((t, "crash", i))
            if back < chaos:
                plan.append((back, "restart", (i, empty, keep_chain)))
        else:
            order = list(range(n))
            rng.shuffle(order)
            cut = rng.randrange(1, n)
            plan.append((t, "partition", [order[:cut], order[cut:]]))
            plan.append((t + rng.uniform(0.2, 3.0), "unpartition", None))
    plan.sort(key=lambda p: p[0])
    for t, kind, arg in plan:
        sim.run_until(t)
        if kind == "crash" and sim.up(arg):
            sim.crash(arg)
        elif kind == "restart" and not sim.up(arg[0]):
            sim.restart(arg[0], empty=arg[1], keep_chain=arg[2])
        elif kind == "partition":
            sim.partition(arg)
        elif kind == "unpartition":
            sim.groups = [0] * n
    sim.run_until(chaos)
    check_bounded(sim)
    sim.heal()
    for i in honest:
        if not sim.up(i):
            sim.restart(i)
    heal_at = sim.now
    at_heal = [sim.height(i) for i in range(n)]
    target = max(at_heal[i] for i in honest) + PROGRESS
    ok = run_until_cond(
        sim, lambda: all(sim.height(i) >= target for i in honest), heal_at + LIVENESS_BOUND
    )
    check_bounded(sim)
    if not ok:
        raise AssertionError(
            f"no liveness within {LIVENESS_BOUND}s of healing (target height {target}): "
            f"{sim.describe()}; replay with QBFT_SIM_SEED={seed}"
        )
    return Outcome(
        seed,
        at_heal,
        [sim.height(i) for i in range(n)],
        sim.now - heal_at,
        [f"{t:.2f} {k} {a}" for t, k, a in plan],
        dict(sorted(sim.discarded.items())),
    )
