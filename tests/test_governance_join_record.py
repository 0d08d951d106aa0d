"""The join record (gateway/governance/joins.py) and its place in a block's governance
section (gateway/enclave/govern.py), without a cluster: what it records, every refusal by
name, determinism across nodes, and the bound on pending nodes. The cluster side is
tests/test_governance_joins.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_account import Account
from governance_support import (
    CHAIN_ID,
    DOMAIN,
    KEYS,
    MEASUREMENT,
    Chain,
    hx,
    make_state,
    refused,
)

from gateway.enclave import govern
from gateway.errors import BlockRefused
from gateway.governance import joins
from gateway.governance import state as st
from gateway.governance import typed as t
from gateway.protocol import attestation

NODE_KEY = bytes([0x77]) * 32
NODE = bytes.fromhex(Account.from_key(NODE_KEY).address[2:])


def report(**changes: Any) -> attestation.Report:
    fields: dict[str, Any] = {
        "chain_id": CHAIN_ID,
        "platform": attestation.VIRTUAL,
        "measurement": MEASUREMENT,
        "node_address": NODE,
        "tx_keys": (),
        "epoch_period": 86400,
        "grace": 60,
        "issued_at": 1_795_283_000,
        "code": "test",
        "join_key": bytes([0x55]) * 32,
    }
    fields.update(changes)
    return attestation.Report(**fields)


def record(key: bytes = NODE_KEY, **changes: Any) -> bytes:
    r = report(**changes)
    return joins.encode_join(r, attestation.sign(r, key))


def test_a_join_record_records_its_node_pending_with_what_it_attested() -> None:
    state = make_state()
    raw = record()
    assert joins.is_join(raw)
    decoded = joins.decode_join(raw)
    assert decoded.address == NODE and decoded.virtual
    after, events = joins.apply_join(state, raw, 7)
    assert events == [st.NodePending(NODE)]
    node = after.nodes[NODE]
    assert (node.state, node.measurement, node.platform, node.since) == (
        "pending",
        MEASUREMENT,
        "virtual",
        7,
    )
    assert NODE not in state.nodes  # the input state is unchanged
    # the canonical form: sorted keys, no whitespace, version 1
    obj = json.loads(raw)
    assert obj["version"] == 1 and obj["type"] == "join"
    assert raw == t.canonical_json(obj).encode()
    # the state's encoding keeps it (every node compares its copy by digest)
    assert st.decode(st.encode(after)).nodes[NODE] == node


def test_a_pending_node_is_trusted_by_vote_and_then_known() -> None:
    chain = Chain(make_state())
    chain.state, _ = joins.apply_join(chain.state, record(), chain.height)
    pid = chain.propose(0, ("trust_node", {"address": hx(NODE)}))
    chain.vote(0, pid)
    events = chain.vote(1, pid)
    events += chain.vote(2, pid)
    assert st.NodeTrusted(NODE) in chain.events
    assert chain.state.nodes[NODE].state == "trusted"
    refused("node-exists", joins.apply_join, chain.state, record(), chain.height)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"measurement": bytes([0x22]) * 32}, "measurement-not-allowed"),
        ({"platform": "sgx"}, "platform-not-allowed"),
        ({"chain_id": CHAIN_ID + 1}, "wrong-chain"),
    ],
)
def test_what_the_state_does_not_allow_is_refused_by_name(
    changes: dict[str, Any], reason: str
) -> None:
    refused(reason, joins.apply_join, make_state(), record(**changes), 1)


def test_virtual_enclaves_are_refused_unless_allowed() -> None:
    state = make_state()
    state.allow_virtual = False  # as a set_allow_virtual vote leaves it
    refused("virtual-not-allowed", joins.apply_join, state, record(), 1)


def test_a_retired_node_cannot_come_back_by_a_join_record() -> None:
    chain = Chain(make_state())
    chain.state, _ = joins.apply_join(chain.state, record(), 1)
    pid = chain.propose(0, ("retire_node", {"address": hx(NODE)}))
    chain.vote(0, pid)
    chain.vote(1, pid)
    chain.vote(2, pid)
    assert chain.state.nodes[NODE].state == "retired"
    refused("node-retired", joins.apply_join, chain.state, record(), chain.height)
    # even with a fresh join key (a restarted node attests anew)
    refused(
        "node-retired",
        joins.apply_join,
        chain.state,
        record(join_key=bytes([0x56]) * 32),
        chain.height,
    )


def test_forged_altered_and_malformed_records_are_refused() -> None:
    state = make_state()
    raw = record()
    # signed by another key than the node it names
    refused("bad-attestation", joins.decode_join, record(key=bytes([0x78]) * 32))
    # altered after signing
    altered = raw.replace(MEASUREMENT.hex().encode(), (bytes([0x12]) * 32).hex().encode())
    refused("bad-attestation", joins.decode_join, altered)
    # the same content in another byte form
    spaced = json.dumps(json.loads(raw), sort_keys=True).encode()
    refused("bad-record", joins.decode_join, spaced)
    obj = json.loads(raw)
    refused("record-version", joins.decode_join, t.canonical_json({**obj, "version": 2}).encode())
    refused("bad-record", joins.decode_join, t.canonical_json({**obj, "extra": 1}).encode())
    refused("bad-record", joins.decode_join, b"{" + b" " * joins.MAX_JOIN_RECORD + b"}")
    refused(
        "bad-record", joins.decode_join, t.canonical_json({**obj, "signature": "0x12"}).encode()
    )
    # a report without a join key (an ordinary attestation) is no join
    plain = report(join_key=None)
    refused(
        "bad-attestation",
        joins.decode_join,
        t.canonical_json(
            {
                "version": 1,
                "type": "join",
                "report": plain.to_json(),
                "signature": hx(attestation.sign(plain, NODE_KEY)),
            }
        ).encode(),
    )
    assert NODE not in state.nodes


def test_pending_nodes_are_bounded() -> None:
    state = make_state()
    for i in range(st.MAX_PENDING_NODES):
        key = (1000 + i).to_bytes(32, "big")
        r = report(node_address=bytes.fromhex(Account.from_key(key).address[2:]))
        state, _ = joins.apply_join(state, joins.encode_join(r, attestation.sign(r, key)), 1)
    refused("too-many-pending", joins.apply_join, state, record(), 2)


# ----------------------------------------------------------------------------- in a block


def test_a_block_carries_the_join_record_and_every_node_reaches_the_same_state() -> None:
    proposer = govern.Governance(make_state())
    follower = govern.Governance(make_state())
    raw = record()
    answer = proposer.submit(raw, 1, 1_795_283_149, joins_too=True)
    assert answer["type"] == "join" and answer["hash"] == joins.join_hash(raw)
    # the same record again waits already; clients cannot submit join records
    refused("duplicate", proposer.submit, raw, 1, 1_795_283_149, joins_too=True)
    refused("bad-record", follower.submit, raw, 1, 1_795_283_149)
    built = proposer.build(1, 1_795_283_150)
    assert built.records == [raw]
    checked = follower.verify(built.records, 1, 1_795_283_150, govern.commitment(built.records))
    assert st.state_digest(checked.state) == st.state_digest(built.state)
    assert checked.state.nodes[NODE].state == "pending"
    proposer.committed(built)
    assert not proposer.pool
    # a section whose join record the state refuses makes the block invalid
    with pytest.raises(BlockRefused) as info:
        follower.verify([raw, raw], 1, 1_795_283_150, govern.commitment([raw, raw]))
    assert info.value.reason_code == "bad-governance"


def test_a_forwarded_join_record_is_pooled_and_a_second_one_for_the_node_is_not() -> None:
    gov = govern.Governance(make_state())
    gov.submit(record(), 1, 1_795_283_149, joins_too=True)
    # the same node with another join key (it restarted): pending already, in the pool
    refused(
        "node-exists",
        gov.submit,
        record(join_key=bytes([0x56]) * 32),
        1,
        1_795_283_149,
        joins_too=True,
    )
    # members' records pool beside it
    proposal = t.Proposal(
        bytes.fromhex(Account.from_key(KEYS[0]).address[2:]),
        1_795_283_149,
        (t.Action.make("open_network", {}),),
    )
    gov.submit(t.encode_record(t.sign(KEYS[0], DOMAIN, proposal)), 1, 1_795_283_149)
    assert len(gov.build(1, 1_795_283_150).records) == 2
