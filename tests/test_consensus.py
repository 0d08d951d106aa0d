"""Unit tests and a randomized simulation for gateway.consensus (pure: no clock, no network)."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from eth_keys import keys
from eth_utils import keccak

from gateway.consensus import (
    FUTURE_TOLERANCE,
    SEAL_LENGTH,
    SEAL_VERSION,
    WIGGLE_UNIT,
    Accept,
    BlockInfo,
    ChainTip,
    FinalityViolation,
    PoaState,
    ProposeBlock,
    Reject,
    RejectReason,
    SealError,
    ValidatorSet,
    Wait,
    block_weight,
    chain_weight,
    check_block,
    finalized_number,
    fork_choice_key,
    min_timestamp,
    prefer,
    recover_sealer,
    safe_number,
    seal_digest,
    should_switch,
    sign_seal,
    verify_seal,
    wiggle_delay,
)

REPO = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_P = 2**256 - 2**32 - 977


def addr(i: int) -> bytes:
    """A fake validator address; addr(1) < addr(2) < ... as bytes."""
    return bytes([0] * 19 + [i])


def vset(n: int) -> ValidatorSet:
    return ValidatorSet([addr(i) for i in range(1, n + 1)])


def bhash(*parts: object) -> bytes:
    return keccak(repr(parts).encode())


GENESIS = BlockInfo(
    number=0, hash=bhash("genesis"), parent_hash=b"\0" * 32, timestamp=T0, sealer=None
)


def child(parent: BlockInfo, sealer: bytes, *, gap: int = 1, tag: object = "") -> BlockInfo:
    return BlockInfo(
        number=parent.number + 1,
        hash=bhash(parent.hash, sealer, gap, tag),
        parent_hash=parent.hash,
        timestamp=parent.timestamp + gap,
        sealer=sealer,
    )


def build(
    sealers: list[bytes], *, gap: int = 1, base: BlockInfo = GENESIS, tag: object = ""
) -> list[BlockInfo]:
    """A chain on ``base``, oldest first (``base`` included)."""
    chain = [base]
    for s in sealers:
        chain.append(child(chain[-1], s, gap=gap, tag=tag))
    return chain


def newest_first(chain: list[BlockInfo]) -> list[BlockInfo]:
    return list(reversed(chain))


def round_robin(vs: ValidatorSet, count: int, start: int = 1) -> list[bytes]:
    return [vs.in_turn(n) for n in range(start, start + count)]


# ---------------------------------------------------------------------------------------------
# Seal


# Worked example of docs/consensus.md: anvil's well-known development account #0.
EXAMPLE_KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
EXAMPLE_ADDRESS = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")
EXAMPLE_CHAIN_ID = 31337
EXAMPLE_BLOCK_HASH = bytes(range(32))
EXAMPLE_PREIMAGE = bytes.fromhex(
    "636f636f2d676174657761792f7365616c2f7631"
    "0000000000000000000000000000000000000000000000000000000000007a69"
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
)
EXAMPLE_DIGEST = bytes.fromhex("9fafdb9ce31d10ee7e4fabbc4a65d3e65684e31f1a29a46bb0000e538d3fcbf0")
EXAMPLE_SEAL = bytes.fromhex(
    "01f14066df079047ff68ce0981ffed043887e159b361cd962289af2fbfb5c1b7"
    "36782b9edba78dd6660cf9631960981d8a44f94acb134c54768fe99dfea27b4f"
    "01"
)


def test_seal_worked_example_matches_code_and_doc() -> None:
    assert SEAL_VERSION == 1
    assert keys.PrivateKey(EXAMPLE_KEY).public_key.to_canonical_address() == EXAMPLE_ADDRESS
    preimage = b"coco-gateway/seal/v1" + EXAMPLE_CHAIN_ID.to_bytes(32, "big") + EXAMPLE_BLOCK_HASH
    assert preimage == EXAMPLE_PREIMAGE
    assert keccak(EXAMPLE_PREIMAGE) == EXAMPLE_DIGEST
    assert seal_digest(EXAMPLE_CHAIN_ID, EXAMPLE_BLOCK_HASH) == EXAMPLE_DIGEST
    assert sign_seal(EXAMPLE_KEY, EXAMPLE_CHAIN_ID, EXAMPLE_BLOCK_HASH) == EXAMPLE_SEAL
    assert recover_sealer(EXAMPLE_CHAIN_ID, EXAMPLE_BLOCK_HASH, EXAMPLE_SEAL) == EXAMPLE_ADDRESS
    verify_seal(EXAMPLE_CHAIN_ID, EXAMPLE_BLOCK_HASH, EXAMPLE_SEAL, EXAMPLE_ADDRESS)
    # The document shows exactly these bytes.
    doc = (REPO / "docs" / "consensus.md").read_text().lower()
    for value in (
        EXAMPLE_KEY,
        EXAMPLE_ADDRESS,
        EXAMPLE_BLOCK_HASH,
        EXAMPLE_PREIMAGE,
        EXAMPLE_DIGEST,
        EXAMPLE_SEAL,
    ):
        assert value.hex() in doc.replace("\n", "").replace(" ", ""), value.hex()


def test_seal_verifies_with_an_independent_secp256k1_library() -> None:
    coincurve = pytest.importorskip("coincurve")
    public = coincurve.PublicKey.from_signature_and_message(
        EXAMPLE_SEAL, EXAMPLE_DIGEST, hasher=None
    )
    assert keccak(public.format(compressed=False)[1:])[12:] == EXAMPLE_ADDRESS


@pytest.mark.parametrize("seed", range(8))
def test_seal_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    key = keys.PrivateKey(keccak(b"validator" + bytes([seed])))
    block_hash = rng.randbytes(32)
    chain_id = rng.choice([1, 31337, 2**64 - 1, 2**256 - 1])
    seal = sign_seal(key.to_bytes(), chain_id, block_hash)
    assert len(seal) == SEAL_LENGTH
    assert seal[64] in (0, 1)
    assert int.from_bytes(seal[32:64], "big") <= SECP256K1_N // 2
    assert recover_sealer(chain_id, block_hash, seal) == key.public_key.to_canonical_address()
    verify_seal(chain_id, block_hash, seal, key.public_key.to_canonical_address())
    assert sign_seal(key.to_bytes(), chain_id, block_hash) == seal  # deterministic


def test_tampered_seal_is_rejected() -> None:
    for i in (0, 31, 33, 63):
        tampered = bytearray(EXAMPLE_SEAL)
        tampered[i] ^= 0x01
        with pytest.raises(SealError) as info:
            verify_seal(EXAMPLE_CHAIN_ID, EXAMPLE_BLOCK_HASH, bytes(tampered), EXAMPLE_ADDRESS)
        assert info.value.reason in (
            SealError.WRONG_SEALER,
            SealError.UNRECOVERABLE,
            SealError.HIGH_S,
            SealError.BAD_RS,
        )
    flipped_v = EXAMPLE_SEAL[:64] + bytes([EXAMPLE_SEAL[64] ^ 1])
    with pytest.raises(SealError) as info:
        verify_seal(EXAMPLE_CHAIN_ID, EXAMPLE_BLOCK_HASH, flipped_v, EXAMPLE_ADDRESS)
    assert info.value.reason in (SealError.WRONG_SEALER, SealError.UNRECOVERABLE)


def test_seal_for_another_chain_or_block_does_not_verify() -> None:
    with pytest.raises(SealError) as info:
        verify_seal(1, EXAMPLE_BLOCK_HASH, EXAMPLE_SEAL, EXAMPLE_ADDRESS)
    assert info.value.reason == SealError.WRONG_SEALER
    assert "expected 0x" + EXAMPLE_ADDRESS.hex() in str(info.value)
    other_hash = bytes(31) + b"\x01"
    with pytest.raises(SealError) as info:
        verify_seal(EXAMPLE_CHAIN_ID, other_hash, EXAMPLE_SEAL, EXAMPLE_ADDRESS)
    assert info.value.reason == SealError.WRONG_SEALER
    with pytest.raises(SealError) as info:
        verify_seal(EXAMPLE_CHAIN_ID, EXAMPLE_BLOCK_HASH, EXAMPLE_SEAL, addr(1))
    assert info.value.reason == SealError.WRONG_SEALER


@pytest.mark.parametrize("length", [0, 64, 66, 130])
def test_seal_wrong_length(length: int) -> None:
    seal = (EXAMPLE_SEAL * 3)[:length]
    with pytest.raises(SealError) as info:
        recover_sealer(EXAMPLE_CHAIN_ID, EXAMPLE_BLOCK_HASH, seal)
    assert info.value.reason == SealError.BAD_LENGTH
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("v", [2, 27, 28, 255])
def test_seal_bad_v(v: int) -> None:
    with pytest.raises(SealError) as info:
        recover_sealer(EXAMPLE_CHAIN_ID, EXAMPLE_BLOCK_HASH, EXAMPLE_SEAL[:64] + bytes([v]))
    assert info.value.reason == SealError.BAD_V


def test_seal_bad_r_s_and_high_s() -> None:
    r, s, v = EXAMPLE_SEAL[:32], EXAMPLE_SEAL[32:64], EXAMPLE_SEAL[64]
    zero = bytes(32)
    for bad in (zero + s, r + zero, SECP256K1_N.to_bytes(32, "big") + s):
        with pytest.raises(SealError) as info:
            recover_sealer(EXAMPLE_CHAIN_ID, EXAMPLE_BLOCK_HASH, bad + bytes([v]))
        assert info.value.reason == SealError.BAD_RS
    # The mirror signature (n - s, v ^ 1) is valid ECDSA for the same key, but not canonical.
    high = r + (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big") + bytes([v ^ 1])
    with pytest.raises(SealError) as info:
        recover_sealer(EXAMPLE_CHAIN_ID, EXAMPLE_BLOCK_HASH, high)
    assert info.value.reason == SealError.HIGH_S


def test_seal_unrecoverable() -> None:
    # r = 5 is not the x-coordinate of a curve point: no public key recovers.
    x = 5
    assert pow(x**3 + 7, (SECP256K1_P - 1) // 2, SECP256K1_P) != 1
    bad = x.to_bytes(32, "big") + (1).to_bytes(32, "big") + b"\x00"
    with pytest.raises(SealError) as info:
        recover_sealer(EXAMPLE_CHAIN_ID, EXAMPLE_BLOCK_HASH, bad)
    assert info.value.reason == SealError.UNRECOVERABLE


def test_seal_digest_rejects_bad_inputs() -> None:
    for chain_id, block_hash in (
        (-1, EXAMPLE_BLOCK_HASH),
        (2**256, EXAMPLE_BLOCK_HASH),
        (1, b"\0" * 31),
    ):
        with pytest.raises(SealError) as info:
            seal_digest(chain_id, block_hash)
        assert info.value.reason == SealError.BAD_INPUT
    with pytest.raises(SealError):
        seal_digest(True, EXAMPLE_BLOCK_HASH)
    with pytest.raises(SealError) as info:
        verify_seal(EXAMPLE_CHAIN_ID, EXAMPLE_BLOCK_HASH, EXAMPLE_SEAL, b"\x01" * 19)
    assert info.value.reason == SealError.BAD_INPUT


# ---------------------------------------------------------------------------------------------
# Validator set, turns, recent window


def test_validator_set_is_sorted_and_checked() -> None:
    vs = ValidatorSet([addr(3), "0x" + addr(1).hex(), addr(2)])
    assert vs.validators == (addr(1), addr(2), addr(3))
    assert addr(2) in vs and addr(4) not in vs
    assert vs == vset(3) and hash(vs) == hash(vset(3))
    with pytest.raises(ValueError):
        ValidatorSet([])
    with pytest.raises(ValueError):
        ValidatorSet([addr(1), addr(1)])
    with pytest.raises(ValueError):
        ValidatorSet([b"\x01" * 19])


@pytest.mark.parametrize("n", range(1, 8))
def test_window_and_majority(n: int) -> None:
    vs = vset(n)
    assert vs.recent_window == n // 2
    assert vs.majority == n // 2 + 1
    assert vs.safe_threshold == min(2, n // 2 + 1)


@pytest.mark.parametrize("n", range(1, 8))
def test_turn_order_over_many_blocks(n: int) -> None:
    vs = vset(n)
    seen = [vs.in_turn(number) for number in range(1, 1 + 100 * n)]
    for number, sealer in enumerate(seen, start=1):
        assert sealer == vs.validators[number % n]
        assert vs.is_in_turn(number, sealer)
        assert vs.weight(number, sealer) == 2
    # Every validator gets the same share, in a fixed rotation.
    assert {v: seen.count(v) for v in vs} == {v: seen.count(vs.in_turn(1)) for v in vs}
    if n > 1:
        assert vs.weight(1, vs.in_turn(2)) == 1


@pytest.mark.parametrize("n", range(1, 8))
def test_round_robin_chain_is_accepted(n: int) -> None:
    vs = vset(n)
    chain = [GENESIS]
    for number in range(1, 5 * n + 3):
        block = child(chain[-1], vs.in_turn(number))
        verdict = check_block(vs, 1, block, newest_first(chain))
        assert verdict == Accept(weight=2, in_turn=True)
        chain.append(block)


@pytest.mark.parametrize("n", range(1, 8))
def test_recent_signer_rule(n: int) -> None:
    """A validator may seal again only once floor(N/2) other blocks came in between."""
    vs = vset(n)
    window = vs.recent_window
    chain = build(round_robin(vs, 3 * n))
    head = chain[-1]
    for lookback in range(0, n):
        sealer = chain[-1 - lookback].sealer
        assert sealer is not None
        verdict = check_block(vs, 1, child(head, sealer), newest_first(chain))
        if lookback < window:
            assert isinstance(verdict, Reject), (n, lookback)
            assert verdict.reason == RejectReason.RECENTLY_SEALED
            assert not verdict.retryable
        else:
            assert isinstance(verdict, Accept), (n, lookback, verdict)
    # A chain in which no validator seals twice in any floor(N/2)+1 window exists for every N,
    # and every rejected block broke exactly that property.
    rng = random.Random(n)
    chain = [GENESIS]
    for _ in range(300):
        options = [v for v in vs if v not in {b.sealer for b in chain[-window:]} or window == 0]
        block = child(chain[-1], rng.choice(options))
        assert isinstance(check_block(vs, 1, block, newest_first(chain)), Accept)
        chain.append(block)
    sealers = [b.sealer for b in chain[1:]]
    for i in range(len(sealers) - window):
        run = sealers[i : i + window + 1]
        assert len(set(run)) == len(run)


def test_single_validator_may_seal_every_block() -> None:
    vs = vset(1)
    chain = build([addr(1)] * 10)
    assert isinstance(check_block(vs, 1, child(chain[-1], addr(1)), newest_first(chain)), Accept)


# ---------------------------------------------------------------------------------------------
# Block checks


def test_rejects_unknown_sealer_early_timestamp_wrong_number_and_parent() -> None:
    vs = vset(3)
    chain = build(round_robin(vs, 4), gap=5)
    head = chain[-1]
    ancestry = newest_first(chain)
    good = child(head, vs.in_turn(5), gap=5)
    assert check_block(vs, 5, good, ancestry) == Accept(2, True)
    out_of_turn = child(head, vs.in_turn(6), gap=5)
    assert check_block(vs, 5, out_of_turn, ancestry) == Accept(1, False)

    def reason(block: BlockInfo, **kw: float) -> RejectReason:
        verdict = check_block(vs, 5, block, ancestry, **kw)
        assert isinstance(verdict, Reject), verdict
        assert verdict.detail
        return verdict.reason

    assert reason(child(head, addr(9), gap=5)) == RejectReason.NOT_A_VALIDATOR
    assert reason(child(head, vs.in_turn(5), gap=4)) == RejectReason.TOO_EARLY
    assert reason(child(head, vs.in_turn(5), gap=0)) == RejectReason.TOO_EARLY
    wrong_number = BlockInfo(
        head.number + 2, bhash("x"), head.hash, head.timestamp + 5, vs.in_turn(6)
    )
    assert reason(wrong_number) == RejectReason.WRONG_NUMBER
    wrong_parent = BlockInfo(
        head.number + 1, bhash("y"), bhash("z"), head.timestamp + 5, vs.in_turn(5)
    )
    assert reason(wrong_parent) == RejectReason.WRONG_PARENT
    unsealed = BlockInfo(head.number + 1, bhash("u"), head.hash, head.timestamp + 5, None)
    assert reason(unsealed) == RejectReason.UNSEALED
    far = child(head, vs.in_turn(5), gap=100)
    assert reason(far, now=head.timestamp) == RejectReason.FUTURE
    just_in_time = head.timestamp + 100 - FUTURE_TOLERANCE
    assert check_block(vs, 5, far, ancestry, now=just_in_time) == Accept(2, True)
    verdict = check_block(vs, 5, far, ancestry, now=head.timestamp)
    assert isinstance(verdict, Reject) and verdict.retryable


def test_missing_ancestry_is_retryable_and_genesis_is_enough() -> None:
    vs = vset(5)  # window 2
    chain = build(round_robin(vs, 6))
    block = child(chain[-1], vs.in_turn(7))
    verdict = check_block(vs, 1, block, [chain[-1]])
    assert isinstance(verdict, Reject) and verdict.reason == RejectReason.MISSING_ANCESTRY
    assert verdict.retryable
    assert isinstance(check_block(vs, 1, block, []), Reject)
    assert isinstance(check_block(vs, 1, block, newest_first(chain)[:2]), Accept)
    first = child(GENESIS, vs.in_turn(1))
    assert isinstance(check_block(vs, 1, first, [GENESIS]), Accept)
    with pytest.raises(ValueError):
        check_block(vs, 1, block, [chain[-1], chain[-3]])  # not contiguous: a caller bug


def test_timestamps() -> None:
    assert min_timestamp(100, 0) == 101
    assert min_timestamp(100, 0.5) == 101
    assert min_timestamp(100, 1) == 101
    assert min_timestamp(100, 1.5) == 102
    assert min_timestamp(100, 15) == 115
    with pytest.raises(ValueError):
        min_timestamp(100, -1)
    vs = vset(1)
    same_second = child(GENESIS, addr(1), gap=0)
    verdict = check_block(vs, 0, same_second, [GENESIS])
    assert isinstance(verdict, Reject) and verdict.reason == RejectReason.TOO_EARLY
    assert isinstance(check_block(vs, 0, child(GENESIS, addr(1)), [GENESIS]), Accept)


# ---------------------------------------------------------------------------------------------
# The tick: schedule, out-of-turn delay, automine


def state_at(
    n: int, local: int | None, sealers: list[bytes], *, period: float = 5, gap: int = 5
) -> PoaState:
    vs = vset(n)
    chain = build(sealers, gap=gap)
    return PoaState.start(vs, period, None if local is None else addr(local), newest_first(chain))


def test_in_turn_proposes_at_parent_time_plus_period() -> None:
    vs = vset(3)
    st = state_at(3, None, round_robin(vs, 3))
    head = st.head
    local = vs.in_turn(head.number + 1)
    st = PoaState.start(vs, 5, local, list(st.chain))
    assert st.on_tick(head.timestamp + 1.0, head, 0, False) == [Wait(head.timestamp + 5.0)]
    assert st.on_tick(head.timestamp + 4.999, head, 0, False) == [Wait(head.timestamp + 5.0)]
    due = st.on_tick(head.timestamp + 5.0, head, 0, False)
    assert due == [ProposeBlock(head.number + 1, head.timestamp + 5, head.hash, True)]
    # Idempotent, and late ticks carry the current time as timestamp.
    assert st.on_tick(head.timestamp + 5.0, head, 0, False) == due
    late = st.on_tick(head.timestamp + 9.7, head, 0, False)
    assert late == [ProposeBlock(head.number + 1, head.timestamp + 9, head.hash, True)]


def test_out_of_turn_waits_for_the_wiggle() -> None:
    vs = vset(4)
    st = state_at(4, None, round_robin(vs, 4))
    head = st.head
    in_turn = vs.in_turn(head.number + 1)
    recent = {b.sealer for b in st.chain[: vs.recent_window]}
    others = [v for v in vs if v != in_turn and v not in recent]
    assert len(others) == 1
    local = others[0]
    st = PoaState.start(vs, 5, local, list(st.chain))
    for r in (0.0, 0.25, 0.999):
        due = head.timestamp + 5 + r * 4 * WIGGLE_UNIT
        assert wiggle_delay(4, r) == r * 4 * WIGGLE_UNIT
        assert st.on_tick(head.timestamp + 5.0, head, 0, False, rand=r) == (
            [Wait(due)]
            if r > 0
            else [ProposeBlock(head.number + 1, head.timestamp + 5, head.hash, False)]
        )
        effects = st.on_tick(due, head, 0, False, rand=r)
        assert effects == [ProposeBlock(head.number + 1, int(due), head.hash, False)]
    # The default wiggle is derived from (local, head hash): deterministic, bounded, distinct.
    waits = []
    for v in others:
        s = PoaState.start(vs, 5, v, list(st.chain))
        (effect,) = s.on_tick(head.timestamp + 5.0, head, 0, False)
        assert effect == s.on_tick(head.timestamp + 5.0, head, 0, False)[0]
        if isinstance(effect, Wait):
            assert effect.until is not None
            assert head.timestamp + 5 <= effect.until < head.timestamp + 5 + 4 * WIGGLE_UNIT
            waits.append(effect.until)
    assert len(set(waits)) == len(waits)
    with pytest.raises(ValueError):
        wiggle_delay(4, 1.0)


def test_default_wiggles_spread_out_of_turn_validators() -> None:
    vs = vset(7)
    st = state_at(7, None, round_robin(vs, 7))
    head = st.head
    recent = {b.sealer for b in st.chain[: vs.recent_window]}
    waits = []
    for v in vs:
        if v in recent or v == vs.in_turn(head.number + 1):
            continue
        (effect,) = PoaState.start(vs, 5, v, list(st.chain)).on_tick(
            head.timestamp + 5.0, head, 0, False
        )
        assert isinstance(effect, Wait) and effect.until is not None
        assert head.timestamp + 5 < effect.until < head.timestamp + 5 + 7 * WIGGLE_UNIT
        waits.append(effect.until)
    assert len(waits) == 3 and len(set(waits)) == 3


def test_recent_sealer_never_proposes() -> None:
    for n in range(2, 8):
        vs = vset(n)
        st = state_at(n, None, round_robin(vs, 2 * n))
        for lookback in range(vs.recent_window):
            sealer = st.chain[lookback].sealer
            assert sealer is not None
            mine = PoaState.start(vs, 5, sealer, list(st.chain))
            assert mine.sealed_recently(sealer)
            assert not mine.can_seal_next()
            for now in (st.head.timestamp + 5.0, st.head.timestamp + 1000.0):
                assert mine.on_tick(now, st.head, 10, True) == [Wait(None)]
                assert mine.on_tick(now, st.head, 0, False) == [Wait(None)]


def test_followers_and_on_demand_mode_wait() -> None:
    vs = vset(1)
    follower = PoaState.start(vs, 5, None, [GENESIS])
    assert follower.on_tick(T0 + 100.0, GENESIS, 3, True) == [Wait(None)]
    outsider = PoaState.start(vs, 5, addr(7), [GENESIS])
    assert outsider.on_tick(T0 + 100.0, GENESIS, 3, True) == [Wait(None)]
    dev = PoaState.start(vs, 0, addr(1), [GENESIS])
    assert dev.on_tick(T0 + 100.0, GENESIS, 0, False) == [Wait(None)]
    assert dev.on_tick(T0 + 100.0, GENESIS, 0, True) == [Wait(None)]
    assert dev.on_tick(T0 + 100.0, GENESIS, 1, False) == [Wait(None)]


def test_automine_proposes_at_once_with_increasing_timestamps() -> None:
    vs = vset(1)
    st = PoaState.start(vs, 0, addr(1), [GENESIS])
    now = T0 + 10.25
    timestamps = []
    for _ in range(5):  # a burst: five transactions within the same second
        (effect,) = st.on_tick(now, st.head, 1, True)
        assert isinstance(effect, ProposeBlock)
        assert effect.number == st.head.number + 1 and effect.parent_hash == st.head.hash
        block = BlockInfo(
            effect.number, bhash(effect), effect.parent_hash, effect.timestamp, addr(1)
        )
        assert isinstance(st.on_block(block, now=now), Accept)
        st = st.with_block(block)
        timestamps.append(effect.timestamp)
    assert timestamps == [T0 + 10, T0 + 11, T0 + 12, T0 + 13, T0 + 14]  # anvil-style run-ahead
    assert st.finalized == st.safe == st.head.number == 5


def test_automine_and_on_demand_are_single_validator_features() -> None:
    with pytest.raises(ValueError, match="single validator"):
        PoaState.start(vset(3), 0, addr(1), [GENESIS])
    vs = vset(3)
    st = PoaState.start(vs, 5, vs.in_turn(1), [GENESIS])
    assert st.on_tick(T0 + 1.0, GENESIS, 5, True) == [Wait(T0 + 5.0)]  # automine ignored


def test_automine_with_a_period_keeps_blocks_valid() -> None:
    vs = vset(1)
    st = PoaState.start(vs, 5, addr(1), [GENESIS])
    (effect,) = st.on_tick(T0 + 1.0, GENESIS, 2, True)
    assert effect == ProposeBlock(1, T0 + 5, GENESIS.hash, True)


def test_tick_on_a_stale_head_is_a_caller_bug() -> None:
    st = PoaState.start(vset(1), 1, addr(1), [GENESIS])
    other = child(GENESIS, addr(1))
    with pytest.raises(ValueError, match="update it first"):
        st.on_tick(T0 + 5.0, other, 0, False)


# ---------------------------------------------------------------------------------------------
# Fork choice


def test_block_and_chain_weight() -> None:
    vs = vset(3)
    assert block_weight(vs, 0, None) == 0
    chain = build([vs.in_turn(1), vs.in_turn(3), vs.in_turn(3)])
    # block 1 in turn (2), block 2 sealed by in_turn(3) (1), block 3 in turn (2)
    assert chain_weight(vs, chain) == 5


def test_fork_choice_prefers_heavier_then_shorter_then_lower_hash() -> None:
    low, high = b"\x00" + b"\xff" * 31, b"\xff" + b"\x00" * 31
    heavy = ChainTip(number=10, hash=high, weight=20)
    light = ChainTip(number=9, hash=low, weight=19)
    assert prefer(light, heavy) and not prefer(heavy, light)
    short = ChainTip(number=9, hash=high, weight=20)
    assert prefer(heavy, short) and not prefer(short, heavy)
    same_a = ChainTip(number=10, hash=low, weight=20)
    assert prefer(heavy, same_a) and not prefer(same_a, heavy)
    assert not prefer(heavy, heavy)
    tips = [heavy, light, short, same_a]
    assert max(tips, key=fork_choice_key) == short
    for a, b in itertools.permutations(tips, 2):
        assert prefer(a, b) != prefer(b, a)


def test_fork_choice_prefers_in_turn_blocks() -> None:
    vs = vset(3)
    base = build(round_robin(vs, 3))
    head = base[-1]
    in_turn = child(head, vs.in_turn(4), tag="a")
    out_turn = child(head, vs.in_turn(5), tag="b")
    w = chain_weight(vs, base)
    tip_in = ChainTip(in_turn.number, in_turn.hash, w + block_weight(vs, 4, in_turn.sealer))
    tip_out = ChainTip(out_turn.number, out_turn.hash, w + block_weight(vs, 4, out_turn.sealer))
    assert prefer(tip_out, tip_in) and not prefer(tip_in, tip_out)


def test_should_switch_never_reverts_finalized() -> None:
    current = ChainTip(10, b"\x01" * 32, 15)
    better = ChainTip(11, b"\x02" * 32, 19)
    assert should_switch(current, better, fork_point=8, finalized=8)
    assert not should_switch(current, better, fork_point=7, finalized=8)
    assert not should_switch(better, current, fork_point=9, finalized=8)


# ---------------------------------------------------------------------------------------------
# Finality


def sealers_of(chain: list[BlockInfo]) -> list[tuple[int, bytes | None]]:
    return [(b.number, b.sealer) for b in newest_first(chain)]


def test_finality_single_validator() -> None:
    vs = vset(1)
    chain = build([addr(1)] * 7)
    assert finalized_number(vs, sealers_of(chain)) == 7
    assert safe_number(vs, sealers_of(chain)) == 7
    assert finalized_number(vs, sealers_of([GENESIS])) == 0
    st = PoaState.start(vs, 1, addr(1), [GENESIS])
    for block in chain[1:]:
        st = st.with_block(block)
        assert st.finalized == st.safe == block.number
        assert st.finalized_hash == block.hash


def test_finality_three_validators() -> None:
    vs = vset(3)
    a, b, c = vs.validators
    chain = build([b, c, a, b])  # blocks 1..4
    assert finalized_number(vs, sealers_of(chain)) == 3  # a (4) and c (3): two distinct
    assert safe_number(vs, sealers_of(chain)) == 3
    assert finalized_number(vs, sealers_of(chain[:2])) == 0  # block 1 alone: one validator
    # Non-validators' blocks do not count.
    assert finalized_number(vs, [(3, addr(9)), (2, addr(8)), (1, a), (0, None)]) == 0


def test_finality_four_validators() -> None:
    vs = vset(4)  # majority 3, window 2
    a, b, c, d = vs.validators
    chain = build([b, c, d, a, b, c])
    assert finalized_number(vs, sealers_of(chain)) == 4  # c, b, a on blocks 6, 5, 4
    assert safe_number(vs, sealers_of(chain)) == 5
    # Out of turn with one validator offline: the sealers still differ within any 3 blocks.
    chain = build([b, c, a, b, c, a, b])
    assert finalized_number(vs, sealers_of(chain)) == 5
    with pytest.raises(ValueError):
        finalized_number(vs, [(6, a), (4, b)])


def test_state_finality_is_monotone_and_guards_reorgs() -> None:
    vs = vset(3)
    a, b, c = vs.validators
    main = build([b, c, a, b, c, a], tag="main")
    st = PoaState.start(vs, 1, a, [GENESIS])
    seen = []
    for block in main[1:]:
        assert isinstance(st.on_block(block), Accept)
        st = st.with_block(block)
        seen.append((st.finalized, st.safe))
    assert seen == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]
    assert st.finalized_hash == main[5].hash
    assert len(st.chain) == vs.majority
    # A fork above the finalized block may replace the head...
    fork = [*main[:6], child(main[5], c, tag="fork")]
    fork.append(child(fork[-1], b, tag="fork"))
    st2 = st.with_chain(newest_first(fork)[:3])
    assert st2.head == fork[-1] and st2.finalized == 6 and st2.safe == 6
    # ...but one that forks below it may not, nor one that does not reach it.
    low_fork = [*main[:5], child(main[4], a, tag="low")]
    with pytest.raises(FinalityViolation):
        st.with_chain(newest_first(low_fork))
    with pytest.raises(ValueError):
        st.with_chain(newest_first(main)[:1])
    with pytest.raises(ValueError):
        st.with_block(child(main[3], c))
    # on_block without ancestry needs the block to extend the head.
    verdict = st.on_block(child(main[4], c))
    assert isinstance(verdict, Reject) and verdict.reason == RejectReason.MISSING_ANCESTRY


def test_restart_restores_the_finality_floor() -> None:
    vs = vset(3)
    a, b, c = vs.validators
    chain = build([b, c, a, b, c, a])
    st = PoaState.start(
        vs, 1, a, newest_first(chain)[:2], finalized=5, finalized_hash=chain[5].hash
    )
    assert st.finalized == 5 and st.safe == 5
    with pytest.raises(FinalityViolation):
        st.with_chain(newest_first([*chain[:5], child(chain[4], a, tag="x")]))


# ---------------------------------------------------------------------------------------------
# Randomized simulation: validators, a fake clock and a fake network


@dataclass
class SimNode:
    index: int
    state: PoaState
    store: dict[bytes, BlockInfo]
    weight: dict[bytes, int]
    online: bool = True
    timer: float | None = None
    orphans: dict[bytes, list[BlockInfo]] = field(default_factory=dict)
    finalized_log: list[tuple[int, bytes | None]] = field(default_factory=list)
    rejected: int = 0


class Simulation:
    """Discrete-event simulation: every validator runs the pure core; the 'shell' is here."""

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        period: float = 5.0,
        delay: tuple[float, float] = (0.01, 0.5),
        offline: frozenset[int] = frozenset(),
        use_rand: bool = False,
    ) -> None:
        self.vs = vset(n)
        self.rng = random.Random(seed)
        self.period = period
        self.delay = delay
        self.use_rand = use_rand
        self.now = float(T0)
        self.queue: list[tuple[float, int, str, int, BlockInfo | None]] = []
        self.seq = itertools.count()
        self.partition: list[set[int]] | None = None
        self.nodes = [
            SimNode(
                index=i,
                state=PoaState.start(self.vs, period, self.vs.validators[i], [GENESIS]),
                store={GENESIS.hash: GENESIS},
                weight={GENESIS.hash: 0},
                online=i not in offline,
            )
            for i in range(n)
        ]
        self.proposed = 0
        for node in self.nodes:
            self.schedule(self.now, "tick", node.index, None)

    def schedule(self, at: float, kind: str, node: int, block: BlockInfo | None) -> None:
        heapq.heappush(self.queue, (at, next(self.seq), kind, node, block))

    def connected(self, a: int, b: int) -> bool:
        return self.partition is None or any(a in g and b in g for g in self.partition)

    # -- the shell of one node ----------------------------------------------------------------

    def ancestry(self, node: SimNode, block_hash: bytes, count: int) -> list[BlockInfo]:
        out: list[BlockInfo] = []
        block: BlockInfo | None = node.store[block_hash]
        while block is not None and len(out) < count:
            out.append(block)
            block = node.store.get(block.parent_hash) if block.number > 0 else None
        return out

    def fork_point(self, node: SimNode, a: bytes, b: bytes) -> int:
        x, y = node.store[a], node.store[b]
        while x.hash != y.hash:
            if x.number >= y.number:
                x = node.store[x.parent_hash]
            else:
                y = node.store[y.parent_hash]
        return x.number

    def receive(self, node: SimNode, block: BlockInfo) -> None:
        if block.hash in node.store:
            return
        if block.parent_hash not in node.store:
            node.orphans.setdefault(block.parent_hash, []).append(block)
            return
        ancestry = self.ancestry(node, block.parent_hash, self.vs.recent_window + 1)
        verdict = check_block(self.vs, self.period, block, ancestry, now=self.now)
        if isinstance(verdict, Reject):
            assert verdict.reason == RejectReason.RECENTLY_SEALED, verdict
            node.rejected += 1
            return
        node.store[block.hash] = block
        node.weight[block.hash] = node.weight[block.parent_hash] + verdict.weight
        head = node.state.head
        current = ChainTip(head.number, head.hash, node.weight[head.hash])
        candidate = ChainTip(block.number, block.hash, node.weight[block.hash])
        fork = self.fork_point(node, head.hash, block.hash)
        if should_switch(current, candidate, fork_point=fork, finalized=node.state.finalized):
            if fork == head.number:
                node.state = node.state.with_block(block)
            else:
                depth = block.number - node.state.finalized + 1
                node.state = node.state.with_chain(self.ancestry(node, block.hash, depth))
            self.record_finality(node)
        for orphan in node.orphans.pop(block.hash, []):
            self.receive(node, orphan)

    def record_finality(self, node: SimNode) -> None:
        st = node.state
        if node.finalized_log:
            last_number, last_hash = node.finalized_log[-1]
            assert st.finalized >= last_number, "finalized number decreased"
            if st.finalized == last_number:
                assert st.finalized_hash == last_hash
        assert st.safe >= st.finalized
        node.finalized_log.append((st.finalized, st.finalized_hash))

    def tick(self, node: SimNode) -> None:
        rand = self.rng.random() if self.use_rand else None
        for effect in node.state.on_tick(self.now, node.state.head, 0, False, rand=rand):
            if isinstance(effect, ProposeBlock):
                assert effect.parent_hash == node.state.head.hash
                sealer = self.vs.validators[node.index]
                block = BlockInfo(
                    effect.number,
                    bhash("sim", effect.parent_hash, sealer, effect.timestamp),
                    effect.parent_hash,
                    effect.timestamp,
                    sealer,
                )
                assert effect.timestamp <= self.now
                self.proposed += 1
                self.receive(node, block)
                assert node.state.head == block  # own in-time block always extends our head
                for other in self.nodes:
                    if other is not node and self.connected(node.index, other.index):
                        lag = self.rng.uniform(*self.delay)
                        self.schedule(self.now + lag, "deliver", other.index, block)
                self.schedule(self.now, "tick", node.index, None)
            else:
                assert isinstance(effect, Wait)
                if effect.until is not None and effect.until != node.timer:
                    assert effect.until > self.now
                    node.timer = effect.until
                    self.schedule(effect.until, "timer", node.index, None)

    def run(self, until: float) -> int:
        steps = 0
        while self.queue and self.queue[0][0] <= until:
            at, _, kind, index, block = heapq.heappop(self.queue)
            assert at >= self.now
            self.now = at
            node = self.nodes[index]
            if not node.online:
                continue
            steps += 1
            if kind == "deliver":
                assert block is not None
                before = node.state.head.hash
                self.receive(node, block)
                if node.state.head.hash != before:
                    self.tick(node)
            elif kind == "timer":
                if node.timer == at:
                    node.timer = None
                    self.tick(node)
            else:
                self.tick(node)
        self.now = until
        return steps

    # -- properties ---------------------------------------------------------------------------

    def canonical(self, node: SimNode) -> list[BlockInfo]:
        return list(reversed(self.ancestry(node, node.state.head.hash, node.state.head.number + 1)))

    def check_safety(self, *, agreement: bool) -> None:
        window = self.vs.recent_window
        for node in self.nodes:
            chain = self.canonical(node)
            assert chain[0] == GENESIS
            sealers = [b.sealer for b in chain[1:]]
            assert all(s in self.vs for s in sealers)
            for i in range(len(sealers)):
                run = sealers[max(0, i - window) : i + 1]
                assert len(set(run)) == len(run), f"a validator sealed twice within {window + 1}"
            for parent, block in itertools.pairwise(chain):
                assert block.timestamp >= min_timestamp(parent.timestamp, self.period)
            fin = node.state.finalized
            assert chain[fin].hash == node.state.finalized_hash
            assert fin == finalized_number(self.vs, [(b.number, b.sealer) for b in reversed(chain)])
        if agreement:
            for x, y in itertools.combinations(self.nodes, 2):
                low = min(x.state.finalized, y.state.finalized)
                assert self.canonical(x)[low] == self.canonical(y)[low], "finalized blocks conflict"


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("max_delay", [0.5, 4.75])
def test_simulation_synchronous_network(n: int, seed: int, max_delay: float) -> None:
    """Delays inside the 5 s period: progress at the period, agreement on finalized blocks."""
    sim = Simulation(n, seed=seed, period=5.0, delay=(0.0, max_delay), use_rand=seed % 2 == 1)
    steps = sim.run(T0 + 5 * 300)
    assert steps > 300
    sim.check_safety(agreement=True)
    for node in sim.nodes:
        head = node.state.head.number
        assert head >= 280, head  # one block per period, with a little slack for forks
        assert node.state.finalized >= head - sim.vs.recent_window - 2
        assert node.state.safe >= node.state.finalized


@pytest.mark.parametrize("seed", range(6))
def test_simulation_slow_network_keeps_local_safety(seed: int) -> None:
    """Delays beyond the period break the synchrony assumption (see the poa module docstring):
    validators may finalize conflicting blocks and stop, but each node still obeys the rules
    locally and never lowers its finalized block."""
    sim = Simulation(5, seed=seed, period=2.0, delay=(0.0, 6.0), use_rand=True)
    sim.run(T0 + 2 * 400)
    sim.check_safety(agreement=False)
    assert all(node.state.head.number > 3 for node in sim.nodes)


@pytest.mark.parametrize("seed", range(3))
def test_simulation_with_offline_validators(seed: int) -> None:
    """5 validators, 2 offline: out-of-turn blocks keep the chain and finality moving."""
    sim = Simulation(5, seed=seed, period=3.0, offline=frozenset({0, 3}))
    sim.run(T0 + 3 * 200)
    online = [node for node in sim.nodes if node.online]
    sim.nodes = online
    sim.check_safety(agreement=True)
    chain = sim.canonical(online[0])
    assert len(chain) > 150
    assert {b.sealer for b in chain[1:]} == {sim.vs.validators[i] for i in (1, 2, 4)}
    assert any(not sim.vs.is_in_turn(b.number, b.sealer or b"") for b in chain[1:])
    assert online[0].state.finalized >= chain[-1].number - 2


@pytest.mark.parametrize("seed", range(5))
def test_simulation_partition_then_heal(seed: int) -> None:
    """A minority side cannot finalize; after healing everyone converges on the majority."""
    sim = Simulation(5, seed=seed, period=2.0, delay=(0.01, 0.3), use_rand=True)
    sim.run(T0 + 100)
    sim.partition = [{0, 1}, {2, 3, 4}]
    before = [node.state.finalized for node in sim.nodes]
    sim.run(T0 + 400)
    minority_gain = max(sim.nodes[i].state.finalized - before[i] for i in (0, 1))
    assert minority_gain <= 2  # only what was already in flight before the cut
    sim.check_safety(agreement=True)
    sim.partition = None
    # Re-deliver each side's blocks to the other (the catch-up a real p2p room would do).
    for node in sim.nodes:
        for block in sorted(node.store.values(), key=lambda b: b.number):
            for other in sim.nodes:
                if other is not node and block.hash not in other.store:
                    sim.schedule(
                        sim.now + sim.rng.uniform(0.01, 0.3), "deliver", other.index, block
                    )
    sim.run(T0 + 700)
    sim.check_safety(agreement=True)
    heads = [node.state.head.number for node in sim.nodes]
    assert min(heads) > 280 and max(heads) - min(heads) <= 1, heads
    finalized = [node.state.finalized for node in sim.nodes]
    assert max(finalized) - min(finalized) <= 1, finalized
