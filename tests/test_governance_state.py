"""The governance state machine: every lifecycle rule, refusal and action, as pure units."""

from __future__ import annotations

import copy
import re

import pytest
from governance_support import (
    ADDRS,
    CHAIN_ID,
    DOMAIN,
    GENESIS,
    KEYS,
    MEASUREMENT,
    NODES,
    OTHER_GENESIS,
    T0,
    Chain,
    enc_pub,
    hx,
    make_state,
    refused,
)

from gateway.governance import state as st
from gateway.governance import typed as t
from gateway.governance.constitution import DEFAULT, DEFAULT_JSON


def chain(**kw: object) -> Chain:
    return Chain(make_state(**kw))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- lifecycle


def test_majority_accepts_at_the_deciding_ballot_and_the_action_takes_effect_there() -> None:
    c = chain()
    pid = c.propose(0, ("open_network", {}))
    assert c.status(pid) == "open" and c.state.service == "opening"
    c.vote(0, pid)
    c.vote(1, pid)
    assert c.status(pid) == "open"  # 2 of 4: not more than half
    height = c.height
    events = c.vote(2, pid)
    assert c.status(pid) == "accepted" and c.state.proposals[pid].closed_height == height
    assert st.ProposalClosed(pid, "accepted") in events and st.NetworkOpened() in events
    assert c.state.service == "open"
    refused("proposal-not-open", c.vote, 3, pid)


def test_rejected_as_soon_as_the_threshold_is_out_of_reach() -> None:
    c = chain()
    pid = c.propose(0, ("open_network", {}))
    c.vote(1, pid, approve=False)
    assert c.status(pid) == "open"  # 3 could still approve, 3 are needed
    c.vote(2, pid, approve=False)
    assert c.status(pid) == "rejected"
    assert c.state.service == "opening"  # a rejected proposal changes nothing


def test_a_member_may_change_its_ballot_with_a_higher_revision_only() -> None:
    c = chain()
    pid = c.propose(0, ("open_network", {}))
    c.vote(1, pid, approve=False, revision=1)
    refused("duplicate", c.vote, 1, pid, False, 1)
    refused("stale-ballot", c.vote, 1, pid, True, 1)
    refused("stale-ballot", c.vote, 1, pid, True, 0)
    c.vote(1, pid, approve=True, revision=2)
    assert c.state.proposals[pid].ballots[ADDRS[1]] == (True, 2)
    # the replayed earlier ballot (revision 1) is stale
    refused("stale-ballot", c.vote, 1, pid, False, 1)
    c.vote(2, pid)
    c.vote(3, pid)
    assert c.status(pid) == "accepted"


def test_replays_and_strangers_are_refused() -> None:
    c = chain()
    pid = c.propose(0, ("open_network", {}))
    ballot = t.sign(KEYS[1], DOMAIN, t.Ballot(pid, True, 0))
    c.submit(ballot)
    refused("duplicate", c.submit, ballot)  # the same record again
    refused("duplicate", c.submit, t.encode_record(ballot))  # ... as bytes
    other_chain = t.sign(KEYS[2], t.Domain(CHAIN_ID + 1, GENESIS), t.Ballot(pid, True, 0))
    refused("wrong-chain", c.submit, other_chain)
    other_consortium = t.sign(KEYS[2], t.Domain(CHAIN_ID, OTHER_GENESIS), t.Ballot(pid, True, 0))
    refused("wrong-consortium", c.submit, other_consortium)
    # member 1's ballot presented for another proposal
    pid2 = c.propose(0, ("refresh_recovery_shares", {}))
    moved = t.SignedRecord(DOMAIN, ADDRS[1], t.Ballot(pid2, True, 0), ballot.signature)
    refused("bad-signature", c.submit, moved)
    refused("not-a-member", c.vote, 5, pid)
    refused("unknown-proposal", c.vote, 1, b"\x42" * 32)
    # a forged ballot: member 2's name, member 5's key
    forged = t.SignedRecord(
        DOMAIN,
        ADDRS[2],
        t.Ballot(pid, True, 0),
        t.sign(KEYS[5], DOMAIN, t.Ballot(pid, True, 0)).signature,
    )
    refused("bad-signature", c.submit, forged)
    assert set(c.state.proposals[pid].ballots) == {ADDRS[1]}


def test_proposal_created_time_and_uniqueness() -> None:
    c = chain()
    action = (t.Action.make("open_network"),)
    old = t.Proposal(ADDRS[0], c.now - st.MAX_CREATED_AGE - 1, action)
    refused("created-too-old", c.submit, t.sign(KEYS[0], DOMAIN, old))
    future = t.Proposal(ADDRS[0], c.now + st.MAX_CREATED_SKEW + 1, action)
    refused("created-in-future", c.submit, t.sign(KEYS[0], DOMAIN, future))
    ok = t.Proposal(ADDRS[0], c.now - st.MAX_CREATED_AGE, action)
    c.submit(t.sign(KEYS[0], DOMAIN, ok))
    refused("duplicate", c.submit, t.sign(KEYS[0], DOMAIN, ok))
    # still a duplicate once the proposal is closed: ids are unique forever
    pid = t.proposal_id(ok)
    c.submit(t.sign(KEYS[0], DOMAIN, t.Withdraw(pid)))
    c.now = ok.created + 10
    refused("duplicate", c.submit, t.sign(KEYS[0], DOMAIN, ok))
    # a proposal signed by a member who is not its proposer
    theirs = t.Proposal(ADDRS[1], c.now, action)
    mislabelled = t.SignedRecord(
        DOMAIN, ADDRS[0], theirs, t.sign(KEYS[0], DOMAIN, theirs).signature
    )
    refused("not-proposer", c.submit, mislabelled)


def test_expiry_by_tick_and_before_a_ballot() -> None:
    c = chain()
    pid = c.propose(0, ("open_network", {}))
    expires = c.state.proposals[pid].expires
    assert expires == T0 + DEFAULT_JSON["default"]["openFor"]
    c.vote(1, pid)
    c.now = expires - 1
    c.advance(0)
    assert c.status(pid) == "open"
    events = c.advance(1)
    assert events == [st.ProposalClosed(pid, "expired")] and c.status(pid) == "expired"
    assert c.state.service == "opening"
    # a ballot after the expiry (without a tick in between) finds it expired too
    pid2 = c.propose(0, ("open_network", {}))
    c.now = c.state.proposals[pid2].expires
    refused("proposal-not-open", c.vote, 1, pid2)
    state2, events2 = st.tick(c.state, c.height, c.now)
    assert events2 == [st.ProposalClosed(pid2, "expired")]
    assert st.tick(state2, c.height, c.now) == (state2, [])


def test_withdraw_only_by_the_proposer_while_open() -> None:
    c = chain()
    pid = c.propose(0, ("open_network", {}))
    refused("not-proposer", c.submit, t.sign(KEYS[1], DOMAIN, t.Withdraw(pid)))
    c.submit(t.sign(KEYS[0], DOMAIN, t.Withdraw(pid)))
    assert c.status(pid) == "withdrawn"
    refused("proposal-not-open", c.vote, 1, pid)
    refused("proposal-not-open", c.submit, t.sign(KEYS[0], DOMAIN, t.Withdraw(pid)))


def test_constitution_change_drops_every_other_open_proposal() -> None:
    c = chain()
    other = c.propose(1, ("open_network", {}))
    stricter = copy.deepcopy(DEFAULT_JSON)
    stricter["default"]["threshold"] = "unanimity"
    pid = c.propose(0, ("set_constitution", {"constitution": stricter}))
    for who in range(3):  # two thirds of 4
        c.vote(who, pid)
    assert c.status(pid) == "accepted" and c.status(other) == "dropped"
    assert st.ProposalClosed(other, "dropped") in c.events
    assert c.state.constitution.default.threshold == "unanimity"
    # the new rules hold from now on: open_network needs all 4
    nxt = c.propose(0, ("open_network", {}))
    for who in range(3):
        c.vote(who, nxt)
    assert c.status(nxt) == "open"
    c.vote(3, nxt)
    assert c.status(nxt) == "accepted"
    bad = {"version": 1, "default": {"threshold": "most", "openFor": 600}}
    refused("bad-constitution", c.propose, 0, ("set_constitution", {"constitution": bad}))


def test_measurement_changes_drop_every_other_open_proposal() -> None:
    c = chain()
    other = c.propose(1, ("open_network", {}))
    new = "0x" + "22" * 32
    pid = c.propose(0, ("allow_measurement", {"measurement": new}))
    for who in range(3):
        c.vote(who, pid)
    assert bytes.fromhex(new[2:]) in c.state.measurements and c.status(other) == "dropped"
    refused("already-allowed", c.propose, 0, ("allow_measurement", {"measurement": new}))
    other2 = c.propose(1, ("open_network", {}))
    pid2 = c.propose(0, ("disallow_measurement", {"measurement": new}))
    for who in range(3):
        c.vote(who, pid2)
    assert bytes.fromhex(new[2:]) not in c.state.measurements and c.status(other2) == "dropped"
    refused("not-allowed", c.propose, 0, ("disallow_measurement", {"measurement": new}))


# ----------------------------------------------------------------------------- members


def test_a_removed_member_can_no_longer_vote_and_its_ballots_stop_counting() -> None:
    c = chain(members=5, threshold=2)
    pending = c.propose(0, ("open_network", {}))
    c.vote(4, pending)
    c.vote(3, pending)
    pid = c.propose(0, ("remove_member", {"address": hx(ADDRS[4])}))
    for who in range(4):  # two thirds of 5 = 4
        c.vote(who, pid)
    assert c.status(pid) == "accepted" and not c.state.members[ADDRS[4]].active
    # the share holder left: the secret rotates and the shares are re-issued without it
    rotations = [e for e in c.events if isinstance(e, st.RotateLedgerSecret)]
    refreshes = [e for e in c.events if isinstance(e, st.RefreshRecoveryShares)]
    assert rotations == [st.RotateLedgerSecret(1)]
    assert refreshes[-1].holders == tuple(sorted((ADDRS[i], enc_pub(i)) for i in range(4)))
    assert refreshes[-1].ledger_generation == 1
    refused("removed-member", c.vote, 4, pending)
    refused("removed-member", c.propose, 4, ("open_network", {}))
    assert st.tally(c.state, pending) == (1, 0, 4, 3)  # member 4's approval no longer counts
    c.vote(1, pending)
    c.vote(2, pending)
    assert c.status(pending) == "accepted"


def test_removing_a_share_holder_below_the_recovery_threshold_is_refused() -> None:
    c = chain(members=3, threshold=3)
    refused("below-recovery-threshold", c.propose, 0, ("remove_member", {"address": hx(ADDRS[2])}))
    lower = c.propose(0, ("set_recovery_threshold", {"threshold": 2}))
    for who in range(2):
        c.vote(who, lower)
    assert c.state.recovery_threshold == 2
    assert isinstance(c.events[-1], st.RefreshRecoveryShares) and c.events[-1].threshold == 2
    pid = c.propose(0, ("remove_member", {"address": hx(ADDRS[2])}))
    for who in range(2):
        c.vote(who, pid)
    assert c.status(pid) == "accepted"
    refused("bad-threshold", c.propose, 0, ("set_recovery_threshold", {"threshold": 3}))
    refused("bad-threshold", c.propose, 0, ("set_recovery_threshold", {"threshold": 0}))
    # a member without an encryption key holds no share: it may leave whatever the threshold
    c2 = Chain(
        st.genesis(
            chain_id=CHAIN_ID,
            genesis_hash=GENESIS,
            members=[st.GenesisMember(ADDRS[0], enc_pub(0)), st.GenesisMember(ADDRS[1], None)],
            validators=NODES[:1],
            recovery_threshold=1,
        )
    )
    pid2 = c2.propose(0, ("remove_member", {"address": hx(ADDRS[1])}))
    c2.vote(0, pid2)
    c2.vote(1, pid2)
    assert c2.status(pid2) == "accepted"
    assert not any(isinstance(e, st.RotateLedgerSecret) for e in c2.events)
    refused("last-member", c2.propose, 0, ("remove_member", {"address": hx(ADDRS[0])}))


def test_add_member_and_member_data() -> None:
    c = chain(members=2, threshold=1)
    args = {"address": hx(ADDRS[2]), "encryptionKey": hx(enc_pub(2)), "data": {"org": "C"}}
    pid = c.propose(0, ("add_member", args))
    c.vote(0, pid)
    c.vote(1, pid)
    assert c.state.members[ADDRS[2]] == st.Member(enc_pub(2), {"org": "C"}, True)
    assert isinstance(c.events[-1], st.RefreshRecoveryShares)
    assert len(c.events[-1].holders) == 3
    refused("member-exists", c.propose, 0, ("add_member", {"address": hx(ADDRS[2])}))
    # a low-order point: no share could ever be sealed to it
    refused(
        "bad-args",
        c.propose,
        0,
        ("add_member", {"address": hx(ADDRS[3]), "encryptionKey": hx(bytes(32))}),
    )
    pid = c.propose(2, ("set_member_data", {"address": hx(ADDRS[2]), "data": [1, 2]}))
    for who in range(2):
        c.vote(who, pid)
    assert c.state.members[ADDRS[2]].data == [1, 2]
    refused(
        "unknown-member", c.propose, 0, ("set_member_data", {"address": hx(ADDRS[5]), "data": None})
    )


# ----------------------------------------------------------------------------- nodes, validators


def test_pending_node_is_trusted_only_by_vote_then_becomes_a_validator() -> None:
    c = chain()
    new = NODES[4]
    refused("node-not-trusted", c.propose, 0, ("add_validator", {"address": hx(new)}))
    refused("unknown-node", c.propose, 0, ("trust_node", {"address": hx(new)}))
    c.state, events = st.add_pending_node(
        c.state, new, measurement=MEASUREMENT, platform="virtual", virtual=True, height=c.height
    )
    assert events == [st.NodePending(new)] and c.state.nodes[new].state == "pending"
    refused(
        "node-exists",
        st.add_pending_node,
        c.state,
        new,
        measurement=MEASUREMENT,
        platform="virtual",
        virtual=True,
        height=c.height,
    )
    refused("node-not-trusted", c.propose, 0, ("add_validator", {"address": hx(new)}))
    pid = c.propose(0, ("trust_node", {"address": hx(new)}))
    for who in range(3):
        c.vote(who, pid)
    assert st.NodeTrusted(new) in c.events and c.state.nodes[new].state == "trusted"
    refused("node-not-pending", c.propose, 0, ("trust_node", {"address": hx(new)}))
    pid = c.propose(0, ("add_validator", {"address": hx(new)}))
    c.vote(0, pid)
    c.vote(1, pid)
    accepted_at = c.height
    c.vote(2, pid)
    at = accepted_at + st.VALIDATOR_DELAY
    assert st.ValidatorsScheduled(at, tuple(sorted(NODES[:5]))) in c.events
    assert c.state.validators_at(at - 1) == tuple(NODES[:4])
    assert set(c.state.validators_at(at)) == set(NODES[:5])
    refused("already-validator", c.propose, 0, ("add_validator", {"address": hx(new)}))


def test_join_terms_are_checked_for_pending_nodes() -> None:
    s = make_state()
    refused(
        "measurement-not-allowed",
        st.add_pending_node,
        s,
        NODES[5],
        measurement=b"\x01" * 32,
        platform="virtual",
        virtual=True,
        height=1,
    )
    refused(
        "platform-not-allowed",
        st.add_pending_node,
        s,
        NODES[5],
        measurement=MEASUREMENT,
        platform="sgx",
        virtual=False,
        height=1,
    )
    s.allow_virtual = False
    refused(
        "virtual-not-allowed",
        st.add_pending_node,
        s,
        NODES[5],
        measurement=MEASUREMENT,
        platform="virtual",
        virtual=True,
        height=1,
    )


def test_trusting_a_node_whose_measurement_was_disallowed_meanwhile_fails() -> None:
    c = chain()
    c.state, _ = st.add_pending_node(
        c.state, NODES[4], measurement=MEASUREMENT, platform="virtual", virtual=True, height=1
    )
    trust = c.propose(0, ("trust_node", {"address": hx(NODES[4])}))
    c.vote(0, trust)
    # a proposal that bundles the disallowing with other work: accepted, trust dropped
    pid = c.propose(1, ("disallow_measurement", {"measurement": hx(MEASUREMENT)}))
    for who in range(3):
        c.vote(who, pid)
    assert c.status(trust) == "dropped"
    refused("measurement-not-allowed", c.propose, 0, ("trust_node", {"address": hx(NODES[4])}))


def test_validator_removal_keeps_a_quorum_and_at_least_one_validator() -> None:
    c = chain(validators=2)
    one = c.propose(0, ("remove_validator", {"address": hx(NODES[0])}))
    two = c.propose(1, ("remove_validator", {"address": hx(NODES[1])}))
    for who in range(3):
        c.vote(who, one)
    assert c.status(one) == "accepted"
    assert c.state.latest_validators() == (NODES[1],)
    # each was fine alone; together they would leave no validator: the second fails
    for who in range(3):
        c.vote(who, two)
    assert c.status(two) == "failed" and c.state.proposals[two].reason == "no-validator"
    assert st.ProposalClosed(two, "failed", "no-validator") in c.events
    assert c.state.latest_validators() == (NODES[1],)
    refused("no-validator", c.propose, 0, ("remove_validator", {"address": hx(NODES[1])}))
    refused("not-validator", c.propose, 0, ("remove_validator", {"address": hx(NODES[0])}))


def test_validator_change_refused_when_too_few_able_validators_remain() -> None:
    s = make_state(validators=4)
    # two validators' nodes are no longer trusted (as a later wiring may mark them)
    s.nodes[NODES[2]].state = "pending"
    s.nodes[NODES[3]].state = "pending"
    c = Chain(s)
    # 3 validators left, 1 of them able: fewer than the quorum of 2
    refused("no-quorum", c.propose, 0, ("remove_validator", {"address": hx(NODES[0])}))


def test_a_validator_node_cannot_be_retired_but_can_after_removal() -> None:
    c = chain(validators=4)
    refused("node-is-validator", c.propose, 0, ("retire_node", {"address": hx(NODES[3])}))
    # both in one proposal, in order: remove, then retire
    pid = c.propose(
        0,
        ("remove_validator", {"address": hx(NODES[3])}),
        ("retire_node", {"address": hx(NODES[3])}),
    )
    assert c.state.proposals[pid].status == "open"
    refused(
        "node-is-validator",
        c.propose,
        1,
        ("retire_node", {"address": hx(NODES[3])}),
        ("remove_validator", {"address": hx(NODES[3])}),
    )
    for who in range(3):
        c.vote(who, pid)
    assert c.status(pid) == "accepted"
    assert c.state.nodes[NODES[3]].state == "retired" and st.NodeRetired(NODES[3]) in c.events
    refused("node-retired", c.propose, 0, ("retire_node", {"address": hx(NODES[3])}))
    refused(
        "node-retired",
        st.add_pending_node,
        c.state,
        NODES[3],
        measurement=MEASUREMENT,
        platform="virtual",
        virtual=True,
        height=c.height,
    )


# ----------------------------------------------------------------------------- other actions


def test_policies_platforms_virtual_rotation_and_refresh() -> None:
    c = chain()

    def passes(*actions: tuple[str, dict[str, object]]) -> bytes:
        pid = c.propose(0, *actions)
        for who in range(3):
            if c.status(pid) == "open":
                c.vote(who, pid)
        assert c.status(pid) == "accepted"
        return pid

    passes(("set_node_policy", {"name": "requireEncryption", "value": True}))
    assert c.state.policies == {"requireEncryption": True}
    assert st.PolicyChanged("requireEncryption", True) in c.events
    refused(
        "bad-args", c.propose, 0, ("set_node_policy", {"name": "requireEncryption", "value": 1})
    )
    refused("bad-args", c.propose, 0, ("set_node_policy", {"name": "colour", "value": "red"}))
    passes(("allow_platform", {"platform": "sev-snp"}), ("set_allow_virtual", {"allow": False}))
    assert c.state.platforms == {"virtual", "sev-snp"} and not c.state.allow_virtual
    passes(("disallow_platform", {"platform": "virtual"}))
    refused("not-allowed", c.propose, 0, ("disallow_platform", {"platform": "virtual"}))
    # a rotation and a refresh in one proposal: one new generation, one re-issue
    before = len([e for e in c.events if isinstance(e, st.RefreshRecoveryShares)])
    passes(("rotate_ledger_secret", {}), ("refresh_recovery_shares", {}))
    assert [e for e in c.events if isinstance(e, st.RotateLedgerSecret)] == [
        st.RotateLedgerSecret(1)
    ]
    refreshes = [e for e in c.events if isinstance(e, st.RefreshRecoveryShares)]
    assert len(refreshes) == before + 1
    assert refreshes[-1] == st.RefreshRecoveryShares(
        1, 1, 2, tuple(sorted((ADDRS[i], enc_pub(i)) for i in range(4)))
    )
    passes(("open_network", {}))
    refused("already-open", c.propose, 0, ("open_network", {}))


def test_malformed_actions_are_refused_at_proposal_time() -> None:
    c = chain()
    refused("unknown-action", c.propose, 0, ("launch_rockets", {}))
    refused("bad-args", c.propose, 0, ("add_member", {}))
    refused("bad-args", c.propose, 0, ("add_member", {"address": "0x12"}))
    refused("bad-args", c.propose, 0, ("add_member", {"address": hx(ADDRS[5]), "x": 1}))
    refused("bad-args", c.propose, 0, ("trust_node", {"address": hx(NODES[0]).upper()}))
    refused("bad-args", c.propose, 0, ("set_recovery_threshold", {"threshold": True}))
    refused("bad-args", c.propose, 0, ("set_allow_virtual", {"allow": "yes"}))
    refused("bad-args", c.propose, 0, ("allow_platform", {"platform": "SGX!"}))
    assert c.state.proposals == {}


def test_multi_action_proposals_take_the_strictest_rule() -> None:
    c = chain()
    pid = c.propose(
        0,
        ("set_member_data", {"address": hx(ADDRS[0]), "data": 1}),  # majority: 3 of 4
        ("open_network", {}),
    )
    assert st.tally(c.state, pid)[3] == 3
    strict = c.propose(
        0,
        ("set_member_data", {"address": hx(ADDRS[0]), "data": 2}),
        ("set_recovery_threshold", {"threshold": 3}),  # two thirds of 4: 3
    )
    assert st.tally(c.state, strict)[3] == 3
    c5 = chain(members=5)
    mixed = c5.propose(
        0,
        ("set_member_data", {"address": hx(ADDRS[0]), "data": 2}),  # majority of 5: 3
        ("set_recovery_threshold", {"threshold": 3}),  # two thirds of 5: 4
    )
    assert st.tally(c5.state, mixed)[3] == 4


def test_a_count_threshold_out_of_reach_is_rejected_at_once() -> None:
    rules = copy.deepcopy(DEFAULT_JSON)
    rules["actions"]["open_network"] = {"threshold": 5}
    from gateway.governance.constitution import parse

    c = chain(constitution=parse(rules))
    pid = c.propose(0, ("open_network", {}))
    assert c.status(pid) == "rejected"


def test_too_many_open_proposals_per_member() -> None:
    c = chain()
    for i in range(st.MAX_OPEN_PER_MEMBER):
        c.propose(0, ("set_member_data", {"address": hx(ADDRS[0]), "data": i}))
    refused(
        "too-many-open", c.propose, 0, ("set_member_data", {"address": hx(ADDRS[0]), "data": -1})
    )
    c.propose(1, ("set_member_data", {"address": hx(ADDRS[0]), "data": -1}))  # another member


def test_acceptance_looks_again_at_other_open_proposals() -> None:
    # a proposal waiting for 3 of 4 approvals passes with the same 2 once a member leaves
    # (majority of 3 is 2)
    c = chain(members=4, threshold=1)
    waiting = c.propose(0, ("set_member_data", {"address": hx(ADDRS[0]), "data": 1}))
    c.vote(0, waiting)
    c.vote(1, waiting)
    assert c.status(waiting) == "open"
    remove = c.propose(0, ("remove_member", {"address": hx(ADDRS[3])}))
    for who in range(3):
        c.vote(who, remove)
    assert c.status(remove) == "accepted" and c.status(waiting) == "accepted"


# ----------------------------------------------------------------------------- determinism


def _script(c: Chain) -> None:
    pid = c.propose(0, ("open_network", {}))
    c.vote(1, pid, approve=False)
    c.vote(1, pid, approve=True, revision=1)
    c.vote(2, pid)
    other = c.propose(2, ("rotate_ledger_secret", {}))
    c.vote(0, pid)
    c.vote(3, other, approve=False)
    c.advance(8 * 86_400)


def test_state_is_pure_and_its_serialisation_canonical() -> None:
    a, b = chain(), chain()
    before = st.encode(a.state)
    snapshot = a.state
    _script(a)
    _script(b)
    assert st.encode(snapshot) == before  # apply never changes its input
    assert st.state_digest(a.state) == st.state_digest(b.state)
    data = st.encode(a.state)
    again = st.decode(data)
    assert again == a.state and st.encode(again) == data
    assert data.startswith(b'{"allowVirtual":true,"chainId":31337,')
    with pytest.raises(st.StateFormatError):
        st.decode(data.replace(b'"chainId":31337', b'"chainId": 31337'))
    with pytest.raises(st.StateFormatError):
        st.decode(data.replace(b'"version":1', b'"version":2'))
    with pytest.raises(st.StateFormatError):
        st.decode(b"{}")
    # the state digest tells states apart
    assert st.state_digest(chain().state) != st.state_digest(a.state)


def test_a_refused_record_changes_nothing() -> None:
    c = chain()
    pid = c.propose(0, ("open_network", {}))
    before = st.encode(c.state)
    refused("not-a-member", c.vote, 5, pid)
    assert st.encode(c.state) == before


def test_genesis_checks() -> None:
    with pytest.raises(ValueError):
        make_state(members=0)
    with pytest.raises(ValueError):
        make_state(members=2, threshold=3)
    with pytest.raises(ValueError):
        st.genesis(
            chain_id=CHAIN_ID,
            genesis_hash=GENESIS,
            members=[st.GenesisMember(ADDRS[0], None)],
            validators=[],
        )
    s = make_state()
    assert st.genesis_shares_event(s) == st.RefreshRecoveryShares(
        0, 0, 2, tuple(sorted((ADDRS[i], enc_pub(i)) for i in range(4)))
    )
    assert s.validators_at(0) == tuple(NODES[:4]) and s.service == "opening"
    assert T0 > 0 and s.domain == DOMAIN


def test_ballots_in_any_order_reach_one_outcome() -> None:
    import itertools

    base = chain()
    pid = base.propose(0, ("open_network", {}))
    ballots = [
        t.sign(KEYS[who], DOMAIN, t.Ballot(pid, who != 3, 0)) for who in range(4)
    ]  # 3 approve, 1 rejects: accepted by majority (3 of 4) whatever the order
    outcomes = set()
    for order in itertools.permutations(ballots):
        c = Chain(base.state, height=base.height, now=base.now)
        for record in order:
            try:
                c.submit(record)
            except Exception as exc:  # a ballot after the decision
                assert getattr(exc, "reason", None) == "proposal-not-open"
        outcomes.add((c.status(pid), c.state.service))
    assert outcomes == {("accepted", "open")}


def test_proposal_view() -> None:
    c = chain()
    pid = c.propose(0, ("open_network", {}))
    c.vote(1, pid, approve=False)
    view = st.proposal_view(c.state, pid)
    assert view["status"] == "open" and view["actions"] == [{"kind": "open_network", "args": {}}]
    assert view["tally"] == {"approve": 0, "reject": 1, "members": 4, "needed": 3}
    assert view["ballots"] == {hx(ADDRS[1]): {"approve": False, "revision": 0}}
    refused("unknown-proposal", st.proposal_view, c.state, b"\x00" * 32)


def test_genesis_from_the_consortium_terms() -> None:
    terms = {
        "version": 1,
        "chainId": CHAIN_ID,
        "validators": [hx(NODES[0]), hx(NODES[1])],
        "nodes": [
            {"address": hx(NODES[0]), "role": "validator"},
            {"address": hx(NODES[2]), "role": "member"},
        ],
        "measurements": ["0x" + "AB" * 32],
        "platforms": ["virtual"],
        "allowVirtual": True,
        "privacy": "strict",
        "members": [
            {"address": hx(ADDRS[0]), "encryptionKey": hx(enc_pub(0)), "data": {"org": "A"}},
            {"address": hx(ADDRS[1]), "encryptionKey": hx(enc_pub(1))},
            {"address": hx(ADDRS[2])},
        ],
    }
    s = st.genesis_from_terms(terms, GENESIS)
    assert s.active_members() == sorted(ADDRS[:3])
    assert s.recovery_threshold == 2  # a majority of the 2 share holders
    assert s.validators_at(0) == (NODES[0], NODES[1])
    assert {a: n.state for a, n in s.nodes.items()} == {n: "trusted" for n in NODES[:3]}
    assert s.measurements == {b"\xab" * 32} and s.allow_virtual
    assert s.policies == {"privacy": "strict", "publicBalances": False, "requireEncryption": False}
    assert s.constitution == DEFAULT and s.service == "opening"
    for broken, says in [
        (dict(terms, members=[]), "members"),
        (dict(terms, members=[{"address": "0x12"}]), "members[0].address"),
        (dict(terms, members=[{"address": hx(ADDRS[0]), "role": "x"}]), "members[0]"),
        (dict(terms, recoveryThreshold=3), "recovery threshold"),
        (dict(terms, constitution={"version": 9}), "constitution"),
    ]:
        with pytest.raises(ValueError, match=re.escape(says)):
            st.genesis_from_terms(broken, GENESIS)


def test_events_read_in_a_log_line() -> None:
    """Log lines name an event's fields with bytes as 0x-hex, not as Python bytes reprs."""
    pid = bytes(range(32))
    line = st.describe(st.BallotRecorded(pid, ADDRS[1], True, 2))
    assert line == (
        f"BallotRecorded(proposal=0x{pid.hex()}, member=0x{ADDRS[1].hex()}, approve=True, "
        "revision=2)"
    )
    scheduled = st.describe(st.ValidatorsScheduled(7, (NODES[0], NODES[1])))
    assert scheduled == (
        f"ValidatorsScheduled(height=7, validators=[0x{NODES[0].hex()}, 0x{NODES[1].hex()}])"
    )
