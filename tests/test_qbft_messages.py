"""QBFT wire format v2 and arithmetic: quorum, f, proposer, round timer, encoding, signatures,
and the worked example of docs/qbft.md recomputed from the code (pure: no node, no network)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import rlp
from eth_keys import keys

from gateway.consensus.qbft import (
    MAX_ROUND,
    Block,
    Commit,
    FinalizedBlock,
    HeightContext,
    MessageFormatError,
    NewBlock,
    Prepare,
    Proposal,
    RoundChange,
    SignedPayload,
    UnsignedCommit,
    UnsignedPrepare,
    UnsignedProposal,
    UnsignedRoundChange,
    commit_seal_digest,
    decode_message,
    encode_message,
    f,
    proposer,
    quorum,
    recover_signer,
    round_timeout,
    validate_finalized_block,
)
from gateway.consensus.qbft.messages import (
    MAX_MESSAGE_BYTES,
    QBFT_VERSION,
    UNBOUND_DOMAIN,
    qbft_domain,
    rlp_decode,
    rlp_encode,
    sign_digest,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "qbft.md"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def key(i: int) -> keys.PrivateKey:
    return keys.PrivateKey((i + 1).to_bytes(32, "big"))


def address(i: int) -> bytes:
    return bytes(key(i).public_key.to_canonical_address())


def validators(n: int) -> tuple[bytes, ...]:
    return tuple(sorted(address(i) for i in range(n)))


# --------------------------------------------------------------------------- arithmetic


def test_quorum_is_the_specs_formula_and_ceil_two_thirds() -> None:
    for n in range(1, 400):
        assert quorum(n) == (n * 2 - 1) // 3 + 1 == math.ceil(2 * n / 3)
        assert f(n) == (n - 1) // 3
        # Two quorums share at least f+1 validators, so at least one honest one.
        assert 2 * quorum(n) - n >= f(n) + 1
        # A quorum is reachable with f validators silent.
        assert quorum(n) <= n - f(n)
    assert [quorum(n) for n in (1, 2, 3, 4, 5, 6, 7, 10)] == [1, 2, 2, 3, 4, 4, 5, 7]
    assert [f(n) for n in (1, 3, 4, 6, 7, 10)] == [0, 0, 1, 1, 2, 3]
    with pytest.raises(ValueError):
        quorum(0)


def test_proposer_round_robin_follows_the_previous_blocks_proposer() -> None:
    vals = validators(4)
    first = HeightContext(1, vals, None)
    assert [proposer(r, first) for r in range(6)] == [
        vals[0],
        vals[1],
        vals[2],
        vals[3],
        vals[0],
        vals[1],
    ]
    after_v2 = HeightContext(9, vals, vals[2])
    assert [proposer(r, after_v2) for r in range(3)] == [vals[3], vals[0], vals[1]]
    # A previous proposer that left the set: start at the first validator sorted after it.
    gone = bytes.fromhex("ff" * 20)
    assert proposer(0, HeightContext(5, vals, gone)) == vals[0]
    between = bytes(a ^ b for a, b in zip(vals[1], b"\x00" * 19 + b"\x01", strict=True))
    if vals[1] < between < vals[2]:
        assert proposer(0, HeightContext(5, vals, between)) == vals[2]


def test_round_timer_doubles_per_round_and_is_capped() -> None:
    assert [round_timeout(r, 1.0, 30.0) for r in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert round_timeout(MAX_ROUND, 1.0, 30.0) == 30.0  # no 2**(2**31) computed
    assert round_timeout(61, 0.001, 10.0) == 10.0


# --------------------------------------------------------------------------- RLP and encoding


def test_rlp_codec_matches_pyrlp_and_is_strict() -> None:
    samples: list[object] = [
        b"",
        b"\x00",
        b"\x7f",
        b"\x80",
        b"x" * 55,
        b"x" * 56,
        b"y" * 1024,
        0,
        1,
        127,
        128,
        2**64 - 1,
        [],
        [b"a", [1, [2, b""]]],
        [b"z" * 60] * 5,
    ]
    for s in samples:
        assert rlp_encode(s) == rlp.encode(s)
        assert rlp_decode(rlp.encode(s)) == rlp.decode(rlp.encode(s))
    for bad in (
        b"",
        b"\x81\x05",
        b"\xb8\x05hello",
        b"\x83ab",
        b"\xc2\x01",
        b"\x01\x02",
        b"\xb9\x00\x40" + b"a" * 64,
    ):
        with pytest.raises(MessageFormatError):
            rlp_decode(bad)


def _sample_messages() -> list[object]:
    k0, k1 = key(0), key(1)
    blk = Block(7, address(0), b"payload")
    p = SignedPayload.sign(UnsignedPrepare(7, 1, blk.digest), k1)
    rc_prepared = SignedPayload.sign(UnsignedRoundChange(7, 2, 1, blk.digest), k1)
    rc_plain = SignedPayload.sign(UnsignedRoundChange(7, 2, None, None), k0)
    seal = sign_digest(k0, commit_seal_digest(blk.digest, 1))
    return [
        Proposal(SignedPayload.sign(UnsignedProposal(7, 0, blk.digest), k0), blk),
        Proposal(
            SignedPayload.sign(UnsignedProposal(7, 2, blk.digest), k0),
            blk,
            (rc_prepared, rc_plain),
            (p,),
        ),
        Prepare(p),
        Commit(SignedPayload.sign(UnsignedCommit(7, 1, blk.digest, seal), k0)),
        RoundChange(rc_plain),
        RoundChange(rc_prepared, blk, (p,)),
        NewBlock(FinalizedBlock(blk, 1, (seal,))),
    ]


def test_every_message_type_round_trips_and_keeps_its_author() -> None:
    for m in _sample_messages():
        data = encode_message(m)  # type: ignore[arg-type]
        back = decode_message(data)
        assert back == m
        assert encode_message(back) == data
        if not isinstance(m, NewBlock):
            assert back.author == m.author in (address(0), address(1))  # type: ignore[union-attr]


def _envelope(
    code: int, body: object, version: int = QBFT_VERSION, domain: bytes = UNBOUND_DOMAIN
) -> bytes:
    return rlp.encode([version, domain, code, body])


def test_decoding_refuses_malformed_messages_with_a_reason() -> None:
    good = encode_message(_sample_messages()[2])  # a PREPARE
    top = rlp.decode(good)
    assert top[1] == UNBOUND_DOMAIN
    payload, sig = top[3]

    def reason(data: bytes) -> str:
        with pytest.raises(MessageFormatError) as info:
            decode_message(data)
        return info.value.reason

    assert reason(b"\xc0" + good) == MessageFormatError.NOT_RLP
    assert reason(good + b"\x00") == MessageFormatError.NOT_RLP
    assert reason(_envelope(0x13, top[3], version=3)) == MessageFormatError.BAD_VERSION
    # a version-1 message (no domain) is refused for its version, not its shape
    assert reason(rlp.encode([1, 0x13, top[3]])) == MessageFormatError.BAD_VERSION
    assert reason(_envelope(0x13, top[3], domain=b"\x01" * 31)) == MessageFormatError.BAD_LENGTH
    assert reason(_envelope(0x77, top[3])) == MessageFormatError.BAD_CODE
    assert reason(_envelope(0x13, [payload])) == MessageFormatError.BAD_SHAPE
    assert reason(_envelope(0x13, [payload, sig[:64]])) == MessageFormatError.BAD_LENGTH
    # Round numbers: above MAX_ROUND, or wider than 64 bits, are refused before anything grows.
    assert (
        reason(_envelope(0x13, [[7, MAX_ROUND + 1, payload[2]], sig]))
        == MessageFormatError.OUT_OF_RANGE
    )
    assert (
        reason(_envelope(0x13, [[7, 2**200, payload[2]], sig])) == MessageFormatError.OUT_OF_RANGE
    )
    assert (
        reason(_envelope(0x13, [[7, b"\x00\x01", payload[2]], sig]))
        == MessageFormatError.BAD_INTEGER
    )
    assert reason(_envelope(0x13, [[7, 1, payload[2][:31]], sig])) == MessageFormatError.BAD_LENGTH
    # A round change's prepared metadata is [] or [round, value], nothing else.
    rc = rlp.decode(encode_message(_sample_messages()[4]))
    (rc_payload, rc_sig), blk, just = rc[3]
    bad_meta = [[rc_payload[0], rc_payload[1], [1]], rc_sig]
    assert reason(_envelope(0x15, [bad_meta, blk, just])) == MessageFormatError.BAD_SHAPE
    assert reason(b"\x00" * (MAX_MESSAGE_BYTES + 1)) == MessageFormatError.TOO_LARGE
    # A justification longer than any validator set could sign.
    many = [[payload, sig]] * 257
    prop = rlp.decode(encode_message(_sample_messages()[1]))
    assert (
        reason(_envelope(0x12, [prop[3][0], prop[3][1], many, []])) == MessageFormatError.TOO_LARGE
    )


def test_signatures_are_low_s_recoverable_and_bound_to_domain_and_payload() -> None:
    k = key(3)
    sp = SignedPayload.sign(UnsignedPrepare(5, 0, b"\x11" * 32), k)
    assert int.from_bytes(sp.signature[32:64], "big") <= SECP256K1_N // 2
    assert sp.author == address(3)
    # The same signature over another payload recovers to someone else (or nobody).
    other = SignedPayload(UnsignedPrepare(5, 1, b"\x11" * 32), sp.signature)
    assert other.author != address(3)
    # The same signature under another chain's domain recovers to someone else (or nobody):
    # the v2 domain binds the chain id and the genesis hash.
    chain_a = qbft_domain(7, b"\x01" * 32)
    bound = SignedPayload.sign(UnsignedPrepare(5, 0, b"\x11" * 32), k, chain_a)
    assert bound.author == address(3) and bound.signature != sp.signature
    for elsewhere in (qbft_domain(8, b"\x01" * 32), qbft_domain(7, b"\x02" * 32), UNBOUND_DOMAIN):
        moved = SignedPayload(bound.unsigned_payload, bound.signature, elsewhere)
        assert moved.author != address(3)
    # A prepare's signature is not a commit seal: different domains.
    seal_digest = commit_seal_digest(b"\x11" * 32, 0)
    assert recover_signer(seal_digest, sp.signature) != address(3)
    # High-s twin of a valid signature is refused (one encoding per signature).
    s = int.from_bytes(sp.signature[32:64], "big")
    twin = sp.signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([sp.signature[64] ^ 1])
    assert recover_signer(sp.signing_digest, twin) is None
    assert recover_signer(sp.signing_digest, b"\x00" * 65) is None


def test_finality_is_checked_from_the_seals_alone() -> None:
    vals = validators(4)
    blk = Block(3, vals[0], b"final")
    ctx = HeightContext(3, vals, None)
    seals = tuple(sign_digest(key(i), commit_seal_digest(blk.digest, 2)) for i in range(3))
    assert validate_finalized_block(FinalizedBlock(blk, 2, seals), ctx) is None
    assert validate_finalized_block(FinalizedBlock(blk, 2, seals[:2]), ctx) == "too-few-seals"
    assert (
        validate_finalized_block(FinalizedBlock(blk, 2, seals[:2] + seals[:1]), ctx)
        == "too-few-seals"
    )
    assert validate_finalized_block(FinalizedBlock(blk, 1, seals), ctx) == "bad-commit-seal"
    assert validate_finalized_block(FinalizedBlock(blk, 2, seals * 2), ctx) == "too-many-entries"
    outsider = sign_digest(key(9), commit_seal_digest(blk.digest, 2))
    assert (
        validate_finalized_block(FinalizedBlock(blk, 2, (*seals[:2], outsider)), ctx)
        == "bad-commit-seal"
    )


# --------------------------------------------------------------------------- worked example


EXAMPLE_CHAIN_ID = 1337
EXAMPLE_GENESIS = bytes(range(32))


def worked_example() -> dict[str, str]:
    """The values docs/qbft.md shows, computed from the code (chain 1337, genesis hash
    0x000102..1f)."""
    vals = validators(4)
    ctx = HeightContext(1, vals, None)
    leader = proposer(0, ctx)
    leader_key = next(key(i) for i in range(4) if address(i) == leader)
    domain = qbft_domain(EXAMPLE_CHAIN_ID, EXAMPLE_GENESIS)
    blk = Block(1, leader, b"example block")
    proposal = Proposal(
        SignedPayload.sign(UnsignedProposal(1, 0, blk.digest), leader_key, domain), blk
    )
    prepare = SignedPayload.sign(UnsignedPrepare(1, 0, blk.digest), leader_key, domain)
    seal = sign_digest(leader_key, commit_seal_digest(blk.digest, 0))
    commit = SignedPayload.sign(UnsignedCommit(1, 0, blk.digest, seal), leader_key, domain)
    rc = SignedPayload.sign(UnsignedRoundChange(1, 1, 0, blk.digest), leader_key, domain)
    return {
        "chain_id": str(EXAMPLE_CHAIN_ID),
        "genesis_hash": "0x" + EXAMPLE_GENESIS.hex(),
        "domain": "0x" + domain.hex(),
        "validator0": "0x" + vals[0].hex(),
        "validator1": "0x" + vals[1].hex(),
        "validator2": "0x" + vals[2].hex(),
        "validator3": "0x" + vals[3].hex(),
        "quorum": str(quorum(4)),
        "f": str(f(4)),
        "proposer_h1_r0": "0x" + leader.hex(),
        "proposer_h1_r1": "0x" + proposer(1, ctx).hex(),
        "block_digest": "0x" + blk.digest.hex(),
        "proposal_signing_digest": "0x" + proposal.proposal_payload.signing_digest.hex(),
        "proposal_signature": "0x" + proposal.proposal_payload.signature.hex(),
        "proposal_wire": "0x" + encode_message(proposal).hex(),
        "prepare_signing_digest": "0x" + prepare.signing_digest.hex(),
        "commit_seal_digest": "0x" + commit_seal_digest(blk.digest, 0).hex(),
        "commit_seal": "0x" + seal.hex(),
        "commit_wire": "0x" + encode_message(Commit(commit)).hex(),
        "round_change_signing_digest": "0x" + rc.signing_digest.hex(),
        "round_change_signature": "0x" + rc.signature.hex(),
    }


def test_worked_example_in_the_doc_matches_the_code() -> None:
    text = DOC.read_text()
    block = text.split("<!-- worked-example -->")[1].split("<!-- /worked-example -->")[0]
    shown = dict(re.findall(r"^([a-z0-9_]+)\s*=\s*(\S+)\s*$", block, flags=re.M))
    expected = worked_example()
    assert shown == expected


if __name__ == "__main__":  # prints the example for the doc
    for k_, v in worked_example().items():
        print(f"{k_} = {v}")
