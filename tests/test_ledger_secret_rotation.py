"""Ledger secret rotation, unit level (docs/GOVERNANCE.md, "Ledger secret rotation";
docs/PROTOCOL.md, "Ledger secret record v1", "Sealed block body v2").

The pieces: a share of the new secret encrypted to a node's secp256k1 identity key (opens
only with that key, for that block, chain and generation); the record's public rules
(applied by every node and observer in ``apply_section``); the proposer's section building
(the record last, or the rotation waits when a validator's key is unknown); bodies and
snapshot chunks sealed under a generation (the old generation's secret does not open them:
the scan); the generations sealed beside the ledger; the join wrap and the recovery secret
carrying every generation.
"""

from __future__ import annotations

import copy
import secrets
from pathlib import Path
from typing import Any

import msgpack
import pytest
from eth_account import Account
from governance_support import ADDRS, GENESIS, KEYS, MEASUREMENT, T0, enc_pub

from gateway.enclave import consortium, govern, rotation, snapshot
from gateway.enclave.blocks import body_generation, open_body_full, seal_body
from gateway.enclave.keys import KeyRing, LocalSealer, read_generations, write_generations
from gateway.errors import BlockRefused, InvalidParams, SnapshotRefused
from gateway.governance import ledger_secret as ls
from gateway.governance import section as gsec
from gateway.governance import state as st
from gateway.governance import typed as t
from gateway.governance.errors import GovernanceError

CHAIN_ID = 31337
DOMAIN = t.Domain(CHAIN_ID, GENESIS)
# four node identity keys (validators) and a fifth (a trusted follower)
NODE_KEYS = [bytes([0x61 + i]) * 32 for i in range(5)]
NODE_ADDRS = [bytes.fromhex(Account.from_key(k).address[2:]) for k in NODE_KEYS]
NODE_PUBS = [rotation.public_key_of(k) for k in NODE_KEYS]


def genesis_state() -> st.GovernanceState:
    return st.genesis(
        chain_id=CHAIN_ID,
        genesis_hash=GENESIS,
        members=[st.GenesisMember(ADDRS[i], enc_pub(i)) for i in range(3)],
        validators=NODE_ADDRS[:4],
        nodes=NODE_ADDRS[4:],
        measurements=[MEASUREMENT],
        allow_virtual=True,
        recovery_threshold=2,
    )


def rotation_ballots() -> tuple[st.GovernanceState, bytes, int]:
    """(the state before the block that accepts a rotate_ledger_secret, that block's
    accepting ballot, its height)."""
    s = genesis_state()
    height, now = 1, T0
    proposal = t.Proposal(ADDRS[0], now - 10, (t.Action.make("rotate_ledger_secret", {}),))
    s, _ = st.apply(s, t.sign(KEYS[0], DOMAIN, proposal), height, now)
    pid = t.proposal_id(proposal)
    for member in range(3):
        height += 1
        raw = t.encode_record(t.sign(KEYS[member], DOMAIN, t.Ballot(pid, True, 0)))
        after, events = st.apply(s, t.decode_record(raw), height, now)
        if any(isinstance(e, st.RotateLedgerSecret) for e in events):
            return s, raw, height
        s = after
    raise AssertionError("the proposal was not accepted")


def known(address: bytes) -> bytes | None:
    return dict(zip(NODE_ADDRS, NODE_PUBS, strict=True)).get(address)


def make(after: st.GovernanceState, height: int, key_of: Any = known) -> tuple[bytes, bytes]:
    return rotation.make_record(
        after, height, chain_id=CHAIN_ID, genesis=GENESIS, own=(NODE_ADDRS[0], NODE_PUBS[0]),
        key_of=key_of,
    )  # fmt: skip


# ----------------------------------------------------------------------------- shares


def test_a_share_opens_only_with_its_node_key_for_its_block() -> None:
    secret = secrets.token_bytes(32)
    where = {"chain_id": CHAIN_ID, "genesis": GENESIS, "generation": 1, "height": 7}
    share = rotation.seal_share(secret, node=NODE_ADDRS[1], key=NODE_PUBS[1], **where)
    assert rotation.open_share(share, NODE_KEYS[1], **where) == secret
    with pytest.raises(GovernanceError) as info:
        rotation.open_share(share, NODE_KEYS[2], **where)  # another node's key
    assert info.value.reason == "bad-ledger-secret"
    for changed in ({"height": 8}, {"generation": 2}, {"chain_id": 1}, {"genesis": bytes(32)}):
        with pytest.raises(GovernanceError):
            rotation.open_share(share, NODE_KEYS[1], **{**where, **changed})


def test_the_record_is_canonical_and_checked_in_the_clear() -> None:
    before, ballot, height = rotation_ballots()
    after, _ = st.apply(before, t.decode_record(ballot), height, T0)
    raw, secret = make(after, height)
    record = ls.decode(raw)
    assert ls.encode(record) == raw
    assert record.generation == after.ledger_generation == 1
    assert [s.node for s in record.shares] == sorted(NODE_ADDRS)  # the follower too
    ls.check(record, after, height)
    for share in record.shares:  # each opens with its own node's key, to the same secret
        i = NODE_ADDRS.index(share.node)
        got = rotation.take_secret(
            raw, NODE_KEYS[i], share.node, chain_id=CHAIN_ID, genesis=GENESIS
        )
        assert got == (1, secret)
    # an outsider: no share
    stranger = bytes.fromhex(Account.from_key(b"\x77" * 32).address[2:])
    assert rotation.take_secret(
        raw, b"\x77" * 32, stranger, chain_id=CHAIN_ID, genesis=GENESIS
    ) == (1, None)
    # not canonical (spaces), wrong generation, wrong height
    with pytest.raises(GovernanceError):
        ls.decode(raw.replace(b",", b", ", 1))
    with pytest.raises(GovernanceError, match="generation"):
        ls.check(record, before, height)
    with pytest.raises(GovernanceError, match="names block"):
        ls.check(record, after, height + 1)
    # a share for a node that is not trusted, a key that is not the node's, a missing validator
    retired = copy.deepcopy(after)
    retired.nodes[NODE_ADDRS[4]].state = "retired"
    with pytest.raises(GovernanceError, match="not a trusted node"):
        ls.check(record, retired, height)
    swapped = ls.SecretRecord(
        1,
        height,
        tuple(
            ls.SecretShare(s.node, NODE_PUBS[0], s.ephemeral, s.sealed)
            if s.node == NODE_ADDRS[1]
            else s
            for s in record.shares
        ),
    )
    with pytest.raises(GovernanceError, match="not its own"):
        ls.check(swapped, after, height)
    missing = ls.SecretRecord(1, height, tuple(s for s in record.shares if s.node != NODE_ADDRS[2]))
    with pytest.raises(GovernanceError, match="no share for validator"):
        ls.check(missing, after, height)


def test_the_proposer_must_know_every_validators_key() -> None:
    before, ballot, height = rotation_ballots()
    after, _ = st.apply(before, t.decode_record(ballot), height, T0)

    def without_node3(address: bytes) -> bytes | None:
        return None if address == NODE_ADDRS[3] else known(address)

    with pytest.raises(rotation.CannotRotate, match=NODE_ADDRS[3].hex()):
        make(after, height, without_node3)

    def without_follower(address: bytes) -> bytes | None:
        return None if address == NODE_ADDRS[4] else known(address)

    raw, _ = make(after, height, without_follower)  # a follower may go without (documented)
    assert NODE_ADDRS[4] not in [s.node for s in ls.decode(raw).shares]


# ----------------------------------------------------------------------------- sections


def test_a_rotating_section_must_end_with_its_record() -> None:
    before, ballot, height = rotation_ballots()
    after, _ = st.apply(before, t.decode_record(ballot), height, T0)
    raw, _ = make(after, height)

    def apply(records: list[bytes], at: st.GovernanceState = before) -> st.GovernanceState:
        state, _ = gsec.apply_section(at, records, height, T0, gsec.commitment(records))
        return state

    assert apply([ballot, raw]).ledger_generation == 1
    with pytest.raises(gsec.SectionRefused, match="no ledger secret record"):
        apply([ballot])
    with pytest.raises(gsec.SectionRefused, match="bad-ledger-secret"):
        apply([raw, ballot])  # not last
    with pytest.raises(gsec.SectionRefused, match="bad-ledger-secret"):
        apply([raw])  # a block that does not rotate
    # the header commits to the record: another record under the same extraData is refused
    other, _ = make(after, height)
    with pytest.raises(gsec.SectionRefused, match="extraData"):
        gsec.apply_section(before, [ballot, other], height, T0, gsec.commitment([ballot, raw]))
    # never pooled
    with pytest.raises(GovernanceError) as info:
        gsec.decode_any(raw)
    assert info.value.reason == "bad-ledger-secret"


def test_the_proposer_appends_the_record_or_lets_the_rotation_wait() -> None:
    before, ballot, height = rotation_ballots()
    gov = govern.Governance(before)
    gov.submit(ballot, height, T0)
    after, _ = st.apply(before, t.decode_record(ballot), height, T0)

    def cannot(state: st.GovernanceState) -> tuple[bytes, bytes]:
        raise rotation.CannotRotate("no key for a validator")

    waiting = gov.build(height, T0, cannot)
    assert waiting.records == [] and waiting.secret is None
    assert len(gov.pool) == 1  # the ballot waits
    outcome = gov.build(height, T0, lambda state: make(state, height))
    assert outcome.records[0] == ballot and ls.is_ledger_secret(outcome.records[-1])
    assert outcome.secret is not None and outcome.secret[0] == 1
    assert outcome.state.ledger_generation == after.ledger_generation
    # a verifier applies the same section to the same state
    verified = govern.Governance(before).verify(
        outcome.records, height, T0, gsec.commitment(outcome.records)
    )
    assert st.state_digest(verified.state) == st.state_digest(outcome.state)


# ----------------------------------------------------------------------------- sealed data


def ring(*rotated: bytes, base: bytes | None = None) -> KeyRing:
    return KeyRing(
        node_key=NODE_KEYS[0],
        secret=base or b"\x01" * 32,
        epoch_period=3600,
        grace=60,
        rotated=rotated,
    )


def test_bodies_say_their_generation_and_the_old_secret_does_not_open_new_ones() -> None:
    """The scan: a post-rotation body holds none of its transactions' bytes in the clear,
    and generation 0's secret (what a retired node kept) does not open it."""
    old, new = ring(), ring(secrets.token_bytes(32))
    tx = b"\xf8\x6b" + b"confidential-transfer-payload" * 3
    block = bytes(range(32))
    v1 = seal_body(old.body_key_of(0), CHAIN_ID, block, [tx], {b"k": b"v"})
    v2 = seal_body(new.body_key_of(1), CHAIN_ID, block, [tx], {b"k": b"v"}, None, 1)
    assert (v1[0], body_generation(v1)) == (1, 0)
    assert (v2[0], body_generation(v2), v2[1:5]) == (2, 1, b"\x00\x00\x00\x01")
    assert b"confidential-transfer-payload" not in v2
    # the new ring reads both generations
    assert open_body_full(new.body_key_of, CHAIN_ID, block, v1)[0] == [tx]
    assert open_body_full(new.body_key_of, CHAIN_ID, block, v2)[0] == [tx]
    # the old ring does not hold generation 1; its key does not open the v2 body either way
    with pytest.raises(BlockRefused, match="generation 1"):
        open_body_full(old.body_key_of, CHAIN_ID, block, v2)
    for key in (old.body_key_of(0), old.block_body_key, old.random_key, old.snapshot_key):
        with pytest.raises(BlockRefused) as info:
            open_body_full(key, CHAIN_ID, block, v2)
        assert info.value.reason_code == "bad-body"
    # the generation is bound: relabelled as generation 2 it does not open
    relabelled = v2[:1] + (2).to_bytes(4, "big") + v2[5:]
    with pytest.raises(BlockRefused):
        open_body_full(
            ring(new.rotated[0], new.rotated[0]).body_key_of, CHAIN_ID, block, relabelled
        )
    # keys differ per generation, the random precompile's too
    assert new.random_key_of(1) != new.random_key_of(0)
    assert new.snapshot_key_of(1) != new.snapshot_key_of(0)


def test_snapshot_chunks_are_sealed_under_the_newest_generation() -> None:
    new = ring(secrets.token_bytes(32))
    chunk = {"height": 1, "hash": bytes(32), "sealed": False, "from": b"",
             "next": None, "kv": [], "blocks": [], "totals": [0, 2]}  # fmt: skip
    blob = snapshot.seal_chunk(new.snapshot_key_of(1), CHAIN_ID, GENESIS, chunk, 1)
    assert blob[0] == 2 and b"totals" not in blob
    assert snapshot.open_chunk(new.snapshot_key_of, CHAIN_ID, GENESIS, blob).height == 1
    with pytest.raises(SnapshotRefused):
        snapshot.open_chunk(ring().snapshot_key_of, CHAIN_ID, GENESIS, blob)
    with pytest.raises(SnapshotRefused):
        snapshot.open_chunk(ring().snapshot_key, CHAIN_ID, GENESIS, blob)


def test_generations_are_sealed_beside_the_ledger(tmp_path: Path) -> None:
    sealer = LocalSealer.from_data_dir(tmp_path)
    assert read_generations(tmp_path, sealer, CHAIN_ID) == {}
    gens = {1: secrets.token_bytes(32), 2: secrets.token_bytes(32)}
    write_generations(tmp_path, sealer, CHAIN_ID, gens)
    text = (tmp_path / "ledger-secrets.sealed").read_text()
    assert gens[1].hex() not in text and gens[2].hex() not in text
    assert read_generations(tmp_path, LocalSealer.from_data_dir(tmp_path), CHAIN_ID) == gens
    from gateway.enclave.keys import SealedKeyError

    with pytest.raises(SealedKeyError):
        read_generations(tmp_path, sealer, CHAIN_ID + 1)  # another chain's file


def test_the_join_wrap_and_the_recovered_secret_carry_every_generation() -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    join = X25519PrivateKey.generate()
    public = join.public_key().public_bytes_raw()
    ad = consortium.join_associated_data(CHAIN_ID, GENESIS, NODE_ADDRS[4])
    gens = [secrets.token_bytes(32) for _ in range(3)]
    one = consortium.wrap_secret(gens[0], public, ad)
    assert one[0] == 1 and consortium.unwrap_secret(one, join, ad) == gens[0]
    many = consortium.wrap_secret(b"".join(gens), public, ad)
    assert many[0] == 2
    secret, rotated = consortium.split_generations(consortium.unwrap_secret(many, join, ad))
    assert secret == gens[0] and rotated == {1: gens[1], 2: gens[2]}
    with pytest.raises(InvalidParams):
        consortium.unwrap_secret(bytes([1]) + many[1:], join, ad)  # v1 is one secret
    with pytest.raises(InvalidParams):
        consortium.split_generations(b"\x00" * 33)


def test_the_worked_examples_in_the_protocol_doc_are_what_the_code_computes() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    doc = (Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md").read_text()

    def shown(name: str, section: str) -> bytes:
        text = doc[doc.index(section) :]
        lines = text.split("\n")
        for i, line in enumerate(lines):
            value = line[len(name) :].strip()
            if line.startswith(name + " ") and all(c in "0123456789abcdef" for c in value):
                for more in lines[i + 1 :]:
                    if not more.startswith("           "):
                        break
                    value += more.strip()
                return bytes.fromhex(value)
        raise AssertionError(f"{name} not shown in {section}")

    genesis = bytes(range(32))
    secret = b"\x44" * 32
    # the ledger secret record's share
    section = "### Ledger secret record, version 1"
    node_key = b"\x61" * 32
    node = bytes.fromhex(Account.from_key(node_key).address[2:])
    e = ec.derive_private_key(int.from_bytes(b"\x33" * 32, "big"), ec.SECP256K1())
    share = rotation.seal_share(
        secret, chain_id=1337, genesis=genesis, generation=1, height=7, node=node,
        key=rotation.public_key_of(node_key), ephemeral=e,
    )  # fmt: skip
    assert shown("node", section) == node
    assert shown("key", section) == share.key
    assert shown("ephemeral", section) == share.ephemeral
    assert shown("sealed", section) == share.sealed
    where = {"chain_id": 1337, "genesis": genesis, "generation": 1, "height": 7}
    assert rotation.open_share(share, node_key, **where) == secret
    # the sealed body v2
    section = "## Sealed block body, version 2"
    keys = ring(secret)
    assert shown("key", section) == keys.body_key_of(1)
    blob = shown("blob", section)
    assert open_body_full(keys.body_key_of, 1337, genesis, blob)[:2] == ([b"\x01\x02"], {})
    assert shown("plaintext", section) == msgpack.packb(
        {"txs": [b"\x01\x02"], "diff": []}, use_bin_type=True
    )


def test_a_join_names_its_nodes_public_key() -> None:
    from gateway.protocol import attestation

    report = consortium.join_report(
        chain_id=CHAIN_ID, measurement=MEASUREMENT, code="test", node_address=NODE_ADDRS[4],
        epoch_period=3600, grace=60, join_key=bytes(32), now=T0,
    )  # fmt: skip
    signature = attestation.sign(report, NODE_KEYS[4])
    assert rotation.public_key_of_attestation(report, signature) == NODE_PUBS[4]
    # signed by another key than the address it names: no key learned
    assert (
        rotation.public_key_of_attestation(report, attestation.sign(report, NODE_KEYS[3])) is None
    )
    assert rotation.public_key_of_attestation(report, b"\x00" * 65) is None


def test_recovery_shares_wrap_and_give_back_every_generation() -> None:
    from governance_support import enc_key

    from gateway.governance import recovery as r

    gens = [secrets.token_bytes(32) for _ in range(3)]
    context = r.ShareContext(CHAIN_ID, GENESIS, 2)
    holders = [(ADDRS[i], enc_pub(i)) for i in range(3)]
    issued = r.issue_from_secret(
        b"".join(gens), context=context, threshold=2, holders=holders, ledger_generation=2
    )
    opened = {
        ADDRS[i]: r.decrypt_share(issued.share_set.shares[i], enc_key(i), context) for i in (0, 2)
    }
    blob = r.unwrap_secret(r.recover(issued.share_set, opened), issued.wrapped, context)
    secret, rotated = consortium.split_generations(blob)
    assert [secret, rotated[1], rotated[2]] == gens
    # before any rotation the wrapped secret is the 32-byte consortium secret, as before
    first = r.issue_from_secret(gens[0], context=context, threshold=2, holders=holders,
                                ledger_generation=0)  # fmt: skip
    assert len(first.wrapped) == 12 + 32 + 16


def test_a_validator_scheduled_with_the_rotation_needs_a_share_too() -> None:
    before, ballot, height = rotation_ballots()
    after, _ = st.apply(before, t.decode_record(ballot), height, T0)
    scheduled = copy.deepcopy(after)  # the follower becomes a validator at h + 2
    scheduled.validators.append((height + 2, tuple(NODE_ADDRS)))

    def without_follower(address: bytes) -> bytes | None:
        return None if address == NODE_ADDRS[4] else known(address)

    with pytest.raises(rotation.CannotRotate, match=NODE_ADDRS[4].hex()):
        make(scheduled, height, without_follower)
    raw, _ = make(after, height, without_follower)  # not scheduled: it may go without
    with pytest.raises(GovernanceError, match="no share for validator"):
        ls.check(ls.decode(raw), scheduled, height)
