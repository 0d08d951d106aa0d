"""Deterministic simulation of the QBFT core (issue 8, item 11): seeded schedules of drops,
delays, duplicates, reordering, partitions, crashes and restarts, with a Byzantine validator
that equivocates and forges justifications. Safety (one decided block per height across all
honest validators) is checked on every decision; liveness after the network heals.

Environment:
  QBFT_SIM_SCHEDULES=<n>  how many random schedules (default 1000; raise it for a soak, with
                          pytest's --timeout=0 past the suite's 300 s)
  QBFT_SIM_SEED=<seed>    replay exactly one schedule (the seed a failure printed)
  QBFT_SIM_BASE=<seed>    first seed of the run (default: fresh each run, printed on failure)
"""

from __future__ import annotations

import os
import random
import time

import pytest
from qbft_sim import (
    LIVENESS_BOUND,
    Faults,
    Outcome,
    Sim,
    check_bounded,
    random_schedule,
    run_until_cond,
)

from gateway.consensus.qbft import Message, Proposal, RoundSnapshot

DEFAULT_SCHEDULES = 1000


def _base_seed() -> int:
    if "QBFT_SIM_BASE" in os.environ:
        return int(os.environ["QBFT_SIM_BASE"])
    return random.SystemRandom().randrange(2**32)


def test_random_schedules_are_safe_and_live() -> None:
    if "QBFT_SIM_SEED" in os.environ:
        seeds = [int(os.environ["QBFT_SIM_SEED"])]
    else:
        base = _base_seed()
        count = int(os.environ.get("QBFT_SIM_SCHEDULES", DEFAULT_SCHEDULES))
        seeds = list(range(base, base + count))
    started = time.monotonic()
    outcomes: list[Outcome] = []
    for seed in seeds:
        try:
            outcomes.append(random_schedule(seed))
        except AssertionError as exc:
            raise AssertionError(
                f"schedule failed; replay with QBFT_SIM_SEED={seed}: {exc}"
            ) from exc
    elapsed = time.monotonic() - started
    assert len(outcomes) == len(seeds)
    worst = max(o.progress_time for o in outcomes)
    assert worst <= LIVENESS_BOUND
    # The schedules did more than idle: validators decided heights in every one, and the
    # Byzantine validator's forgeries reached validation and were refused.
    assert all(max(o.heights_at_end) >= 2 for o in outcomes)
    if len(seeds) >= 200:
        refused = {reason for o in outcomes for reason in o.discarded}
        assert {"wrong-proposer", "duplicate-authors", "too-few-seals"} <= refused, refused
    print(
        f"{len(seeds)} schedules from seed {seeds[0]} in {elapsed:.1f}s; "
        f"slowest recovery {worst:.1f}s"
    )


def test_a_schedule_replays_exactly_from_its_seed() -> None:
    seed = _base_seed()
    a, b = random_schedule(seed), random_schedule(seed)
    assert a == b


def _chains_agree(sim: Sim) -> None:
    """Every honest chain is a prefix of the longest one: nothing lost, nothing forked."""
    honest = sim.honest()
    longest = max((sim.disks[i].chain for i in honest), key=len)
    for i in honest:
        chain = sim.disks[i].chain
        assert [fb.block.digest for fb in chain] == [
            fb.block.digest for fb in longest[: len(chain)]
        ]


def _progress(sim: Sim, nodes: list[int], by: int, within: float) -> float:
    start = sim.now
    target = max(sim.height(i) for i in nodes) + by
    ok = run_until_cond(sim, lambda: all(sim.height(i) >= target for i in nodes), start + within)
    assert ok, f"no progress to height {target} within {within}s: {sim.describe()}"
    return sim.now - start


@pytest.mark.parametrize("n,byzantine,drift", [(4, None, False), (4, 3, True), (7, 0, True)])
def test_round_change_storm_after_a_long_outage(n: int, byzantine: int | None, drift: bool) -> None:
    """Every link down for ten minutes, each validator losing contact at a different time (and,
    with ``drift``, each clock running at its own speed). Alone, no validator climbs past round
    1, so no storm builds up; then the validators restart from persisted states at scattered
    rounds (what a storm leaves behind), the network heals, and the f+1 rule and the
    round-change quorum bring them to one round and a decision."""
    seed = _base_seed()
    rng = random.Random(seed)
    clocks = (
        [(rng.uniform(0.7, 1.4), rng.uniform(-99.0, 99.0)) for _ in range(n)] if drift else None
    )
    sim = Sim(seed, n, byzantine=byzantine, clocks=clocks)
    sim.run_until(3.0)
    for i in range(n):
        sim.run_until(sim.now + rng.uniform(0.5, 7.0))
        sim.groups[i] = 100 + i
    sim.run_until(sim.now + 600.0)
    # Alone, nobody climbs far (round 1 needs no company; round changes heard before the cut
    # may lend a little). Without the guard each would be near round 75 by now.
    assert max(sim.nodes[i].round for i in sim.honest()) <= 5  # type: ignore[union-attr]
    check_bounded(sim)
    for i in sim.honest():
        sim.crash(i)
        disk = sim.disks[i]
        snap = disk.snapshot
        height = len(disk.chain) + 1
        if snap is not None and snap.height == height:
            disk.snapshot = RoundSnapshot(
                height, snap.round + rng.randrange(0, 60), None, snap.prepared
            )
        else:
            disk.snapshot = RoundSnapshot(height, rng.randrange(60), None, None)
        sim.restart(i)
    sim.heal()
    # With f+1 honest validators ahead the others jump (the f+1 rule). With fewer, the one
    # ahead waits (it has no company) and the others climb one capped timeout per round, at
    # the slowest clock's pace: the bound grows with the spread of the rounds.
    spread = 60
    slowest = min(sim.rate)
    bound = LIVENESS_BOUND + spread * sim.config.max_round_timeout / slowest
    took = _progress(sim, sim.honest(), 2, bound)
    check_bounded(sim)
    _chains_agree(sim)
    rounds = [node.round for node in sim.nodes if node is not None]
    assert took < bound, f"seed {seed}, rounds {rounds}"


def test_a_minority_with_a_byzantine_validator_climbs_rounds_and_rejoins() -> None:
    """Seven validators split 4/3 for five minutes, the Byzantine one in the four: that side
    has company (f+1 others) in every round but no quorum, so its rounds climb; the three
    mostly wait. After healing the three are pulled up by the f+1 rule and all decide."""
    seed = _base_seed()
    rng = random.Random(seed)
    clocks = [(rng.uniform(0.8, 1.25), 0.0) for _ in range(7)]
    sim = Sim(seed, 7, byzantine=0, clocks=clocks)
    sim.run_until(3.0)
    sim.partition([[0, 1, 2, 3], [4, 5, 6]])
    sim.run_until(sim.now + 300.0)
    rounds = [node.round for node in sim.nodes if node is not None]
    # The three usually wait in the first rounds, unless a Byzantine round change for a huge
    # round, heard before the split, lends them the company they lack.
    assert min(rounds[1:4]) >= 10, rounds
    sim.heal()
    _progress(sim, sim.honest(), 2, LIVENESS_BOUND)
    check_bounded(sim)
    _chains_agree(sim)


@pytest.mark.parametrize("n,keep_chain", [(4, False), (4, True), (7, False)])
def test_validator_restarted_with_an_empty_data_directory(n: int, keep_chain: bool) -> None:
    """It rejoins with no round state (and no blocks, or only its decided blocks), catches up
    through the others' finalized blocks, and is then needed for a quorum again."""
    seed = _base_seed()
    sim = Sim(seed, n, faults=Faults(drop=0.05, duplicate=0.1))
    sim.run_until(8.0)
    victim = sim.rng.randrange(n)
    sim.crash(victim)
    kept = sim.height(victim)
    sim.run_until(sim.now + 6.0)
    sim.restart(victim, empty=True, keep_chain=keep_chain)
    assert sim.height(victim) == (kept if keep_chain else 0)
    _progress(sim, [victim], max(sim.height(i) for i in range(n)) + 1, LIVENESS_BOUND)
    _chains_agree(sim)
    # Now the restarted validator must carry its weight: take f others away.
    f = (n - 1) // 3
    for j in [j for j in range(n) if j != victim][:f]:
        sim.crash(j)
    sim.heal()
    up = [i for i in range(n) if sim.up(i)]
    _progress(sim, up, 2, LIVENESS_BOUND)
    _chains_agree(sim)


@pytest.mark.parametrize("n", [4, 7])
def test_more_than_a_third_down_stops_the_chain_and_it_resumes_when_they_return(n: int) -> None:
    seed = _base_seed()
    sim = Sim(seed, n, faults=Faults(drop=0.1, duplicate=0.1, max_delay=0.5))
    sim.run_until(6.0)
    f = (n - 1) // 3
    down = sim.rng.sample(range(n), f + 1)
    for i in down:
        sim.crash(i)
    sim.run_until(sim.now + 2.0)  # decisions already under way may still land
    stalled = max(sim.height(i) for i in range(n))
    sim.run_until(sim.now + 120.0)
    # No new height without a quorum (a validator may still learn a block decided before).
    assert max(sim.height(i) for i in range(n)) == stalled, "decided without a quorum"
    _chains_agree(sim)
    sim.heal()
    for i in down:
        sim.restart(i)
    _progress(sim, list(range(n)), 2, LIVENESS_BOUND)
    _chains_agree(sim)


class _CrashingProposerSim(Sim):
    """Crashes validator ``victim`` while it sends its next proposal: only ``reach`` others
    receive it (its PREPARE, sent right after, is lost with it)."""

    victim = -1
    reach = 0
    armed = False

    def broadcast(self, i: int, m: Message) -> None:
        if self.armed and i == self.victim and isinstance(m, Proposal):
            self.armed = False
            from gateway.consensus.qbft import encode_message

            data = encode_message(m)
            for j in [j for j in range(self.n) if j != i][: self.reach]:
                self.send(i, j, data)
            self.crash(i)
            return
        super().broadcast(i, m)


@pytest.mark.parametrize("reach", [0, 1, 2])
def test_proposer_crashing_mid_round(reach: int) -> None:
    """The proposer dies while proposing; the others time out, change round, and decide the
    height without it; it restarts later from its persisted state and catches up."""
    seed = _base_seed()
    sim = _CrashingProposerSim(seed, 4, config={"block_period": 1.0})
    sim.run_until(5.0)
    node = sim.nodes[0]
    assert node is not None
    # Arm the crash on the leader of the next height's round 0.
    from gateway.consensus.qbft import proposer

    h = max(sim.height(i) for i in range(4)) + 1
    run_until_cond(sim, lambda: all(sim.height(i) >= h - 1 for i in range(4)), sim.now + 30)
    ctx = next(n for n in sim.nodes if n is not None and n.height == h).ctx
    sim.victim = sim.index[proposer(0, ctx)]
    sim.reach = reach
    sim.armed = True
    run_until_cond(sim, lambda: not sim.armed, sim.now + 30)
    assert not sim.up(sim.victim)
    survivors = [i for i in range(4) if i != sim.victim]
    _progress(sim, survivors, 1, LIVENESS_BOUND)
    assert all(sim.height(i) >= h for i in survivors)
    _chains_agree(sim)
    sim.restart(sim.victim)
    _progress(sim, list(range(4)), 1, LIVENESS_BOUND)
    _chains_agree(sim)
