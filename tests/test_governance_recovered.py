"""The recovery record (gateway/governance/recovered.py): after a recovery every node takes
the service back to "opening" and moves to a new share generation at the same block; the
record is checked from its bytes and the state alone (each member's signed submission, the
generation, the node, the threshold), applies once, and travels in a block's section like
any record (observers apply it too)."""

from __future__ import annotations

import json

import pytest
from governance_support import ADDRS, DOMAIN, KEYS, NODES, T0, Chain, make_state, refused

from gateway.governance import recovered as rc
from gateway.governance import section as gsec
from gateway.governance import share_record as sr
from gateway.governance import state as st
from gateway.governance import typed as t
from gateway.governance.errors import GovernanceError

SEALED = bytes(range(126))  # a share sealed to the recovering enclave: opaque here
NODE = NODES[0]


def submission(i: int, generation: int = 0, node: bytes = NODE, signer: int | None = None) -> bytes:
    message = sr.RecoveryShare(ADDRS[i], generation, node, SEALED)
    return sr.encode(sr.sign(KEYS[i if signer is None else signer], DOMAIN, message))


def record(*members: int, generation: int = 0, node: bytes = NODE) -> bytes:
    return rc.encode_recovery(node, generation, [submission(i, generation, node) for i in members])


def opened_state() -> st.GovernanceState:
    c = Chain(make_state(members=4, threshold=2))
    pid = c.propose(0, ("open_network", {}))
    c.vote(0, pid)
    c.vote(1, pid)
    c.vote(2, pid)
    assert c.state.service == "open"
    return c.state


def test_a_recovery_takes_the_service_back_to_opening_with_new_shares() -> None:
    state = opened_state()
    raw = record(2, 0)  # any order: the record orders the shares by member
    assert raw == record(0, 2)
    after, events = rc.apply_recovery(state, raw, 9)
    assert after.service == "opening" and after.shares_generation == 1
    assert state.service == "open" and state.shares_generation == 0  # unchanged
    assert events[0] == st.ServiceRecovered(NODE, tuple(sorted((ADDRS[0], ADDRS[2]))), 0)
    refresh = events[1]
    assert isinstance(refresh, st.RefreshRecoveryShares)
    assert (refresh.generation, refresh.threshold) == (1, 2)
    assert refresh.holders == tuple(state.share_holders())
    # the same record again: its generation is past
    err = refused("wrong-generation", rc.apply_recovery, after, raw, 10)
    assert err.fields == {"generation": 1}
    # members open it again by vote
    c = Chain(after, height=11, now=T0 + 50, created=7)
    pid = c.propose(0, ("open_network", {}))
    c.vote(0, pid)
    c.vote(1, pid)
    c.vote(3, pid)
    assert c.state.service == "open"


def test_a_recovery_record_is_checked_against_the_state() -> None:
    state = opened_state()
    refused("too-few-shares", rc.apply_recovery, state, record(1), 9)
    refused("wrong-generation", rc.apply_recovery, state, record(0, 1, generation=3), 9)
    refused("node-not-trusted", rc.apply_recovery, state, record(0, 1, node=bytes(20)), 9)
    # a share of member 1 signed by member 3
    forged = [submission(0), submission(1, signer=3)]
    refused("share-signer", rc.apply_recovery, state, rc.encode_recovery(NODE, 0, forged), 9)
    # a share sealed to another node, or of another generation, inside the record
    other_node = [submission(0), submission(1, node=NODES[1])]
    refused("wrong-node", rc.apply_recovery, state, rc.encode_recovery(NODE, 0, other_node), 9)
    old = [submission(0), submission(1, generation=1)]
    refused("wrong-generation", rc.apply_recovery, state, rc.encode_recovery(NODE, 0, old), 9)
    twice = [submission(0), submission(0), submission(1)]
    refused("duplicate", rc.apply_recovery, state, rc.encode_recovery(NODE, 0, twice), 9)
    # a member that holds no share (no encryption key)
    c = Chain(state, height=9)
    pid = c.propose(0, ("add_member", {"address": "0x" + ADDRS[5].hex()}))
    for i in (0, 1, 2):
        c.vote(i, pid)
    assert ADDRS[5] in c.state.members
    refused("unknown-holder", rc.apply_recovery, c.state, record(0, 5), c.height)
    # another consortium's submissions
    foreign = sr.encode(
        sr.sign(KEYS[0], t.Domain(DOMAIN.chain_id + 1, DOMAIN.genesis_hash),
                sr.RecoveryShare(ADDRS[0], 0, NODE, SEALED))
    )  # fmt: skip
    refused(
        "wrong-chain",
        rc.apply_recovery,
        state,
        rc.encode_recovery(NODE, 0, [foreign, submission(1)]),
        9,
    )


@pytest.mark.parametrize(
    "mangle",
    [
        lambda o: o.update(version=2),
        lambda o: o.update(node="0x12"),
        lambda o: o.update(generation=-1),
        lambda o: o.update(shares=[]),
        lambda o: o.update(extra=1),
        lambda o: o["shares"].reverse(),  # not ordered by member
    ],
)
def test_a_malformed_recovery_record_is_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    obj = json.loads(record(0, 1))
    mangle(obj)
    raw = t.canonical_json(obj).encode()
    with pytest.raises(GovernanceError) as info:
        rc.decode_recovery(raw)
    assert info.value.reason in ("bad-record", "record-version")
    # with whitespace: not canonical
    with pytest.raises(GovernanceError):
        rc.decode_recovery(json.dumps(json.loads(record(0, 1)), indent=1).encode())


def test_a_recovery_record_in_a_section_applies_alike() -> None:
    state = opened_state()
    raw = record(0, 1)
    assert isinstance(gsec.decode_any(raw), rc.RecoveryRecord)
    assert gsec.hash_of(raw, gsec.decode_any(raw)) == rc.recovery_hash(raw)
    extra = gsec.commitment([raw])
    one, _ = gsec.apply_section(state, [raw], 9, T0 + 100, extra)
    two, _ = gsec.apply_section(state, [raw], 9, T0 + 100, extra)
    assert st.encode(one) == st.encode(two) and one.service == "opening"
    assert st.decode(st.encode(one)) == one
    with pytest.raises(gsec.SectionRefused):  # applied twice in one block
        gsec.apply_section(state, [raw, raw], 9, T0 + 100, gsec.commitment([raw, raw]))


def test_the_largest_recovery_record_fits_a_forwarded_blob() -> None:
    from eth_account import Account
    from eth_utils import keccak

    from gateway.governance.recovery import SEALED_SUBMISSION
    from gateway.p2p.wire import MAX_TX_BLOB

    keys = [keccak(bytes([i])) for i in range(rc.MAX_RECOVERY_SHARES)]
    shares = []
    for key in keys:
        member = bytes.fromhex(Account.from_key(key).address[2:])
        message = sr.RecoveryShare(member, 2**64 - 1, NODE, bytes(SEALED_SUBMISSION))
        shares.append(sr.encode(sr.sign(key, DOMAIN, message)))
    raw = rc.encode_recovery(NODE, 2**64 - 1, shares)
    assert len(raw) <= rc.MAX_RECOVERY_RECORD < MAX_TX_BLOB - 1
    assert len(rc.decode_recovery(raw).shares) == rc.MAX_RECOVERY_SHARES
    with pytest.raises(GovernanceError) as info:  # one more share is refused by its form
        rc.decode_recovery(rc.encode_recovery(NODE, 0, [*shares, submission(0)]))
    assert info.value.reason == "bad-record"
